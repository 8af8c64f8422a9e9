"""Pictures a user would rather see than read: the confusion matrix, training curves, a recording's timeline.

Each is written atomically as PNG.  Figures are made with matplotlib's
object-oriented API (``matplotlib.figure.Figure``, rendered by the Agg canvas),
so nothing here touches pyplot or switches the process's backend: a notebook
that imports soundscene keeps its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .._io import atomic_write


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig, path: str | Path, dpi: int) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))


def plot_confusion_matrix(matrix: np.ndarray, classes: Sequence[str], path: str | Path, *,
                          title: str = "Normalized confusion matrix") -> Path:
    """Draw a row-normalised confusion matrix ``(n_classes, n_classes)`` (rows: true class) to a PNG."""
    n = len(classes)
    size = max(5.0, 0.6 * n + 2.5)
    fig = _figure(figsize=(size + 1.0, size))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n), labels=classes, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                value = matrix[i, j]
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if value > 0.5 else "black")
    fig.tight_layout()
    return _save(fig, path, 120)


_RULE_NAMES = {"best_val": "best validation epoch", "ema": "averaged weights", "last": "last epoch"}


def plot_training_curves(history: Sequence[dict], path: str | Path, *, best_epoch: int | None = None,
                         selection: str = "best_val") -> Path:
    """Loss and accuracy per epoch (train on patches, validation on clips) to a PNG.

    history: one dict per epoch with keys epoch, train_loss, train_acc, val_loss, val_acc, and, when the
    weights were averaged, ema_val_loss and ema_val_acc (drawn too).  best_epoch / selection: the epoch whose
    weights became the model, and the rule that chose it (marked).
    """
    epochs = [h["epoch"] for h in history]
    fig = _figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", ms=3, label="train (patches)")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], "o-", ms=3, label="validation (clips)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_title("Loss")
    ax_acc.plot(epochs, [h["train_acc"] for h in history], "o-", ms=3, label="train (patches)")
    ax_acc.plot(epochs, [h["val_acc"] for h in history], "o-", ms=3, label="validation (clips)")
    if all("ema_val_acc" in h for h in history):
        ax_loss.plot(epochs, [h["ema_val_loss"] for h in history], "-", lw=2, label="validation, averaged weights")
        ax_acc.plot(epochs, [h["ema_val_acc"] for h in history], "-", lw=2, label="validation, averaged weights")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.set_title("Accuracy")
    if best_epoch is not None:
        for ax in (ax_loss, ax_acc):
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"model: {_RULE_NAMES.get(selection, selection)}"
                       f" (epoch {best_epoch})")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(fig, path, 110)


SILENCE_COLOUR = (0.8, 0.8, 0.8, 1.0)


def _level_line(ax, windows: Sequence) -> None:
    """Each window's LAeq at its centre, LA90..LA10 shaded (gaps where a window has no level)."""
    centre = np.array([(w.start + w.end) / 2 for w in windows])

    def series(name):
        return np.array([np.nan if getattr(w.levels, name) is None else getattr(w.levels, name) for w in windows])

    ax.fill_between(centre, series("LA90"), series("LA10"), color="tab:blue", alpha=0.2, lw=0,
                    label="LA90 .. LA10")
    ax.plot(centre, series("LAeq"), color="tab:blue", lw=1.8, marker="." if len(windows) < 60 else None,
            label="LAeq")
    calibrated = windows[0].levels.calibrated
    ax.set_ylabel("LAeq\ndB(A) SPL" if calibrated else "LAeq dBFS\n(uncalibrated)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7, frameon=False, ncol=2)


def plot_timeline(*, overview: np.ndarray, duration: float, segments: Sequence, windows: Sequence,
                  classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """A recording's scene timeline over its spectrogram, to a PNG.

    overview: ``(rows, columns)`` coarse log-mel (or MFCC) image spanning 0..duration seconds.
    segments: objects with start, end, label, confidence (seconds; label None: silence, drawn grey).
    windows: objects with start, end and probabilities ``(n_classes,)`` (None when silent), drawn as the top
    class's probability over time, and their ``levels`` (when measured) as a level line under the scene bands:
    each window's LAeq, with the range from LA90 to LA10 shaded; the axis says dB SPL or, uncalibrated, dBFS.
    """
    from matplotlib import colormaps

    levels = [w for w in windows if getattr(w, "levels", None) is not None]
    fig = _figure(figsize=(12, 6.6 if levels else 5.2))
    if levels:
        ax_spec, ax_seg, ax_level, ax_prob = fig.subplots(4, 1, sharex=True,
                                                          gridspec_kw={"height_ratios": [3, 0.9, 1.4, 1.4]})
        _level_line(ax_level, levels)
    else:
        ax_spec, ax_seg, ax_prob = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 0.9, 1.4]})
    ax_spec.imshow(overview, origin="lower", aspect="auto", cmap="magma", extent=(0, duration, 0, overview.shape[0]))
    ax_spec.set_ylabel("feature band")
    ax_spec.set_title(title or "Scene timeline")
    palette = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    colour = {c: palette(k % palette.N) for k, c in enumerate(classes)}
    colour[None] = SILENCE_COLOUR  # runs of silent windows: no scene
    for seg in segments:
        ax_seg.axvspan(seg.start, seg.end, color=colour[seg.label], alpha=0.85)
        if seg.end - seg.start > duration * 0.04:
            name = "silence" if seg.label is None else seg.label.replace("_", " ")
            ax_seg.text((seg.start + seg.end) / 2, 0.5, name, ha="center", va="center",
                        fontsize=8, color="0.3" if seg.label is None else "white", fontweight="bold")
    ax_seg.set_yticks([])
    ax_seg.set_ylabel("scene", rotation=0, ha="right", va="center")
    for w in windows:
        if w.probabilities is None:  # silent: not classified
            continue
        k = int(np.argmax(w.probabilities))
        ax_prob.plot([w.start, w.end], [w.probabilities[k]] * 2, color=colour[classes[k]], lw=2.5)
    ax_prob.set_ylim(0, 1.05)
    ax_prob.set_ylabel("window\nconfidence")
    ax_prob.set_xlabel("time (s)")
    ax_prob.set_xlim(0, duration)
    ax_prob.grid(alpha=0.3)
    from matplotlib.patches import Patch

    used = list(dict.fromkeys(s.label for s in segments))
    ax_seg.legend(handles=[Patch(color=colour[c], label="silence" if c is None else c) for c in used],
                  loc="upper center",
                  bbox_to_anchor=(0.5, -0.05), ncol=min(len(used), 6), fontsize=8, frameon=False)
    fig.tight_layout()
    return _save(fig, path, 110)
