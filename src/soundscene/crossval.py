"""Cross-validation over a data set's predefined folds (or k grouped folds for own data).

Each fold is a full run (``<out>/fold-<k>/``: model, metrics, pictures), trained
with that fold held out for testing and validation carved from the rest by
group.  The summary gives per-fold and mean ± standard deviation of accuracy,
macro class-wise accuracy and log loss, and the confusion matrix averaged over
folds.  Features are cached once and shared by every fold.  An interrupted
cross-validation continues where it stopped: finished folds are kept, a fold
with a checkpoint is resumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ._io import atomic_write_json, atomic_write_text
from .config import Config
from .data import Manifest, median_duration
from .datasets import resolve_dataset
from .errors import DataError
from .plots import plot_confusion_matrix
from .training import CONFIG_FILE, LAST_CHECKPOINT, train

SUMMARY_KEYS = ("accuracy", "macro_class_accuracy", "log_loss")


@dataclass
class CrossValResult:
    out_dir: Path
    folds: list[int]
    per_fold: list[dict]
    summary: dict
    seconds: float


def assign_grouped_folds(manifest: Manifest, *, k: int, seed: int = 0) -> Manifest:
    """Give every item a fold 1..k: stratified by class, no group in two folds (for data without folds)."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = [i.group_key for i in manifest.items]
    if len(set(groups)) < k:
        raise DataError(f"{manifest.source}: {len(set(groups))} groups cannot make {k} folds; use fewer --folds")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    fold_of = {}
    labels = [i.label for i in manifest.items]
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups), start=1):
        for idx in held:
            fold_of[int(idx)] = fold
    items = [replace(item, fold=fold_of[n], subset=None) for n, item in enumerate(manifest.items)]
    return Manifest(items, manifest.classes, manifest.source)


def cross_validate(data: str | Path | Manifest, *, out_dir: str | Path, config: Config | None = None,
                   k: int = 5, cache_dir: str | Path | None = None, use_cache: bool = True, workers: int = 1,
                   skip_bad: bool = False, progress: bool = True) -> CrossValResult:
    """Train and test once per fold; write cv_summary.json, cv_report.md and confusion_matrix_mean.png.

    Args:
        data: data set spec, path or Manifest.  Predefined folds are used as they
            are; data without folds (or with only an official train/test list)
            gets k stratified, grouped folds.
        out_dir: folder for the fold runs and the summary.
        k: number of folds for data without predefined folds.
    """
    import time

    started = time.perf_counter()
    out_dir = Path(out_dir)
    manifest = data if isinstance(data, Manifest) else resolve_dataset(data)
    config = config or Config()
    if config.audio.clip_seconds is None:  # one clip length for every fold, so folds compare and share a cache
        seconds = max(config.audio.min_seconds, round(median_duration(manifest.items, skip_bad=skip_bad), 1))
        config = config.with_overrides({"audio.clip_seconds": seconds})
    if k < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got {k}")
    if not manifest.has_folds:
        manifest = assign_grouped_folds(manifest, k=k, seed=config.train.seed)
    folds = sorted({i.fold for i in manifest.items})
    if len(folds) < 2:
        raise DataError(f"{manifest.source}: cross-validation needs at least two folds")
    per_fold = []
    for fold in folds:
        run_dir = out_dir / f"fold-{fold}"
        metrics_path = run_dir / "metrics.json"
        if metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        else:
            # A fold with a finished epoch resumes; one stopped earlier starts again (train() allows that).
            resume = (run_dir / CONFIG_FILE).is_file() and (run_dir / LAST_CHECKPOINT).is_file()
            result = train(None if resume else manifest, run_dir=run_dir, config=config, test_fold=fold,
                           resume=resume, skip_bad=skip_bad, cache_dir=cache_dir, use_cache=use_cache,
                           workers=workers, progress=progress)
            metrics = result.test_metrics
        per_fold.append({"fold": fold, **{key: metrics[key] for key in SUMMARY_KEYS},
                         "n_clips": metrics["n_clips"], "confusion_matrix": metrics["confusion_matrix"]})
        if progress:
            print(f"fold {fold}: accuracy {metrics['accuracy']:.3f}, macro class-wise accuracy "
                  f"{metrics['macro_class_accuracy']:.3f}, log loss {metrics['log_loss']:.3f}")
    summary = {key: {"mean": float(np.mean([f[key] for f in per_fold])),
                     "sd": float(np.std([f[key] for f in per_fold], ddof=1))} for key in SUMMARY_KEYS}
    mean_cm = np.mean([np.array(f["confusion_matrix"]) for f in per_fold], axis=0)
    summary.update({"folds": folds, "classes": manifest.classes, "confusion_matrix_mean": mean_cm.tolist(),
                    "source": manifest.source})
    seconds = time.perf_counter() - started
    atomic_write_json(out_dir / "cv_summary.json", {"summary": summary, "per_fold": per_fold, "seconds": seconds})
    plot_confusion_matrix(mean_cm, manifest.classes, out_dir / "confusion_matrix_mean.png",
                          title=f"Mean over {len(folds)} folds: normalized confusion matrix")
    atomic_write_text(out_dir / "cv_report.md", _report(summary, per_fold))
    return CrossValResult(out_dir, folds, per_fold, summary, seconds)


def _report(summary: dict, per_fold: list[dict]) -> str:
    lines = [f"# Cross-validation: {summary['source']}", "",
             "| fold | clips | accuracy | macro class-wise accuracy | log loss |", "|---:|---:|---:|---:|---:|"]
    for f in per_fold:
        lines.append(f"| {f['fold']} | {f['n_clips']} | {f['accuracy']:.4f} | {f['macro_class_accuracy']:.4f} | "
                     f"{f['log_loss']:.4f} |")
    lines.append("| **mean ± sd** | | " + " | ".join(
        f"{summary[k]['mean']:.4f} ± {summary[k]['sd']:.4f}" for k in SUMMARY_KEYS) + " |")
    lines += ["", "![mean confusion matrix](confusion_matrix_mean.png)", ""]
    return "\n".join(lines)
