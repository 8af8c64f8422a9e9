"""Training: one function, :func:`train`, read top to bottom.

data -> split (recorded in the run folder) -> features computed once (the
cache) -> network (normalisation learnt from the training clips) -> Lightning
loop (:class:`SceneModule`: Adam, AdamW or SGD with weight decay, soft-target
cross-entropy so that mixup works, optional warm-up and cosine/step schedule,
gradient clipping, batch augmentation, an exponential moving average of the
weights; a checkpoint every epoch) -> the model file, written after every epoch
by the recorded selection rule (``train.selection``: the best validation epoch
by clip-level accuracy, the last epoch, or the averaged weights) -> evaluation
of that model on the test split, and of what each other rule would have chosen
-> report and plots.  With ``train.devices`` > 1 or several nodes it trains
with DDP; rank 0 writes the results.

A run folder holds everything needed to resume (``config.json``,
``split.csv``, ``checkpoints/last.ckpt``) and the results (``model.safetensors``,
``metrics.json``, ``report.md``, ``confusion_matrix.png``, ``training_curves.png``,
``history.json``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from torch.nn import functional as F

from .._io import atomic_write_json, atomic_write_text
from .cache import feature_sets
from ..config import Config
from .data import (FeatureSet, Manifest, PatchDataset, collate_batch, median_duration, split_manifest,
                   warn_if_no_groups, with_digests)
from .datasets import resolve_dataset
from ..errors import DataError, SoundsceneError
from .evaluation import score_and_report
from ..core.modelfile import load_model_file, save_model_file
from ..core.models import SceneNet, build_model, check_model_config, predict_clips
from ..core.plots import plot_training_curves
from .runs import RunFolder
from ..runtime import tune_malloc


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


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``(batch, n_classes)`` logits against soft targets ``(batch, n_classes)`` (rows sum to 1)
    or class indices ``(batch,)``; the mean over the batch."""
    if targets.ndim == 1:
        return F.cross_entropy(logits, targets)
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str, steps_per_epoch: int,
              step_epochs: int = 30, step_gamma: float = 0.1) -> float:
    """The learning rate at optimizer step ``step`` as a share of ``train.learning_rate``: a linear warm-up over
    warmup_steps, then constant, cosine to 0 at total_steps, or times step_gamma every step_epochs epochs."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if schedule == "step":
        return step_gamma ** (step // max(1, step_epochs * steps_per_epoch))
    return 1.0


def _ema_step(averaged: torch.Tensor, current: torch.Tensor, n_averaged: torch.Tensor, *, decay: float) -> torch.Tensor:
    """One step of the weights' moving average, with the usual warm-up of the decay, min(decay, (1 + n) / (10 + n)),
    so that the random initial weights do not linger in the average of a short run."""
    n = n_averaged.to(device=averaged.device, dtype=averaged.dtype)  # a tensor: no host synchronisation
    d = torch.clamp((1.0 + n) / (10.0 + n), max=decay)
    return averaged + (current.to(averaged.dtype) - averaged) * (1.0 - d)


class SceneModule(L.LightningModule):
    """The training loop's model: soft-target cross-entropy on augmented patches, the optimiser and schedule from
    the configuration, an exponential moving average of the weights, and clip-level validation after every epoch
    with the same code as evaluation (of the weights, and of their average).

    history: one record per epoch (train loss/accuracy on patches, validation loss/accuracy on clips, the
    average's validation figures, the learning rate).
    """

    def __init__(self, net: SceneNet, config: Config, val_features: torch.Tensor, val_labels: torch.Tensor,
                 augmenter=None):
        super().__init__()
        self.net = net
        self.config = config
        self.augmenter = augmenter
        self.val_features, self.val_labels = val_features, val_labels
        self.ema = None
        if config.train.ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel

            self.ema = AveragedModel(net, avg_fn=functools.partial(_ema_step, decay=config.train.ema_decay),
                                     use_buffers=True)
        self.history: list[dict] = []
        self._sums = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count (summed on the device)

    def training_step(self, batch, batch_idx):
        patches, labels, _ = batch
        targets = self.augmenter(patches, labels) if self.augmenter is not None else (patches, labels)
        patches, targets = targets
        logits = self.net(patches)
        loss = soft_cross_entropy(logits, targets)
        n = labels.shape[0]
        with torch.no_grad():
            self._sums = self._sums.to(loss.device)
            self._sums += torch.stack([loss.detach().double() * n, (logits.argmax(1) == labels).sum().double(),
                                       torch.tensor(float(n), dtype=torch.float64, device=loss.device)])
        self.log("loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.ema is not None:
            self.ema.update_parameters(self.net)

    def validate_clips(self, net: torch.nn.Module) -> tuple[float, float]:
        """(accuracy, log loss) of ``net`` on the validation clips, as evaluation scores them."""
        was_training = net.training
        net.eval()
        probs = predict_clips(net, self.val_features, features_config=self.config.features,
                              aggregate=self.config.model.aggregate)
        net.train(was_training)
        picked = probs[torch.arange(len(self.val_labels)), self.val_labels].clamp_min(1e-15)
        return float((probs.argmax(1) == self.val_labels).float().mean()), float(-picked.log().mean())

    def on_train_epoch_end(self):
        loss_sum, correct, count = self._sums.tolist()
        self._sums.zero_()
        val_acc, val_loss = self.validate_clips(self.net)
        record = {"epoch": self.current_epoch + 1, "train_loss": loss_sum / max(count, 1),
                  "train_acc": correct / max(count, 1), "val_loss": val_loss, "val_acc": val_acc,
                  "lr": float(self.trainer.optimizers[0].param_groups[0]["lr"])}
        if self.ema is not None:
            record["ema_val_acc"], record["ema_val_loss"] = self.validate_clips(self.ema.module)
        self.history.append(record)
        self.log("val_acc", val_acc, prog_bar=True)
        if self.ema is not None:
            self.log("ema_val_acc", record["ema_val_acc"], prog_bar=True)

    def configure_optimizers(self):
        t = self.config.train
        params = self.net.parameters()
        if t.optimizer == "adamw":
            optimizer = torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay)
        elif t.optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=t.learning_rate, weight_decay=t.weight_decay, momentum=0.9,
                                        nesterov=True)
        else:
            optimizer = torch.optim.Adam(params, lr=t.learning_rate, weight_decay=t.weight_decay)
        if t.schedule == "constant" and not t.warmup_epochs:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, total // max(1, self.trainer.max_epochs))
        factor = functools.partial(lr_factor, total_steps=total, warmup_steps=int(t.warmup_epochs * per_epoch),
                                   schedule=t.schedule, steps_per_epoch=per_epoch, step_epochs=t.step_epochs,
                                   step_gamma=t.step_gamma)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint):
        checkpoint["soundscene_history"] = list(self.history)

    def on_load_checkpoint(self, checkpoint):
        self.history = list(checkpoint.get("soundscene_history", []))


class ModelFileWriter(Checkpoint):
    """Writes the model file after each epoch by the run's selection rule, and history.json (rank 0 only).

    best_val: the weights of the epoch with the best clip-level validation accuracy (ties: lower loss);
    ema: the weights' moving average (the file at the end holds the average at the end of the schedule);
    last: the last epoch's weights.  The rule and the epoch are recorded in the model file's metadata.

    The best_val weights are also kept (and saved in the resume checkpoint, so that a resumed run still
    has them when its best epoch came before the interruption) to score every rule at the end.
    """

    # A Checkpoint subclass, so that Lightning runs it after the module's own on_train_epoch_end (the validation),
    # and before the last-epoch checkpoint is written (Lightning keeps the checkpoint callbacks in their order).

    def __init__(self, run: RunFolder, config: Config, classes: list[str], trained_on: list[str],
                 trained_on_audio: list[str] | None = None):
        self.run, self.config, self.classes, self.trained_on = run, config, classes, trained_on
        self.trained_on_audio = list(trained_on_audio or [])
        self.best_state: dict | None = None  # the best_val weights, kept to score every rule at the end

    def state_dict(self) -> dict:
        return {"best_state": self.best_state} if self.best_state is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        best = state_dict.get("best_state")
        self.best_state = dict(best) if isinstance(best, dict) else None

    def on_train_epoch_end(self, trainer, module: SceneModule):
        record = module.history[-1]
        best = max(module.history, key=_selection_key) is record
        if best:
            self.best_state = {k: v.detach().cpu().clone() for k, v in module.net.state_dict().items()}
        if not trainer.is_global_zero:
            return
        atomic_write_json(self.run.history, module.history)
        rule = self.config.train.selection
        if rule == "ema":
            net = module.ema.module
        elif rule == "last" or best:
            net = module.net
        else:
            return
        save_model_file(self.run.model, net, self.config, self.classes, trained_on=self.trained_on,
                        trained_on_audio=self.trained_on_audio,
                        extra={"best_epoch": str(record["epoch"]), "selection": rule})


def _training_device(config: Config) -> torch.device:
    """The device this process will train on (its local rank's GPU, or the CPU)."""
    t = config.train
    wants_gpu = t.accelerator in ("gpu", "cuda") or (t.accelerator == "auto" and torch.cuda.is_available())
    if wants_gpu and torch.cuda.is_available() and t.num_workers == 0:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _score_rules(module: SceneModule, writer: ModelFileWriter, test_set, config: Config) -> dict:
    """Test accuracy of the weights each selection rule gives (best validation epoch, last epoch, average),
    recorded beside the chosen rule's full metrics so that rules can be compared on the same run.

    The best_val weights come from the writer (kept during training, or restored from the checkpoint of a
    resumed run); a run resumed from a checkpoint written before they were saved there, whose rule is
    best_val, takes them from its model file."""
    candidates = {"last": module.net}
    best_state = writer.best_state
    if best_state is None and config.train.selection == "best_val" and writer.run.model.is_file():
        best_state = load_model_file(writer.run.model).net.state_dict()
    if best_state is not None:
        best = copy.deepcopy(module.net)
        best.load_state_dict(best_state)
        candidates["best_val"] = best
    if module.ema is not None:
        candidates["ema"] = module.ema.module
    out = {}
    for name, net in candidates.items():
        net = net.eval()
        probs = predict_clips(net, test_set.features, features_config=config.features,
                              aggregate=config.model.aggregate)
        out[name] = float((probs.argmax(1) == test_set.labels).float().mean())
    return out


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


def _resume_hint(run_dir: Path) -> str:
    """How to go on after an interruption: from the last finished epoch, or from the start."""
    if RunFolder(run_dir).has_finished_epoch():
        return f"progress up to the last finished epoch is saved; continue with: soundscene train --resume {run_dir}"
    return "before the first epoch finished; run the same command again to start over"


def _fit(trainer, module, **kwargs) -> None:
    """``trainer.fit``; Ctrl-C (or SIGTERM, which the CLI turns into it) is a KeyboardInterrupt that says how to
    resume.  Lightning answers a KeyboardInterrupt with ``sys.exit(1)`` after its clean-up: that exit becomes
    the interruption again, so the command line can exit 130 with one line."""
    try:
        trainer.fit(module, **kwargs)
    except SystemExit:
        if not trainer.interrupted:
            raise
        raise KeyboardInterrupt(_resume_hint(Path(trainer.default_root_dir))) from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_resume_hint(Path(trainer.default_root_dir))) from None


def _check_checkpoint(path: Path, net: SceneNet) -> None:
    """Refuse, in one line, a resume checkpoint that is damaged or does not fit the run's configuration."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for damaged files (zip, pickle, EOF, runtime)
        raise SoundsceneError(f"{path}: checkpoint cannot be read ({type(exc).__name__}); the file is damaged - "
                              "delete the run folder's checkpoints/ and start the run again") from None
    state = {k.removeprefix("net."): v for k, v in checkpoint.get("state_dict", {}).items()
             if k.startswith("net.")}  # the weights' average ("ema.") has the same shapes
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

    tune_malloc()  # training is an entry point: keep freed memory for reuse (see runtime.py)
    started = time.perf_counter()
    run = RunFolder(run_dir)
    if resume:
        config, splits, classes = _resumed_run(run, epochs)
    else:
        if data is None:
            raise DataError("no data given to train on")
        config, splits, classes = prepare_run(data, run.root, config=config, test_fold=test_fold,
                                              val_fold=val_fold, test_fraction=test_fraction, skip_bad=skip_bad)

    L.seed_everything(config.train.seed, workers=True, verbose=False)
    sets, skipped = feature_sets(splits, config, classes, cache_dir=cache_dir, use_cache=use_cache,
                                 workers=workers, skip_bad=skip_bad, progress=progress)
    train_set, val_set, test_set = sets["train"], sets["val"], sets["test"]
    trained_on = [i.digest for part in (splits["train"], splits["val"]) for i in part if i.digest]
    # the digests of the decoded clips, computed where the feature cache decoded them
    trained_on_audio = [i.audio_digest for fs in (train_set, val_set) for i in fs.items if i.audio_digest]

    net = build_model(config, n_classes=len(classes))
    net.set_normalisation(train_set.features)
    if resume:
        _check_checkpoint(run.last_checkpoint, net)
    module = SceneModule(net, config, val_set.features, val_set.labels, _augmenter(config, len(classes)))
    writer = ModelFileWriter(run, config, classes, trained_on, trained_on_audio)
    trainer = _trainer(config, run, writer, progress)
    with _quiet_lightning():
        _fit(trainer, module, train_dataloaders=_train_loader(train_set, config),
             ckpt_path=run.last_checkpoint if resume else None, weights_only=True)

    if trainer.interrupted:
        raise SoundsceneError(f"training was interrupted; continue with: soundscene train --resume {run.root}")
    history = module.history
    rule = config.train.selection
    best_epoch = max(history, key=_selection_key)["epoch"] if rule == "best_val" else history[-1]["epoch"]
    if not trainer.is_global_zero:  # other DDP processes: rank 0 evaluates and writes the results
        return TrainResult(run.root, run.model, {}, history, best_epoch, time.perf_counter() - started, [])
    # The model file holds the weights the selection rule chose (written during training); evaluate that,
    # and, for comparison, what each other rule would have chosen.
    rules = _score_rules(module, writer, test_set, config)
    metrics = score_and_report(load_model_file(run.model).net, config, classes, test_set, run.root,
                               title="Test split",
                               extra={"best_epoch": best_epoch, "selection": rule, "selection_rules": rules})
    atomic_write_json(run.history, history)
    plot_training_curves(history, run.training_curves, best_epoch=best_epoch, selection=rule)
    reasons = [why for _, why in skipped]
    if reasons:
        atomic_write_text(run.skipped, "".join(f"{why}\n" for why in reasons))
    return TrainResult(run.root, run.model, metrics, history, best_epoch, time.perf_counter() - started, reasons)


def _resumed_run(run: RunFolder, epochs: int | None) -> tuple[Config, dict, list[str]]:
    """The configuration, split (with content digests) and classes of a run to continue."""
    config, splits, classes = run.read()
    if not run.last_checkpoint.is_file():
        raise SoundsceneError(f"{run.root}: no finished epoch to resume from ({run.last_checkpoint} is missing); "
                              "start the run again")
    if epochs is not None:
        config = config.with_overrides({"train.epochs": epochs})
        atomic_write_json(run.config, config.to_dict())
    return config, {name: with_digests(part) for name, part in splits.items()}, classes


def _augmenter(config: Config, n_classes: int):
    """The batch augmenter the configuration asks for, or None (each DDP rank draws its own)."""
    if not config.augment.any:
        return None
    from .augment import Augmenter

    return Augmenter.from_config(config, n_classes=n_classes, seed=config.train.seed + int(os.environ.get("RANK", "0")))


def _train_loader(train_set: FeatureSet, config: Config) -> torch.utils.data.DataLoader:
    """Shuffled batches of patches cut from the training clips' features (kept on the GPU when training there:
    batches are cut in place, no copy per step)."""
    device = _training_device(config)
    if device.type != "cpu":
        train_set = FeatureSet(train_set.features.to(device), train_set.labels.to(device), train_set.items)
    return torch.utils.data.DataLoader(
        PatchDataset(train_set, patch_frames=config.features.patch_frames,
                     hop_frames=config.features.patch_hop_frames),
        batch_size=config.train.batch_size, shuffle=True, generator=torch.Generator().manual_seed(config.train.seed),
        collate_fn=collate_batch, num_workers=config.train.num_workers,
        persistent_workers=config.train.num_workers > 0)


def _trainer(config: Config, run: RunFolder, writer: "ModelFileWriter", progress: bool):
    """The Lightning trainer: the model-file writer, the last-epoch checkpoint, the run-folder guard and the
    progress bar; one line naming the settings when they cannot be used on this machine."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import ModelCheckpoint

    checkpoint = ModelCheckpoint(dirpath=run.checkpoints, filename="last", save_top_k=1,
                                 save_on_train_epoch_end=True, enable_version_counter=False)
    t = config.train
    with _quiet_lightning():
        try:
            return L.Trainer(max_epochs=t.epochs, accelerator=t.accelerator, precision=t.precision,
                             devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy, logger=False,
                             callbacks=[writer, checkpoint, *([_progress_bar()] if progress else [])], limit_val_batches=0,
                             gradient_clip_val=t.grad_clip or None,
                             num_sanity_val_steps=0, enable_progress_bar=progress, enable_model_summary=False,
                             deterministic=True, default_root_dir=run.root, log_every_n_steps=1)
        except (MisconfigurationException, ValueError, RuntimeError) as exc:
            raise SoundsceneError(f"cannot train with train.accelerator={t.accelerator!r}, "
                                  f"train.precision={t.precision!r}, train.devices={t.devices}, "
                                  f"train.strategy={t.strategy!r} here: {str(exc).strip().splitlines()[0]}") from None

