"""The one source of truth for every setting of the pipeline.

A :class:`Config` has four sections:

* ``audio``    — how a file becomes a waveform (rate, channels, clip length);
* ``features`` — the front end (log-mel or MFCC + deltas) and the patches;
* ``model``    — which registered network, its own parameters, how patches vote;
* ``augment``  — batch augmentation (off by default);
* ``train``    — the optimiser, schedule, selection rule and loop (paper defaults).

It is stored as JSON inside every model file and run folder, and validated
whenever it is read: unknown keys, wrong types and out-of-range values are
refused with one line naming the key.  Training, evaluation and inference
all read the same object; what the command line offers as shortcuts
(``--epochs``, ``--lr`` ...) are overrides of its keys, not settings of their own.

Every number has a finite range, kept in one table, :data:`RANGES` (with the
few rules that tie two keys together in the sections' ``validate``); the
inference window and hop have theirs here too (:data:`MAX_WINDOW_SECONDS`,
:data:`MIN_HOP_SECONDS`).  A value outside its range, ``inf`` or ``nan`` is
refused in one line naming the key and the range, e.g. ``invalid
audio.clip_seconds: 1e+06 s is outside 0.02..600 s``.  The limits are wide
enough for any real use and narrow enough that no value can make the program
allocate without bound: a training clip or analysis window is at most 10
minutes, a file at most a day, a hop at least 10 ms.

A Config is frozen: change it with :meth:`Config.with_overrides`, which
returns a validated copy.  Format 2 (this version) keeps each network's own
parameters in ``model.params`` (validated by the network's builder, see
:mod:`soundscene.core.models`); format-1 files (``model.widths``/``model.dropout``)
are read and converted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

FEATURE_KINDS = ("logmel", "mfcc")
PAD_MODES = ("repeat", "zeros")
AGGREGATIONS = ("mean", "log_mean", "max", "vote")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "64-true")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")
SELECTIONS = ("best_val", "ema", "last")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp", "deepspeed")
CONFIG_FORMAT = 2
READABLE_FORMATS = (1, 2)

MAX_CLIP_SECONDS = 600.0  # a training clip: at most 10 minutes
MAX_WINDOW_SECONDS = MAX_CLIP_SECONDS  # an analysis window (predict/listen --window): at most 10 minutes
MIN_HOP_SECONDS = 0.01  # the hop between analysis windows (--hop): at least 10 ms, at most the window
MAX_OVERLAP = 20  # and at least 1/20 of the window: each moment in at most 20 windows (bounds the work)
MIN_SECONDS = 2 * MIN_HOP_SECONDS  # audio.min_seconds and clip_seconds: so half a window is always a valid hop
MAX_FILE_SECONDS = 86400.0  # audio.max_seconds: at most a day
MAX_SEED = 2**32 - 1  # what every random generator the training seeds accepts
MAX_CLASSES = 10000  # classes of a model (its file's "classes"): the output layer stays small


@dataclass(frozen=True)
class Range:
    """The values a number may take: ``low..high`` (``low_open``/``high_open`` leave an end out), in ``unit``."""

    low: float
    high: float
    unit: str = ""
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = self.low < value if self.low_open else self.low <= value
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.low_open or self.high_open:
            text = f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        else:
            text = f"{low}..{high}"
        return f"{text} {self.unit}".rstrip()

    def refusal(self, value: Any) -> str | None:
        """None when value is in range, else why not, e.g. ``1e+06 s is outside 0.02..600 s`` or ``nan is not a
        finite number; give a value in 0.02..600 s`` (the caller puts the key or option in front)."""
        if value in self:
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value} is not a finite number; give a value in {self}"
        shown = _number(value)
        unit = f" {self.unit}" if self.unit and shown[-1].isdigit() else ""
        return f"{shown}{unit} is outside {self}"


SILENCE_DBFS = Range(-200.0, 0.0, "dBFS")  # --silence-dbfs: a window quieter than this is silent (inference)
CALIBRATION_DB = Range(0.0, 250.0, "dB")  # --calibration-db: the dB SPL of a full-scale RMS at the microphone
LEVEL_INTERVAL = Range(1.0, 86400.0, "s")  # --level-interval: a sensor's levels message every so often
HEALTH_INTERVAL = Range(1.0, 86400.0, "s")  # --health-interval: a sensor's health message every so often
SPOOL_MB = Range(1.0, 1e6, "MB")  # --spool-max-mb: the disk a sensor's spool may take

# The range of every number in a Config ("section.key"); rules between keys are in the sections' validate().
RANGES: dict[str, Range] = {
    "audio.sample_rate": Range(8000, 192000, "Hz"),
    "audio.channels": Range(1, 16),
    "audio.clip_seconds": Range(MIN_SECONDS, MAX_CLIP_SECONDS, "s"),
    "audio.min_seconds": Range(MIN_SECONDS, MAX_CLIP_SECONDS, "s"),
    "audio.max_seconds": Range(MIN_SECONDS, MAX_FILE_SECONDS, "s"),
    "features.frame_seconds": Range(0.001, 1.0, "s"),
    "features.hop_seconds": Range(0.001, 1.0, "s"),
    "features.n_fft": Range(1, 2**18, "samples"),
    "features.n_mels": Range(1, 512),
    "features.fmin": Range(0, 96000, "Hz"),
    "features.fmax": Range(0, 96000, "Hz", low_open=True),
    "features.top_db": Range(0, 200, "dB", low_open=True),
    "features.n_mfcc": Range(1, 512),
    "features.delta_width": Range(3, 99, "frames"),
    "features.patch_frames": Range(8, 10000, "frames"),
    "features.patch_hop_frames": Range(1, 10000, "frames"),
    "train.epochs": Range(1, 100000),
    "train.batch_size": Range(1, 65536),
    "train.learning_rate": Range(0, 10, low_open=True, high_open=True),
    "train.weight_decay": Range(0, 1, high_open=True),
    "train.warmup_epochs": Range(0, 100000, high_open=True),
    "train.step_epochs": Range(1, 100000),
    "train.step_gamma": Range(0, 1, low_open=True),
    "train.grad_clip": Range(0, 1e6),
    "train.ema_decay": Range(0, 1, high_open=True),
    "train.seed": Range(0, MAX_SEED),
    "train.val_fraction": Range(0, 0.9, low_open=True, high_open=True),
    "train.num_workers": Range(0, 64),
    "train.devices": Range(1, 1024),
    "train.num_nodes": Range(1, 4096),
    "augment.mixup_alpha": Range(0, 10),
    "augment.roll_frames": Range(0, 10000, "frames"),
    "augment.time_masks": Range(0, 16),
    "augment.time_mask_frames": Range(1, 10000, "frames"),
    "augment.freq_masks": Range(0, 16),
    "augment.freq_mask_rows": Range(1, 512, "rows"),
    "augment.gain_db": Range(0, 40, "dB"),
    "augment.mixstyle_p": Range(0, 1),
    "augment.mixstyle_alpha": Range(0, 10, low_open=True),
}


@dataclass(frozen=True)
class AudioConfig:
    """How a file becomes a waveform.

    sample_rate: rate in Hz every file is resampled to (soxr).
    channels: 1 mixes down to mono; N > 1 keeps N channels (files with another
        channel count are refused).
    clip_seconds: length in seconds every training clip is cropped or padded to.
        ``None`` means "set from the data": the median duration of the training
        files, fixed at training time and stored in the model file.
    min_seconds: files shorter than this are refused as too short.
    max_seconds: files longer than this are refused (split them first).
    pad_mode: "repeat" tiles a short clip, "zeros" pads with silence.
    """

    sample_rate: int = 22050
    channels: int = 1
    clip_seconds: float | None = None
    min_seconds: float = 0.5
    max_seconds: float = 3600.0
    pad_mode: str = "repeat"

    def validate(self) -> None:
        _check_ranges("audio", self)
        _check(self.max_seconds > self.min_seconds, "audio.max_seconds",
               f"{self.max_seconds:g} s must exceed audio.min_seconds ({self.min_seconds:g} s)")
        if self.clip_seconds is not None:
            _check(self.clip_seconds >= self.min_seconds, "audio.clip_seconds",
                   f"{self.clip_seconds:g} s is shorter than audio.min_seconds ({self.min_seconds:g} s)")
        _check(self.pad_mode in PAD_MODES, "audio.pad_mode", f"must be one of {PAD_MODES}")

    @property
    def clip_samples(self) -> int | None:
        """Clip length in samples, or None when not yet fixed."""
        if self.clip_seconds is None:
            return None
        return int(round(self.clip_seconds * self.sample_rate))


@dataclass(frozen=True)
class FeatureConfig:
    """The front end and the patches cut from it.

    kind: "logmel" (n_mels rows) or "mfcc" (n_mfcc rows, times 3 with deltas).
    frame_seconds / hop_seconds: STFT window and hop in seconds (25 ms / 10 ms).
    n_fft: FFT size in samples; None picks the next power of two >= the window.
    n_mels, fmin, fmax: mel filter bank (Slaney scale and norm, as librosa);
        fmax None means sample_rate / 2.
    top_db: floor of the dB scale below each clip's peak (None: no floor).
    n_mfcc: MFCC coefficients (DCT-II, ortho) when kind == "mfcc".
    deltas: append first- and second-order deltas.  None (the default) means
        "as the kind implies": on for MFCC (the paper's 39 features: 13 MFCCs
        + deltas + delta-deltas), off for log-mel.  Set false explicitly for
        13-row MFCCs.
    delta_width: frames in the delta filter (odd, >= 3; librosa's default 9).
    patch_frames / patch_hop_frames: the network sees patches this many frames
        long, cut every patch_hop_frames frames.
    """

    kind: str = "logmel"
    frame_seconds: float = 0.025
    hop_seconds: float = 0.010
    n_fft: int | None = None
    n_mels: int = 40
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float | None = 80.0
    n_mfcc: int = 13
    deltas: bool | None = None
    delta_width: int = 9
    patch_frames: int = 100
    patch_hop_frames: int = 50

    def validate(self, sample_rate: int) -> None:
        _check(self.kind in FEATURE_KINDS, "features.kind", f"must be one of {FEATURE_KINDS}")
        _check_ranges("features", self)
        _check(self.hop_seconds <= self.frame_seconds, "features.hop_seconds", "must be <= features.frame_seconds")
        win = self.win_length(sample_rate)
        if self.n_fft is not None:
            _check(self.n_fft >= win, "features.n_fft",
                   f"must be >= the window ({win} samples at {sample_rate} Hz)")
        fmax = self.fmax if self.fmax is not None else sample_rate / 2
        _check(0 <= self.fmin < fmax <= sample_rate / 2, "features.fmin/fmax",
               f"need 0 <= fmin < fmax <= {sample_rate / 2} Hz")
        _check(self.n_mfcc <= self.n_mels, "features.n_mfcc", "must be at most features.n_mels")
        _check(self.delta_width % 2 == 1, "features.delta_width", "must be odd")
        _check(self.patch_hop_frames <= self.patch_frames, "features.patch_hop_frames",
               "must be at most features.patch_frames (patches must not leave frames out)")

    def win_length(self, sample_rate: int) -> int:
        """Window length in samples at ``sample_rate`` Hz."""
        return max(1, int(round(self.frame_seconds * sample_rate)))

    def hop_length(self, sample_rate: int) -> int:
        """Hop length in samples at ``sample_rate`` Hz."""
        return max(1, int(round(self.hop_seconds * sample_rate)))

    def fft_size(self, sample_rate: int) -> int:
        """FFT size in samples (n_fft, or the next power of two >= the window)."""
        if self.n_fft is not None:
            return self.n_fft
        return 1 << math.ceil(math.log2(self.win_length(sample_rate)))

    @property
    def use_deltas(self) -> bool:
        """Whether deltas are appended: ``deltas``, or for None, True exactly for MFCC."""
        return self.kind == "mfcc" if self.deltas is None else self.deltas

    @property
    def n_rows(self) -> int:
        """Feature rows (frequency axis) the front end emits."""
        base = self.n_mels if self.kind == "logmel" else self.n_mfcc
        return base * (3 if self.use_deltas else 1)


@dataclass(frozen=True)
class ModelConfig:
    """Which registered network, its own parameters, and how a clip's patches vote.

    name: a name from :func:`soundscene.core.models.available_models`.
    params: the network's own parameters (e.g. for ``paper_cnn``: ``widths``
        [32, 64, 128] and ``dropout`` 0.5); missing ones take the network's
        defaults, unknown ones are refused by its builder.
    aggregate: how patch probabilities make the clip's probabilities —
        "mean" (average probability, default), "log_mean" (geometric mean,
        renormalised), "max" (per-class max, renormalised), "vote" (fraction
        of patches whose top class is each class).
    """

    name: str = "paper_cnn"
    params: Mapping[str, Any] = field(default_factory=dict)
    aggregate: str = "mean"

    def __post_init__(self):
        object.__setattr__(self, "params", _freeze(dict(self.params)))

    def validate(self) -> None:
        _check(bool(self.name), "model.name", "must not be empty")
        _check(self.aggregate in AGGREGATIONS, "model.aggregate", f"must be one of {AGGREGATIONS}")
        for key, value in self.params.items():
            _check(isinstance(key, str) and key.isidentifier(), f"model.params.{key}", "must be a name")
            _check(_json_value(value), f"model.params.{key}", "must be a number, string, bool or list of them")


@dataclass(frozen=True)
class TrainConfig:
    """The training loop (defaults from the paper: Adam, lr 0.001, weight decay 0.005, batch 64, 50 epochs).

    epochs, batch_size, learning_rate, weight_decay: as named.
    optimizer: "adam" (the paper), "adamw" (decoupled weight decay) or "sgd" (momentum 0.9, Nesterov).
    schedule: learning rate over the run: "constant" (the paper), "cosine" (to 0 at the last epoch) or
        "step" (times step_gamma every step_epochs epochs); warmup_epochs ramps it up linearly first.
    grad_clip: clip the gradient norm to this (0: off).
    ema_decay: keep an exponential moving average of the weights with this decay per step (0: off).
    selection: which weights become the model file — "best_val" (the epoch with the best clip-level
        validation accuracy, the rule of release 1), "ema" (the averaged weights at the end of the
        schedule), "last" (the last epoch).  Recorded in the run and the model file.
    seed: seeds data splits, initialisation and shuffling.
    val_fraction: share of the training data (grouped, stratified) held out for validation when no
        validation fold is given.
    num_workers: DataLoader worker processes (0 loads in the main process).
    accelerator / precision / devices / num_nodes / strategy: passed to Lightning ("auto", "cpu", "gpu"...;
        "32-true", "bf16-mixed"...; devices per node; nodes; "ddp"...).
    """

    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 0.001
    weight_decay: float = 0.005
    optimizer: str = "adam"
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    step_epochs: int = 30
    step_gamma: float = 0.1
    grad_clip: float = 0.0
    ema_decay: float = 0.0
    selection: str = "best_val"
    seed: int = 0
    val_fraction: float = 0.1
    num_workers: int = 0
    accelerator: str = "auto"
    precision: str = "32-true"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"

    def validate(self) -> None:
        _check_ranges("train", self)
        _check(self.optimizer in OPTIMIZERS, "train.optimizer", f"must be one of {OPTIMIZERS}")
        _check(self.schedule in SCHEDULES, "train.schedule", f"must be one of {SCHEDULES}")
        _check(self.warmup_epochs < self.epochs, "train.warmup_epochs", "must be less than train.epochs")
        _check(self.selection in SELECTIONS, "train.selection", f"must be one of {SELECTIONS}")
        _check(self.selection != "ema" or self.ema_decay > 0, "train.selection",
               "'ema' needs train.ema_decay > 0")
        _check(self.accelerator in ACCELERATORS, "train.accelerator", f"must be one of {ACCELERATORS}")
        _check(self.precision in PRECISIONS, "train.precision", f"must be one of {PRECISIONS}")
        _check(self.strategy in STRATEGIES, "train.strategy", f"must be one of {STRATEGIES}")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentations of training batches (patches cut from the cached features; off by default, as the paper).

    mixup_alpha: mix pairs of patches and their labels with a Beta(alpha, alpha) weight (0: off).
    roll_frames: roll each patch in time by up to this many frames (0: off).
    time_masks / time_mask_frames: SpecAugment time masks per patch, each up to this many frames wide.
    freq_masks / freq_mask_rows: SpecAugment frequency masks per patch, each up to this many rows wide.
    gain_db: add a random gain of up to ± this many dB (a shift of log-mel features; 0: off).
    mixstyle_p / mixstyle_alpha: Freq-MixStyle — with probability p per batch, mix each patch's per-row
        (frequency) mean and std with another patch's by a Beta(alpha, alpha) weight (0: off), for
        robustness to devices and microphones.
    """

    mixup_alpha: float = 0.0
    roll_frames: int = 0
    time_masks: int = 0
    time_mask_frames: int = 10
    freq_masks: int = 0
    freq_mask_rows: int = 4
    gain_db: float = 0.0
    mixstyle_p: float = 0.0
    mixstyle_alpha: float = 0.3

    def validate(self) -> None:
        _check_ranges("augment", self)

    @property
    def any(self) -> bool:
        return bool(self.mixup_alpha or self.roll_frames or self.time_masks or self.freq_masks or self.gain_db
                    or self.mixstyle_p)


