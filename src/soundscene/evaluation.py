"""Evaluation: accuracy, class-wise accuracy, log loss and the normalized confusion
matrix (scikit-learn), written as JSON, a short Markdown report, a predictions CSV
and a confusion-matrix PNG.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

import numpy as np

from ._io import atomic_write_json, atomic_write_text
from .plots import plot_confusion_matrix


def compute_metrics(labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str],
                    devices: Sequence[str | None] | None = None) -> dict:
    """Metrics of clip predictions.

    Args:
        labels: ``(clips,)`` true class indices into ``classes``.
        probabilities: ``(clips, n_classes)`` predicted probabilities.
        devices: optional recording device per clip; adds per_device_accuracy.

    Returns:
        dict with accuracy, macro_class_accuracy (mean of per-class accuracies),
        per_class_accuracy {class: accuracy or None when absent}, log_loss,
        confusion_matrix (row-normalised, rows true), counts, n_clips.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, log_loss

    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities.argmax(axis=1)
    k = len(classes)
    counts = confusion_matrix(labels, predicted, labels=list(range(k)))
    support = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = np.where(support[:, None] > 0, counts / np.maximum(support[:, None], 1), 0.0)
    per_class = {c: (float(normalized[i, i]) if support[i] else None) for i, c in enumerate(classes)}
    present = [v for v in per_class.values() if v is not None]
    clipped = np.clip(probabilities, 1e-15, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    metrics = {
        "n_clips": int(labels.size),
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_class_accuracy": float(np.mean(present)) if present else 0.0,
        "per_class_accuracy": per_class,
        "log_loss": float(log_loss(labels, clipped, labels=list(range(k)))),
        "confusion_matrix": normalized.tolist(),
        "confusion_counts": counts.tolist(),
        "classes": list(classes),
    }
    if devices is not None and any(d is not None for d in devices):
        devices = np.array([d or "unknown" for d in devices])
        metrics["per_device_accuracy"] = {
            str(d): float(np.mean(predicted[devices == d] == labels[devices == d])) for d in sorted(set(devices))}
    return metrics


def write_evaluation(out_dir: str | Path, metrics: dict, *, items: Sequence | None = None,
                     probabilities: np.ndarray | None = None, title: str = "Evaluation") -> dict[str, Path]:
    """Write metrics.json, report.md, confusion_matrix.png, and with items (data.Item) and their
    probabilities predictions.csv and the DCASE-format dcase_output.tsv, into out_dir.
    Returns {name: path}."""
    out_dir = Path(out_dir)
    classes = metrics["classes"]
    written = {
        "metrics": atomic_write_json(out_dir / "metrics.json", metrics),
        "confusion_matrix": plot_confusion_matrix(np.array(metrics["confusion_matrix"]), classes,
                                                  out_dir / "confusion_matrix.png",
                                                  title=f"{title}: normalized confusion matrix"),
        "report": atomic_write_text(out_dir / "report.md", markdown_report(metrics, title=title)),
    }
    if items is not None and probabilities is not None:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["path", "label", "predicted", *classes])
        for item, probs in zip(items, probabilities):
            writer.writerow([str(item.path), item.label, classes[int(np.argmax(probs))], *[f"{p:.6f}" for p in probs]])
        written["predictions"] = atomic_write_text(out_dir / "predictions.csv", buf.getvalue())
        written["dcase_output"] = write_dcase_output(out_dir / "dcase_output.tsv",
                                                     [i.display_name for i in items], probabilities, classes)
    return written


def write_dcase_output(path: str | Path, filenames: Sequence[str], probabilities: np.ndarray,
                       classes: Sequence[str]) -> Path:
    """The DCASE task-1 output format: TAB-separated, header ``filename  scene_label  <class>...``,
    one row per clip with the predicted label and every class probability."""
    lines = ["\t".join(["filename", "scene_label", *classes])]
    for name, probs in zip(filenames, probabilities):
        lines.append("\t".join([name, classes[int(np.argmax(probs))], *[f"{p:.6f}" for p in probs]]))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def score_and_report(net, config, classes: Sequence[str], feature_set, out_dir: str | Path, *, title: str,
                     extra: dict | None = None) -> dict:
    """Run a network on a FeatureSet's clips, compute the metrics (plus ``extra``) and write the report.

    Returns the metrics dict as written to ``out_dir/metrics.json``.
    """
    from .models import predict_clips

    probs = predict_clips(net, feature_set.features, features_config=config.features,
                          aggregate=config.model.aggregate).numpy()
    metrics = compute_metrics(feature_set.labels.numpy(), probs, classes,
                              devices=[i.device for i in feature_set.items])
    metrics.update(extra or {})
    write_evaluation(out_dir, metrics, items=feature_set.items, probabilities=probs, title=title)
    return metrics


