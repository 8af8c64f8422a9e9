"""Summarise cross-validation runs for benchmarks/RESULTS.md: per fold, mean ± sd, and the selection rules.

    python benchmarks/summarize_cv.py runs/esc10-strong runs/esc10-tiny ...

For each run folder of ``soundscene cv``: accuracy per fold and mean ± sd, wall time, and the test accuracy
that each selection rule (best validation epoch, last epoch, moving average) gives on the same runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    for folder in map(Path, sys.argv[1:]):
        summary = json.loads((folder / "cv_summary.json").read_text())
        per_fold = summary["per_fold"]
        accs = [f["accuracy"] for f in per_fold]
        config = json.loads((folder / "cv.json").read_text())["config"]
        print(f"## {folder.name}: model {config['model']['name']}, selection {config['train']['selection']}")
        print("| fold | " + " | ".join(str(f["fold"]) for f in per_fold) + " | mean ± sd | wall time |")
        print("|---|" + "---:|" * (len(per_fold) + 2))
        print(f"| accuracy | " + " | ".join(f"{a:.3f}" for a in accs)
              + f" | **{np.mean(accs):.3f} ± {np.std(accs, ddof=1):.3f}** | {summary['seconds'] / 60:.0f} min |")
        rules = {}
        for f in per_fold:
            metrics = json.loads((folder / f"fold-{f['fold']}" / "metrics.json").read_text())
            for rule, acc in metrics.get("selection_rules", {}).items():
                rules.setdefault(rule, []).append(acc)
        for rule, values in sorted(rules.items()):
            print(f"| rule `{rule}` | " + " | ".join(f"{a:.3f}" for a in values)
                  + f" | {np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} | |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