@dataclass(frozen=True)
class Config:
    """All settings; see the section classes for each field's meaning and units."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def validate(self) -> "Config":
        """Check every field; raise ConfigError naming the first bad key. Returns self."""
        self.audio.validate()
        self.features.validate(self.audio.sample_rate)
        self.model.validate()
        self.augment.validate()
        self.train.validate()
        if self.audio.clip_samples is not None:
            frames = 1 + self.audio.clip_samples // self.features.hop_length(self.audio.sample_rate)
            _check(frames >= self.features.patch_frames, "features.patch_frames",
                   f"a {self.audio.clip_seconds} s clip has only {frames} frames; "
                   "lower features.patch_frames or raise audio.clip_seconds")
            _check(not self.features.use_deltas or frames >= self.features.delta_width, "features.delta_width",
                   f"a {self.audio.clip_seconds} s clip has only {frames} frames, fewer than the delta filter's")
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (plain dicts and lists), with the format version."""
        sections = {}
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            sections[f.name] = {g.name: _thaw(getattr(section, g.name)) for g in dataclasses.fields(section)}
        return {"format": CONFIG_FORMAT, **sections}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        """Build and validate a Config from a (possibly partial) dict.

        Missing keys take their defaults; unknown keys and wrong types raise
        ConfigError naming the key.  Format-1 dicts are converted (their
        ``model.widths`` and ``model.dropout`` become ``model.params``).
        """
        if not isinstance(data, dict):
            raise ConfigError("configuration must be a JSON object")
        data = dict(data)
        fmt = data.pop("format", CONFIG_FORMAT)
        if fmt not in READABLE_FORMATS:
            raise ConfigError(f"configuration format {fmt} is not supported by this version "
                              f"(reads {list(READABLE_FORMATS)}); upgrade soundscene or re-train")
        if fmt == 1:
            data = _from_format_1(data)
        sections = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - sections
        if unknown:
            raise ConfigError(f"unknown configuration section(s) {sorted(unknown)}; "
                              f"known: {sorted(sections)}")
        kwargs = {}
        for f in dataclasses.fields(cls):
            section_cls = {"audio": AudioConfig, "features": FeatureConfig, "model": ModelConfig,
                           "train": TrainConfig, "augment": AugmentConfig}[f.name]
            kwargs[f.name] = _build_section(section_cls, f.name, data.get(f.name, {}))
        return cls(**kwargs).validate()

    @classmethod
    def preset(cls, name: str) -> "Config":
        """A named starting point: "paper" (the paper's settings, the default), "strong" (best accuracy) or
        "tiny" (within the DCASE low-complexity budget).  See :data:`PRESETS`."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
        return cls.from_dict(PRESETS[name])

    @classmethod
    def from_json(cls, text: str) -> "Config":
        try:
            data = json.loads(text)
        except RecursionError:
            raise ConfigError("configuration is not valid JSON: nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, and integers of thousands of digits
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "integer string conversion" in reason:
                reason = "it holds an integer of thousands of digits, beyond every range"
            raise ConfigError(f"configuration is not valid JSON: {reason}") from None
        try:
            return cls.from_dict(data)
        except (OverflowError, RecursionError, ValueError) as exc:
            raise ConfigError(f"configuration holds a value out of every range ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'too large'})") from None

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        """Read a JSON config file (partial files are fine: defaults fill the rest)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not UTF-8 text") from None
        except ConfigError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Config":
        """Return a validated copy with dotted keys replaced, e.g. ``{"train.epochs": 5}``.

        A network's own parameters are ``model.params.NAME`` (e.g.
        ``{"model.params.widths": [16, 32, 64]}``); ``model.params`` replaces them all.
        """
        data = self.to_dict()
        for dotted, value in overrides.items():
            section, _, key = dotted.partition(".")
            if section not in data or not isinstance(data[section], dict) or not key:
                raise ConfigError(f"unknown setting '{dotted}'; use section.key, e.g. train.epochs")
            if section == "model" and key.startswith("params."):
                data["model"]["params"][key.removeprefix("params.")] = value
                continue
            if key not in data[section]:
                raise ConfigError(f"unknown setting '{dotted}'; known in {section}: "
                                  f"{sorted(data[section])}")
            data[section][key] = value
        return Config.from_dict(data)


