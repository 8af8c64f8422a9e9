"""Training: one function, :func:`train`, read top to bottom.

data -> split (recorded in the run folder) -> features computed once ->
network (normalisation learnt from the training clips) -> Lightning loop
(Adam, cross-entropy, checkpoint every epoch, best epoch by clip-level
validation accuracy) -> model file -> evaluation on the test split -> plots.

A run folder holds everything needed to resume (``config.json``,
``split.csv``, ``checkpoints/last.ckpt``) and the results (``model.safetensors``,
``metrics.json``, ``report.md``, ``confusion_matrix.png``, ``training_curves.png``,
``history.json``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F

from ._io import atomic_write_json, atomic_write_text
from .cache import feature_sets
from .config import Config
from .data import Manifest, PatchDataset, collate_batch, median_duration, split_manifest, warn_if_no_groups, with_digests
from .datasets import resolve_dataset
from .errors import DataError, SoundsceneError
from .evaluation import score_and_report
from .modelfile import load_model_file, save_model_file
from .models import SceneNet, build_model, check_model_config, predict_clips
from .plots import plot_training_curves
from .runs import RunFolder
from .runtime import tune_malloc


@dataclass
class TrainResult:
    """Where a run's results are and its headline figures."""

    run_dir: Path
    model_path: Path
    test_metrics: dict
    history: list[dict]
    best_epoch: int
    seconds: float
    skipped: list[str] = field(default_factory=list)


def _lightning_module(net: SceneNet, config: Config, classes: list[str], val_features, val_labels,
                      model_path: Path, trained_on: list[str]):
    """Build the LightningModule (import kept local: Lightning is slow to import).

    After each epoch it scores the validation clips exactly as evaluation does;
    when the epoch is the best so far (highest accuracy, ties broken by lower
    loss) it writes the model file, so model_path always holds the best epoch.
    """
    import lightning as L

    class SceneModule(L.LightningModule):
        """Cross-entropy on patches; clip-level validation with the same code as evaluation."""

        def __init__(self):
            super().__init__()
            self.net = net
            self.history: list[dict] = []
            self._sums = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count

        def training_step(self, batch, batch_idx):
            patches, labels, _ = batch
            logits = self.net(patches)
            loss = F.cross_entropy(logits, labels)
            n = labels.shape[0]
            self._sums += torch.tensor([loss.item() * n, (logits.argmax(1) == labels).sum().item(), n],
                                       dtype=torch.float64)
            self.log("loss", loss, prog_bar=True)
            return loss

        def on_train_epoch_end(self):
            self.net.eval()
            probs = predict_clips(self.net, val_features, features_config=config.features,
                                  aggregate=config.model.aggregate)
            self.net.train()
            picked = probs[torch.arange(len(val_labels)), val_labels].clamp_min(1e-15)
            loss_sum, correct, count = self._sums.tolist()
            record = {
                "epoch": self.current_epoch + 1,
                "train_loss": loss_sum / max(count, 1),
                "train_acc": correct / max(count, 1),
                "val_loss": float(-picked.log().mean()),
                "val_acc": float((probs.argmax(1) == val_labels).float().mean()),
            }
            self.history.append(record)
            self._sums.zero_()
            atomic_write_json(RunFolder(model_path.parent).history, self.history)
            if max(self.history, key=_selection_key) is record:
                save_model_file(model_path, self.net, config, classes, extra={"best_epoch": str(record["epoch"])},
                                trained_on=trained_on)
            self.log("val_acc", record["val_acc"], prog_bar=True)
            self.log("val_loss", record["val_loss"], prog_bar=True)

        def configure_optimizers(self):
            return torch.optim.Adam(self.net.parameters(), lr=config.train.learning_rate,
                                    weight_decay=config.train.weight_decay)

        def on_save_checkpoint(self, checkpoint):
            checkpoint["soundscene_history"] = list(self.history)

        def on_load_checkpoint(self, checkpoint):
            self.history = list(checkpoint.get("soundscene_history", []))

    return SceneModule()


