"""Evaluation: accuracy, class-wise accuracy, log loss and the normalized confusion
matrix (scikit-learn), written as JSON, a short Markdown report, a predictions CSV
and a confusion-matrix PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .._io import atomic_write_json, atomic_write_text
from ..core import records
from ..core.plots import plot_confusion_matrix


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
    probabilities predictions.csv (prediction records beside each clip's ``true_label``: see
    :func:`soundscene.core.records.csv_text`) and the DCASE-format dcase_output.tsv, into out_dir.
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
        rows = [records.make("prediction", path=str(item.path), label=classes[int(np.argmax(probs))],
                             confidence=float(np.max(probs)), probabilities=records.named(classes, probs))
                for item, probs in zip(items, probabilities)]
        written["predictions"] = atomic_write_text(out_dir / "predictions.csv", records.csv_text(
            rows, classes, truth=[item.label for item in items]))
        written["dcase_output"] = write_dcase_output(out_dir / "dcase_output.tsv",
                                                     [i.display_name for i in items], probabilities, classes)
    return written


def _provenance(metrics: dict) -> list[str]:
    """Report lines on what was left out of (or wrongly included in) the scoring."""
    lines = []
    if metrics.get("left_out"):
        copies = metrics.get("left_out_copies")
        lines.append(f"- left out: {metrics['left_out']} clip(s) the model was trained or validated on"
                     + (f" ({copies} of them copies in another encoding, recognised by their decoded audio)"
                        if copies else ""))
    if metrics.get("training_clips_scored"):
        lines.append(f"- **includes {metrics['training_clips_scored']} clip(s) the model was trained or validated "
                     "on (--include-training): these figures are inflated**")
    if metrics.get("skipped"):
        lines.append(f"- skipped: {len(metrics['skipped'])} unusable clip(s): "
                     + "; ".join(s["reason"] for s in metrics["skipped"][:5])
                     + (" ..." if len(metrics["skipped"]) > 5 else ""))
    return lines


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
    from ..errors import ModelFileError
    from ..core.models import predict_clips

    probs = predict_clips(net, feature_set.features, features_config=config.features,
                          aggregate=config.model.aggregate).numpy()
    if not np.isfinite(probs).all():  # features are checked finite when computed, so the network is at fault
        raise ModelFileError("the model gives non-finite probabilities on finite features; its weights are damaged")
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
        f"- log loss: {metrics['log_loss']:.4f}",
        *_provenance(metrics), "",
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


def _nothing_left(n: int, name: str):
    from ..errors import DataError

    raise DataError(f"every one of the {n} clips of {name} was used to train or validate the model; evaluate on "
                    "other data, or pass --include-training to score them anyway (inflated)")


def _without(feature_set, paths: set[str]):
    """The FeatureSet without the clips of ``paths``; None when nothing is left."""
    import torch

    from .data import FeatureSet

    keep = [k for k, i in enumerate(feature_set.items) if str(i.path) not in paths]
    if not keep:
        return None
    index = torch.as_tensor(keep, dtype=torch.long)
    return FeatureSet(feature_set.features[index], feature_set.labels[index], [feature_set.items[k] for k in keep])


def _selected_items(manifest, classes: Sequence[str], *, fold: int | None, official_test: bool) -> list:
    """The rows to score: the official evaluation list or one fold when asked; labels must be the model's."""
    from ..errors import DataError

    items = manifest.items
    if official_test:
        if not manifest.has_official_split:
            raise DataError(f"{manifest.source}: has no official evaluation list (only TAU data sets have one)")
        items = [i for i in items if i.subset == "test"]
    if fold is not None:
        items = [i for i in items if i.fold == fold]
        if not items:
            raise DataError(f"{manifest.source}: no rows with fold {fold}")
    unknown = sorted({i.label for i in items} - set(classes))
    if unknown:
        raise DataError(f"{manifest.source}: label(s) {unknown} are not among the model's classes {list(classes)}")
    return items