# Named starting points (partial configurations over the defaults).  "paper" is the paper's settings as they
# are.  "strong" and "tiny" add what measured better on ESC-10 (benchmarks/RESULTS.md): a receptive-field-
# regularised ResNet / a low-complexity mobile network, augmentation on the batch, AdamW with warm-up and a
# cosine schedule run to its end, and the weights' moving average as the model (not the noisy best epoch).
_MODERN_TRAIN = {"optimizer": "adamw", "schedule": "cosine", "warmup_epochs": 3.0, "grad_clip": 5.0,
                 "ema_decay": 0.998, "selection": "ema", "weight_decay": 0.01}
_AUGMENT = {"mixup_alpha": 0.3, "roll_frames": 30, "time_masks": 2, "time_mask_frames": 12, "freq_masks": 2,
            "freq_mask_rows": 6, "gain_db": 6.0, "mixstyle_p": 0.5, "mixstyle_alpha": 0.3}
PRESETS: dict[str, dict] = {
    "paper": {},
    "strong": {"model": {"name": "rf_resnet"}, "train": {**_MODERN_TRAIN, "learning_rate": 0.002},
               "augment": _AUGMENT},
    "tiny": {"model": {"name": "mobile"}, "train": {**_MODERN_TRAIN, "learning_rate": 0.004},
             "augment": _AUGMENT},
}