@contextlib.contextmanager
def _quiet_lightning():
    """Hide Lightning's start-up chatter (device lines, tips) and known harmless warnings."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _selection_key(record: dict) -> tuple[float, float, int]:
    """Order of epochs for model selection: accuracy, then lower loss, then earlier."""
    return (record["val_acc"], -record["val_loss"], -record["epoch"])


def _progress_bar():
    """Lightning's tqdm bar on stderr (stdout stays for results), counting epochs from 1 like history.json."""
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

    class StderrProgressBar(TQDMProgressBar):
        def init_train_tqdm(self):
            return Tqdm(desc="training", position=0, disable=self.is_disabled, leave=True, dynamic_ncols=True,
                        file=sys.stderr, smoothing=0, bar_format=self.BAR_FORMAT)

        def on_train_epoch_start(self, trainer, *args):
            super().on_train_epoch_start(trainer, *args)
            self.train_progress_bar.set_description(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

    return StderrProgressBar()


def _run_folder_callback(run_dir: Path):
    import lightning as L

    class RunFolder(L.Callback):
        """Tells how to continue after an interruption."""

        def on_exception(self, trainer, pl_module, exception):
            if not isinstance(exception, KeyboardInterrupt):
                return
            if RunFolder(run_dir).has_finished_epoch():
                print(f"\ninterrupted: progress up to the last finished epoch is saved; "
                      f"continue with: soundscene train --resume {run_dir}", file=sys.stderr)
            else:
                print("\ninterrupted before the first epoch finished; run the same command again to start over",
                      file=sys.stderr)

    return RunFolder()


def _check_checkpoint(path: Path, net: SceneNet) -> None:
    """Refuse, in one line, a resume checkpoint that is damaged or does not fit the run's configuration."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for damaged files (zip, pickle, EOF, runtime)
        raise SoundsceneError(f"{path}: checkpoint cannot be read ({type(exc).__name__}); the file is damaged - "
                              "delete the run folder's checkpoints/ and start the run again") from None
    state = {k.removeprefix("net."): v for k, v in checkpoint.get("state_dict", {}).items()}
    missing, unexpected = set(net.state_dict()) - set(state), set(state) - set(net.state_dict())
    wrong = [k for k in set(state) & set(net.state_dict()) if state[k].shape != net.state_dict()[k].shape]
    if missing or unexpected or wrong:
        raise SoundsceneError(f"{path}: checkpoint does not fit the run's configuration (config.json was changed?): "
                              f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} mis-shaped "
                              "weights; restore config.json or start a new run")


def prepare_run(data: str | Path | Manifest, run_dir: str | Path, *, config: Config | None = None,
                test_fold: int | None = None, val_fold: int | None = None,
                test_fraction: float | None = None, skip_bad: bool = False) -> tuple[Config, dict, list[str]]:
    """Create a run folder: the split (with each file's content digest), the class names and the
    configuration (clip length fixed).

    Returns (config, splits, classes).  Refuses a folder that holds a run with a
    finished epoch (resume that instead); a run that stopped before its first
    checkpoint is started again.
    """
    run = RunFolder(run_dir)
    if run.has_finished_epoch():
        raise SoundsceneError(f"{run.root} already holds a run; continue it with --resume {run.root} "
                              "or choose another --out folder")
    config = config or Config()
    check_model_config(config)
    manifest = data if isinstance(data, Manifest) else resolve_dataset(data)
    if not (test_fold or val_fold):
        warn_if_no_groups(manifest)
    splits = split_manifest(manifest, test_fold=test_fold, val_fold=val_fold, test_fraction=test_fraction,
                            val_fraction=config.train.val_fraction, seed=config.train.seed)
    splits = {name: with_digests(part) for name, part in splits.items()}
    if config.audio.clip_seconds is None:
        seconds = max(config.audio.min_seconds, round(median_duration(splits["train"], skip_bad=skip_bad), 1))
        config = config.with_overrides({"audio.clip_seconds": seconds})
    run.write_start(config, splits, manifest.classes)
    return config, splits, list(manifest.classes)


def load_run(run_dir: str | Path) -> tuple[Config, dict, list[str]]:
    """Read a run folder's configuration, split and class names (to resume or evaluate it)."""
    return RunFolder(run_dir).read()


def train(data: str | Path | Manifest | None = None, *, run_dir: str | Path, config: Config | None = None,
          test_fold: int | None = None, val_fold: int | None = None, test_fraction: float | None = None,
          resume: bool = False, epochs: int | None = None, skip_bad: bool = False,
          cache_dir: str | Path | None = None, use_cache: bool = True, workers: int = 1,
          progress: bool = True) -> TrainResult:
    """Train a scene classifier and evaluate it on the held-out test split.

    Args:
        data: a class-per-folder directory, a CSV manifest, or a Manifest (ignored with resume).
        run_dir: folder for checkpoints and results (created; must not hold a run unless resume).
        config: settings (defaults: the paper's); audio.clip_seconds None is set from the data.
        test_fold / val_fold / test_fraction: how to split (see :func:`split_manifest`).
        resume: continue the run in run_dir from its last finished epoch.
        epochs: with resume, a new total number of epochs (to extend a finished run).
        skip_bad: leave out unreadable clips (listed in skipped.txt) instead of stopping.
        cache_dir / use_cache: where the feature cache lives (default ``~/.cache/soundscene``,
            or $SOUNDSCENE_CACHE); use_cache False computes features in memory for this run only.
        workers: processes that decode and featurise audio while the cache is built.
        progress: show progress bars.

    Returns:
        TrainResult with the model path, test metrics and per-epoch history.
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    tune_malloc()  # training is an entry point: keep freed memory for reuse (see runtime.py)
    started = time.perf_counter()
    run = RunFolder(run_dir)
    run_dir, last_ckpt = run.root, run.last_checkpoint
    if resume:
        config, splits, classes = run.read()
        if not last_ckpt.is_file():
            raise SoundsceneError(f"{run_dir}: no finished epoch to resume from ({last_ckpt} is missing); "
                                  "start the run again")
        if epochs is not None:
            config = config.with_overrides({"train.epochs": epochs})
            atomic_write_json(run.config, config.to_dict())
        splits = {name: with_digests(part) for name, part in splits.items()}
    else:
        if data is None:
            raise DataError("no data given to train on")
        config, splits, classes = prepare_run(data, run_dir, config=config, test_fold=test_fold,
                                              val_fold=val_fold, test_fraction=test_fraction, skip_bad=skip_bad)

    L.seed_everything(config.train.seed, workers=True, verbose=False)
    sets, skipped = feature_sets(splits, config, classes, cache_dir=cache_dir, use_cache=use_cache,
                                 workers=workers, skip_bad=skip_bad, progress=progress)
    train_set, val_set, test_set = sets["train"], sets["val"], sets["test"]
    trained_on = [i.digest for part in (splits["train"], splits["val"]) for i in part if i.digest]

    net = build_model(config, n_classes=len(classes))
    net.set_normalisation(train_set.features)
    if resume:
        _check_checkpoint(last_ckpt, net)
    model_path = run.model
    module = _lightning_module(net, config, classes, val_set.features, val_set.labels, model_path, trained_on)

    loader_gen = torch.Generator().manual_seed(config.train.seed)
    train_loader = torch.utils.data.DataLoader(
        PatchDataset(train_set, patch_frames=config.features.patch_frames,
                     hop_frames=config.features.patch_hop_frames),
        batch_size=config.train.batch_size, shuffle=True, generator=loader_gen, collate_fn=collate_batch,
        num_workers=config.train.num_workers, persistent_workers=config.train.num_workers > 0)

    checkpoint = ModelCheckpoint(dirpath=run.checkpoints, filename="last", save_top_k=1,
                                 save_on_train_epoch_end=True, enable_version_counter=False)
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    with _quiet_lightning():
        try:
            trainer = L.Trainer(max_epochs=config.train.epochs, accelerator=config.train.accelerator,
                                precision=config.train.precision, devices=1, logger=False,
                                callbacks=[checkpoint, _run_folder_callback(run_dir),
                                           *([_progress_bar()] if progress else [])], limit_val_batches=0,
                                num_sanity_val_steps=0, enable_progress_bar=progress, enable_model_summary=False,
                                deterministic=True, default_root_dir=run_dir, log_every_n_steps=1)
        except (MisconfigurationException, ValueError, RuntimeError) as exc:
            raise SoundsceneError(f"cannot train with train.accelerator={config.train.accelerator!r} and "
                                  f"train.precision={config.train.precision!r} here: "
                                  f"{str(exc).strip().splitlines()[0]}") from None
        trainer.fit(module, train_dataloaders=train_loader, ckpt_path=last_ckpt if resume else None,
                    weights_only=True)

    if trainer.interrupted:
        raise SoundsceneError(f"training was interrupted; continue with: soundscene train --resume {run_dir}")
    # The model file holds the best epoch (written during training); evaluate that.
    history = module.history
    best_epoch = max(history, key=_selection_key)["epoch"]
    net = load_model_file(model_path).net

    metrics = score_and_report(net, config, classes, test_set, run_dir, title="Test split",
                               extra={"best_epoch": best_epoch})
    atomic_write_json(run.history, history)
    plot_training_curves(history, run.training_curves, best_epoch=best_epoch)
    reasons = [why for _, why in skipped]
    if reasons:
        atomic_write_text(run.skipped, "".join(f"{why}\n" for why in reasons))
    return TrainResult(run_dir, model_path, metrics, history, best_epoch, time.perf_counter() - started, reasons)

