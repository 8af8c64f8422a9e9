"""Pictures a user would rather see than read: the confusion matrix and training curves.

Both are written atomically as PNG with matplotlib's non-interactive Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ._io import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(matrix: np.ndarray, classes: Sequence[str], path: str | Path, *,
                          title: str = "Normalized confusion matrix") -> Path:
    """Draw a row-normalised confusion matrix ``(n_classes, n_classes)`` (rows: true class) to a PNG."""
    plt = _pyplot()
    n = len(classes)
    size = max(5.0, 0.6 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
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
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return out


def plot_training_curves(history: Sequence[dict], path: str | Path, *, best_epoch: int | None = None) -> Path:
    """Loss and accuracy per epoch (train on patches, validation on clips) to a PNG.

    history: one dict per epoch with keys epoch, train_loss, train_acc, val_loss, val_acc.
    """
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", ms=3, label="train (patches)")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], "o-", ms=3, label="validation (clips)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_title("Loss")
    ax_acc.plot(epochs, [h["train_acc"] for h in history], "o-", ms=3, label="train (patches)")
    ax_acc.plot(epochs, [h["val_acc"] for h in history], "o-", ms=3, label="validation (clips)")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.set_title("Accuracy")
    if best_epoch is not None:
        for ax in (ax_loss, ax_acc):
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch ({best_epoch})")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out