def markdown_report(metrics: dict, *, title: str = "Evaluation") -> str:
    """A short Markdown summary: headline figures and a per-class table."""
    lines = [
        f"# {title}", "",
        f"- clips: {metrics['n_clips']}",
        f"- accuracy: {metrics['accuracy']:.4f}",
        f"- macro class-wise accuracy: {metrics['macro_class_accuracy']:.4f}",
        f"- log loss: {metrics['log_loss']:.4f}", "",
        "| class | clips | accuracy |", "|---|---:|---:|",
    ]
    counts = np.array(metrics["confusion_counts"]).sum(axis=1)
    for (name, acc), n in zip(metrics["per_class_accuracy"].items(), counts):
        lines.append(f"| {name} | {int(n)} | {'-' if acc is None else f'{acc:.3f}'} |")
    if "per_device_accuracy" in metrics:
        lines += ["", "| device | accuracy |", "|---|---:|"]
        lines += [f"| {d} | {a:.3f} |" for d, a in metrics["per_device_accuracy"].items()]
    lines += ["", "![confusion matrix](confusion_matrix.png)", ""]
    return "\n".join(lines)


def evaluate(model: str | Path, data, *, out_dir: str | Path | None = None, fold: int | None = None,
             skip_bad: bool = False, cache_dir: str | Path | None = None, use_cache: bool = True,
             workers: int = 1, progress: bool = True) -> dict:
    """Evaluate a model file (or a run folder holding model.safetensors) on a labelled data set.

    Args:
        model: model file or run folder.
        data: a data set spec (see :func:`soundscene.datasets.resolve_dataset`) or Manifest; its labels
            must be among the model's classes.
        out_dir: where to write metrics.json, report.md, confusion_matrix.png, predictions.csv
            (default: ``evaluation-<data name>`` beside the model file).
        fold: evaluate only the rows of this fold.
        skip_bad: leave out unreadable clips (listed in the returned metrics) instead of stopping.
        cache_dir / use_cache / workers: the feature cache, as for :func:`soundscene.training.train`.

    Returns:
        The metrics dict, with ``out_dir`` and ``skipped`` added.
    """
    from .cache import load_or_build
    from .data import Manifest, compute_features
    from .datasets import data_name, resolve_dataset
    from .errors import DataError
    from .modelfile import load_model_file
    from .runtime import tune_malloc

    tune_malloc()
    model = Path(model)
    model_path = model / "model.safetensors" if model.is_dir() else model
    bundle = load_model_file(model_path)
    manifest = data if isinstance(data, Manifest) else resolve_dataset(data)
    items = manifest.items
    if fold is not None:
        items = [i for i in items if i.fold == fold]
        if not items:
            raise DataError(f"{manifest.source}: no rows with fold {fold}")
    unknown = sorted({i.label for i in items} - set(bundle.classes))
    if unknown:
        raise DataError(f"{manifest.source}: label(s) {unknown} are not among the model's classes {bundle.classes}")
    if use_cache:
        store = load_or_build(items, bundle.config, cache_dir=cache_dir, workers=workers, skip_bad=skip_bad,
                              progress=progress)
        feature_set, skipped = store.feature_set(items, bundle.classes)
    else:
        feature_set, skipped = compute_features(items, bundle.config, bundle.classes, skip_bad=skip_bad,
                                                progress=progress, desc="features: evaluation")
    name = data_name(manifest.source)
    out_dir = Path(out_dir) if out_dir else model_path.parent / f"evaluation-{name}"
    metrics = score_and_report(bundle.net, bundle.config, bundle.classes, feature_set, out_dir,
                               title=f"Evaluation on {name}",
                               extra={"skipped": [{"path": str(i.path), "reason": why} for i, why in skipped]})
    metrics["out_dir"] = str(out_dir)
    return metrics
