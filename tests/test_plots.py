"""Pictures (soundscene.core.plots): each function writes one PNG of a sane size, atomically (a failed write
leaves the old file and no temporary beside it), without touching pyplot."""

import struct
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from soundscene.core.plots import plot_confusion_matrix, plot_timeline, plot_training_curves

CLASSES = ["street_traffic", "park", "metro", "rain"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path) -> tuple[int, int]:
    """(width, height) in pixels of a PNG, checking its signature and that it is not empty."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    assert 2_000 < len(data) < 2_000_000, len(data)
    return struct.unpack(">II", data[16:24])


def _confusion(path, classes=CLASSES):
    n = len(classes)
    matrix = np.full((n, n), 0.1 / max(n - 1, 1)) + np.eye(n) * 0.9
    return plot_confusion_matrix(matrix, classes, path)


def _curves(path, *, ema=True):
    history = [{"epoch": e, "train_loss": 1.5 / e, "train_acc": 0.2 * e, "val_loss": 1.6 / e, "val_acc": 0.18 * e,
                **({"ema_val_loss": 1.55 / e, "ema_val_acc": 0.19 * e} if ema else {})} for e in range(1, 5)]
    return plot_training_curves(history, path, best_epoch=3, selection="ema" if ema else "best_val")


def _timeline(path):
    duration = 30.0
    segments = [SimpleNamespace(start=0.0, end=12.0, label="street_traffic", confidence=0.8),
                SimpleNamespace(start=12.0, end=30.0, label="park", confidence=0.7)]
    windows = []
    for k in range(29):
        probs = np.full(len(CLASSES), 0.1)
        probs[0 if k < 12 else 1] = 0.7
        windows.append(SimpleNamespace(start=float(k), end=k + 2.0, probabilities=probs))
    overview = np.random.default_rng(0).standard_normal((40, 300)).astype(np.float32)
    return plot_timeline(overview=overview, duration=duration, segments=segments, windows=windows, classes=CLASSES,
                         path=path, title="walk.wav: street_traffic")


PLOTS = {"confusion matrix": _confusion, "training curves": _curves, "timeline": _timeline}


@pytest.mark.parametrize("plot", list(PLOTS))
def test_each_plot_writes_a_png_of_a_sane_size(tmp_path, plot):
    path = tmp_path / "deeper" / "picture.png"  # missing folders are made
    assert PLOTS[plot](path) == path
    width, height = _png_size(path)
    assert 400 <= width <= 3000 and 300 <= height <= 3000 and width >= height
    assert [p.name for p in path.parent.iterdir()] == ["picture.png"]  # no temporary left beside it


@pytest.mark.parametrize("plot", list(PLOTS))
def test_a_failed_write_leaves_the_old_picture_and_no_temporary(tmp_path, plot, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "picture.png"
    PLOTS[plot](path)
    old = path.read_bytes()

    def half_then_fail(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(PNG_SIGNATURE)
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        PLOTS[plot](path)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["picture.png"]


def test_the_confusion_matrix_grows_with_the_classes_and_training_curves_without_averaged_weights(tmp_path):
    small = _png_size(_confusion(tmp_path / "small.png"))
    many = [f"class_{k}" for k in range(30)]  # more than 20: no numbers in the cells, still a picture
    large = _png_size(_confusion(tmp_path / "large.png", many))
    assert large[0] > small[0] and large[1] > small[1]
    _png_size(_curves(tmp_path / "plain.png", ema=False))


def test_plots_leave_pyplot_alone(tmp_path):
    """A notebook importing soundscene keeps its own backend: drawing all three never imports pyplot."""
    import subprocess

    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_plots as t; "
              f"from pathlib import Path; [plot(Path({str(tmp_path)!r}) / (name + '.png')) "
              "for name, plot in t.PLOTS.items()]; assert 'matplotlib.pyplot' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list(tmp_path.glob("*.png"))) == len(PLOTS)
