"""Cross-validation over a data set's predefined folds (or k grouped folds for own data).

Each fold is a full run (``<out>/fold-<k>/``: model, metrics, pictures), trained
with that fold held out for testing and validation carved from the rest by
group.  The summary gives per-fold and mean ± standard deviation of accuracy,
macro class-wise accuracy and log loss, and the confusion matrix averaged over
folds.  Features are cached once and shared by every fold.  An interrupted
cross-validation continues where it stopped: finished folds are kept, a fold
with a checkpoint is resumed.  ``<out>/cv.json`` records the configuration and
the fold of every file; an ``--out`` folder that holds a cross-validation of
another configuration or data is refused (or, with ``restart``, emptied of it),
never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .._io import atomic_write_json, atomic_write_text
from ..config import Config
from .data import Manifest, median_duration, warn_if_no_groups
from .datasets import resolve_dataset
from ..errors import DataError, SoundsceneError
from ..core.plots import plot_confusion_matrix
from .runs import RunFolder
from .loop import train

PLAN_FILE = "cv.json"

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
                   skip_bad: bool = False, restart: bool = False, progress: bool = True) -> CrossValResult:
    """Train and test once per fold; write cv_summary.json, cv_report.md and confusion_matrix_mean.png.

    Args:
        data: data set spec, path or Manifest.  Predefined folds are used as they
            are; data without folds (or with only an official train/test list)
            gets k stratified, grouped folds.
        out_dir: folder for the fold runs and the summary.
        k: number of folds for data without predefined folds.
        restart: when out_dir holds a cross-validation of another configuration or data, delete its
            folds and start again (without it, such a folder is refused).
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
        warn_if_no_groups(manifest)
        manifest = assign_grouped_folds(manifest, k=k, seed=config.train.seed)
    folds = sorted({i.fold for i in manifest.items})
    if len(folds) < 2:
        raise DataError(f"{manifest.source}: cross-validation needs at least two folds")
    _claim_out_dir(out_dir, _plan(config, manifest), restart=restart)
    per_fold = []
    for fold in folds:
        run = RunFolder(out_dir / f"fold-{fold}")
        run_dir, metrics_path = run.root, run.metrics
        if metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        else:
            # A fold with a finished epoch resumes; one stopped earlier starts again (train() allows that).
            resume = run.is_run() and run.has_finished_epoch()
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


def _plan(config: Config, manifest: Manifest) -> dict:
    """What a cross-validation is made of: the configuration and a digest of every file's fold."""
    folds = sorted(f"{i.path}\t{i.label}\t{i.fold}" for i in manifest.items)
    return {"config": config.to_dict(), "source": manifest.source,
            "folds_sha256": hashlib.sha256("\n".join(folds).encode()).hexdigest()}


def _claim_out_dir(out_dir: Path, plan: dict, *, restart: bool) -> None:
    """Record the plan in out_dir, refusing (or with restart, clearing) folds of another cross-validation."""
    plan_path = out_dir / PLAN_FILE
    old_runs = sorted(out_dir.glob("fold-*"))
    differs = None
    if plan_path.is_file():
        try:
            old = json.loads(plan_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        differs = _differences(old, plan)
    elif old_runs:  # folds without a plan: compare each fold's own configuration
        for run in map(RunFolder, old_runs):
            try:
                old_config = json.loads(run.config.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old_config = {}
            differs = _differences({"config": old_config}, {"config": plan["config"]}) or differs
    if differs:
        if not restart:
            raise SoundsceneError(f"{out_dir} holds a cross-validation of another configuration or data "
                                  f"({', '.join(differs[:4])} differ); choose another --out or pass --restart "
                                  "to delete those folds and start again")
        for path in [*old_runs, plan_path, out_dir / "cv_summary.json", out_dir / "cv_report.md",
                     out_dir / "confusion_matrix_mean.png"]:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    atomic_write_json(plan_path, plan)


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts (clip length fixed from data is not a difference
    when the new plan leaves it open)."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


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
