"""The run folder: the one place that knows its layout.

A run folder (``soundscene train --out RUN``) holds::

    config.json              the validated configuration (clip length fixed)
    classes.json             the ordered class names
    split.csv                which file went to train / val / test (with its content digest)
    checkpoints/last.ckpt    the last finished epoch (to resume)
    model.safetensors        the chosen weights + configuration: alone enough to predict
    history.json             one record per epoch
    metrics.json, report.md, confusion_matrix.png, training_curves.png,
    predictions.csv, dcase_output.tsv, skipped.txt

Training writes it, cross-validation makes one per fold, evaluation and
inference read it; all of them go through :class:`RunFolder`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .._io import atomic_write_json
from ..config import Config
from .data import Item, read_split, write_split
from ..core.modelfile import MODEL_FILE_NAME, RUN_MARKER
from ..errors import SoundsceneError


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run folder (nothing is read until asked)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    config = property(lambda self: self.root / RUN_MARKER)
    classes = property(lambda self: self.root / "classes.json")
    split = property(lambda self: self.root / "split.csv")
    model = property(lambda self: self.root / MODEL_FILE_NAME)
    checkpoints = property(lambda self: self.root / "checkpoints")
    last_checkpoint = property(lambda self: self.root / "checkpoints" / "last.ckpt")
    history = property(lambda self: self.root / "history.json")
    metrics = property(lambda self: self.root / "metrics.json")
    skipped = property(lambda self: self.root / "skipped.txt")
    report = property(lambda self: self.root / "report.md")
    confusion_matrix = property(lambda self: self.root / "confusion_matrix.png")
    training_curves = property(lambda self: self.root / "training_curves.png")

    def is_run(self) -> bool:
        """True when the folder holds a run's configuration."""
        return self.config.is_file()

    def has_finished_epoch(self) -> bool:
        return self.last_checkpoint.is_file()

    def write_start(self, config: Config, splits: dict[str, list[Item]], classes: list[str]) -> None:
        """Record what a new run is made of: split, classes, configuration."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_split(splits, self.split)
        atomic_write_json(self.classes, list(classes))
        atomic_write_json(self.config, config.to_dict())

    def read(self) -> tuple[Config, dict[str, list[Item]], list[str]]:
        """(configuration, split, class names) of the run; one-line SoundsceneError when incomplete."""
        if not self.is_run():
            raise SoundsceneError(f"{self.root}: not a run folder (no {self.config.name})")
        config = Config.load(self.config)
        try:
            classes = json.loads(self.classes.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise SoundsceneError(f"{self.classes}: missing or damaged; the run folder is incomplete") from None
        return config, read_split(self.split), classes


def run_of_model(path: Path) -> RunFolder | None:
    """The run folder a model file belongs to, when it sits in one."""
    run = RunFolder(path.parent)
    return run if run.is_run() and run.model == path else None