def _from_format_1(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 kept the paper CNN's sizes as model.widths / model.dropout; format 2 keeps them in model.params."""
    model = data.get("model")
    if isinstance(model, dict):
        model = dict(model)
        params = {k: model.pop(k) for k in ("widths", "dropout") if k in model}
        if params:
            model["params"] = params
        data["model"] = model
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a ``section.key=value`` string; the value is read as JSON when it parses, else as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"setting '{text}' is not of the form section.key=value")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


class FrozenDict(dict):
    """A dict that refuses changes (and still pickles, for worker processes)."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("configuration values cannot be changed in place; use Config.with_overrides")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __reduce__(self):
        return (FrozenDict, (dict(self),))


def _freeze(value: Any) -> Any:
    """Lists become tuples and dicts read-only mappings, so a frozen Config cannot be changed in place."""
    if isinstance(value, dict):
        return FrozenDict({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """The inverse of :func:`_freeze`: plain dicts and lists, ready for JSON."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


def _json_value(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_json_value(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (bool, int, str))


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"invalid {key}: {message}")


def _check_ranges(section: str, values: Any) -> None:
    """Refuse, naming the key and its range, the first number of a section outside :data:`RANGES`."""
    for f in dataclasses.fields(values):
        key = f"{section}.{f.name}"
        value = getattr(values, f.name)
        if key in RANGES and value is not None:
            problem = RANGES[key].refusal(value)
            if problem:
                raise ConfigError(f"invalid {key}: {problem}")