def evaluate(model: str | Path, data, *, out_dir: str | Path | None = None, fold: int | None = None,
             official_test: bool = False, include_training: bool = False, max_seconds: float | None = None,
             skip_bad: bool = False,
             cache_dir: str | Path | None = None, use_cache: bool = True, workers: int = 1,
             progress: bool = True) -> dict:
    """Evaluate a model file (or a run folder) on a labelled data set, leaving out what it learnt from.

    By default every clip the model was trained or validated on is left out:
    those whose file content digest or decoded-audio digest is recorded in the
    model file (the latter catches lossless re-encodes: WAV <-> FLAC, another bit
    depth of the same samples), and, for a run folder, those its ``split.csv``
    lists for training or validation.  How many were left out, and why, is
    returned and written into the report.

    Args:
        model: model file or run folder.
        data: a data set spec (see :func:`soundscene.datasets.resolve_dataset`) or Manifest; its labels
            must be among the model's classes.
        out_dir: where to write metrics.json, report.md, confusion_matrix.png, predictions.csv
            (default: ``evaluation-<data name>`` beside the model file).
        fold: evaluate only the rows of this fold.
        official_test: evaluate only the data set's official evaluation list (TAU's fold1_evaluate.csv).
        include_training: score training and validation clips too (the report says so: figures are inflated).
        max_seconds: accept files up to this long (the model's audio.max_seconds otherwise); only the
            training clip length of each is read.
        skip_bad: leave out unusable clips (missing, unreadable...; listed in the returned metrics) instead
            of stopping.
        cache_dir / use_cache / workers: the feature cache, as for :func:`soundscene.training.train`.

    Returns:
        The metrics dict, with ``out_dir``, ``skipped`` (each reason naming the clip's manifest row),
        ``left_out`` and ``left_out_copies`` (how many of those were recognised by their decoded audio only)
        added.
    """
    from ..core.modelfile import load_model_file
    from .cache import feature_sets
    from .data import Manifest, with_digests
    from .datasets import data_name, resolve_dataset
    from .runs import run_of_model

    bundle = load_model_file(model)
    config = bundle.config if max_seconds is None else bundle.config.with_overrides({"audio.max_seconds": max_seconds})
    manifest = data if isinstance(data, Manifest) else resolve_dataset(data, check_files=not skip_bad)
    name = data_name(manifest.source)
    items = with_digests(_selected_items(manifest, bundle.classes, fold=fold, official_test=official_test))
    seen_paths: dict[str, str] = {}
    run = run_of_model(bundle.path)
    if run is not None:
        _, splits, _ = run.read()
        seen_paths = {str(i.path): part for part in ("train", "val") for i in splits[part]}
    trained_on = bundle.trained_on
    left_out = [i for i in items if (i.digest in trained_on) or str(i.path) in seen_paths]
    if left_out and not include_training:
        kept_paths = {str(i.path) for i in left_out}
        items = [i for i in items if str(i.path) not in kept_paths]
        if not items:
            _nothing_left(len(left_out), name)
    feature_set_of, skipped = feature_sets({"eval": items}, config, bundle.classes, cache_dir=cache_dir,
                                           use_cache=use_cache, workers=workers, skip_bad=skip_bad,
                                           progress=progress)
    # Copies in another encoding: their decoded audio (digested where the features were computed) matches.
    feature_set = feature_set_of["eval"]
    known = {str(i.path) for i in left_out}
    trained_on_audio = bundle.trained_on_audio
    copies = [i for i in feature_set.items if i.audio_digest in trained_on_audio and str(i.path) not in known]
    if copies and not include_training:
        feature_set = _without(feature_set, {str(i.path) for i in copies})
        if feature_set is None:
            _nothing_left(len(left_out) + len(copies), name)
    out_dir = Path(out_dir) if out_dir else bundle.path.parent / f"evaluation-{name}"
    n_seen = len(left_out) + len(copies)
    note = {"left_out": n_seen if not include_training else 0,
            "left_out_copies": len(copies) if not include_training else 0,
            "training_clips_scored": n_seen if include_training else 0,
            "skipped": [{"path": str(i.path), "reason": why} for i, why in skipped]}
    metrics = score_and_report(bundle.net, bundle.config, bundle.classes, feature_set, out_dir,
                               title=f"Evaluation on {name}", extra=note)
    metrics["out_dir"] = str(out_dir)
    return metrics