def _number(value: Any) -> str:
    """A number as messages show it: ints in full (up to 16 digits), floats with %g."""
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) < 10**16:
            return str(value)
        digits = int((abs(value).bit_length() - 1) * math.log10(2)) + 1
        digits += abs(value) >= 10**digits
        return f"a{' negative' if value < 0 else 'n'} integer of {digits} digits"
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _build_section(section_cls: type, name: str, values: Any) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"configuration section '{name}' must be an object")
    hints = typing.get_type_hints(section_cls)
    known = {f.name for f in dataclasses.fields(section_cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(f'{name}.{k}' for k in unknown)}; "
                          f"known in {name}: {sorted(known)}")
    kwargs = {}
    for key, value in values.items():
        kwargs[key] = _coerce(value, hints[key], f"{name}.{key}")
    return section_cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a simple type hint; ints are accepted where floats are."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"invalid {key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], key) for v in value]
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"invalid {key}: expected an object, got {value!r}")
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"invalid {key}: expected a number, got {value!r}")
        if isinstance(value, int) and abs(value) > 2**53:
            return value  # beyond every range (and float()'s reach, for the longest): the range check names it
        if not math.isfinite(value):
            problem = RANGES[key].refusal(value) if key in RANGES else f"{value} is not a finite number"
            raise ConfigError(f"invalid {key}: {problem}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"invalid {key}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"invalid {key}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"invalid {key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"invalid {key}: unsupported type")  # pragma: no cover - programming error
