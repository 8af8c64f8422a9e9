"""Inference: a model file in, scene labels, probabilities and timelines out.

:class:`SceneClassifier` is the one inference API every application uses
(``predict``, ``listen``, the HTTP service, the MQTT sensor, the equalizer,
the ONNX exporter's verification)::

    clf = SceneClassifier.from_file("run/model.safetensors")      # or the run folder
    result = clf.classify_file("street.wav")                        # Prediction, with a timeline
    result.label, result.confidence, result.to_record()             # the record schema (core.records)
    clf.classify_waveform(samples, sample_rate=48000)               # a recording held in memory
    clf.classify_clips([clip, ...])                                 # (n, n_classes): each clip one window
    stream = clf.stream(input_rate=48000, channels=2)               # StreamClassifier
    for decision in stream.push(block): ...

The work is done by parts of the core a reader can take one at a time: the
decoder (:mod:`.audio`), the window scorer (:mod:`.scorer`), the timeline of a
recording (:mod:`.timeline`: windowing rule, bounded memory, segments) and the
stream classifier (:mod:`.stream`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .._version import __version__
from ..config import CALIBRATION_DB, MAX_OVERLAP, MAX_WINDOW_SECONDS, MIN_HOP_SECONDS, SILENCE_DBFS, Range
from ..errors import AudioError, ConfigError, ModelFileError
from .audio import (BLOCK_SECONDS, LOW_LEVEL_DBFS, Input, as_channels_first, audio_info, check_length,
                    check_sample_rate, check_samples, read_blocks)
from .levels import LevelMeter
from .onnxmodel import OnnxModel, OnnxScorer, is_onnx_path, load_onnx_model
from .records import Decision, Prediction, Segment, Window  # noqa: F401 (the results' types, importable here)
from .stream import StreamClassifier
from .timeline import TimelineBuilder, span_bounds

SPAN_PREROLL_SECONDS = 0.25  # decoded before a span's first window, so the resampler has settled there
SPAN_LEVELS_PREROLL_SECONDS = 2.0  # with levels: the weighting filters and the F detector settled too (16 tau)

__all__ = ["SceneClassifier", "StreamClassifier", "Prediction", "Decision", "Window", "Segment"]


class SceneClassifier:
    """A loaded model: its scorer (front end and network) and windowing, from the model file's configuration.

    window_seconds: the analysis window, from the model's ``audio.min_seconds`` to MAX_WINDOW_SECONDS (10 min;
        default: the training clip length); hop_seconds: from 1/MAX_OVERLAP of the window (and at least
        MIN_HOP_SECONDS, 10 ms: no moment is scored more than 20 times) to the window (default:
        half the window).  Either out of its range, ``inf`` or ``nan`` raises ConfigError naming ``--window`` or
        ``--hop`` and the range.  Recordings (files and waveforms) shorter than ``audio.min_seconds`` are
        refused with AudioError.
    """

    def __init__(self, bundle, *, device: str = "cpu", window_seconds: float | None = None,
                 hop_seconds: float | None = None, silence_dbfs: float | None = None,
                 calibration_db: float | None = None, levels: bool = True):
        self.config = bundle.config
        self.classes = list(bundle.classes)
        self.metadata = bundle.metadata
        self.path = bundle.path
        self.scorer = _scorer(bundle, device)
        (self.window_seconds, self.hop_seconds, self.silence_dbfs,  # silence: windows below it are not classified
         self.calibration_db) = _settings(self.config, window_seconds, hop_seconds, silence_dbfs, calibration_db)
        self.measure_levels = bool(levels)  # LAeq, percentiles and bands on every window and recording
        self._bundle, self._sha256 = bundle, None

    def level_meter(self, input_rate: int, *, keep_seconds: float | None = None,
                    origin: int = 0) -> LevelMeter | None:
        """A :class:`~soundscene.core.levels.LevelMeter` for audio at ``input_rate`` with this classifier's
        calibration (None when levels are off); it remembers a window and a few hops of the past.  origin: the
        input frame of the first sample it will be given (a span of a recording)."""
        if not self.measure_levels:
            return None
        # a window is measured when it is cut, after the whole decoded block that completes it was pushed
        keep = (self.window_seconds + 4 * self.hop_seconds + BLOCK_SECONDS + 2.0 if keep_seconds is None
                else keep_seconds)
        return LevelMeter(input_rate, calibration_db=self.calibration_db, keep_seconds=keep, origin=origin)

    @classmethod
    def from_file(cls, path: str | Path, *, device: str = "cpu", window_seconds: float | None = None,
                  hop_seconds: float | None = None, silence_dbfs: float | None = None,
                  calibration_db: float | None = None, levels: bool = True) -> "SceneClassifier":
        """Load a model file or a run folder (see :mod:`soundscene.core.modelfile`: needs torch), or an exported
        ``.onnx`` model (see :mod:`soundscene.core.onnxmodel`: ONNX Runtime only, on the CPU).  calibration_db:
        the dB SPL of a full-scale RMS at the microphone (None: levels in dBFS); levels=False skips the level
        meter."""
        return cls(_load(path), device=device, window_seconds=window_seconds, hop_seconds=hop_seconds,
                   silence_dbfs=silence_dbfs, calibration_db=calibration_db, levels=levels)

    @property
    def sha256(self) -> str | None:
        """The SHA-256 of the model file's bytes (what ``sha256sum`` prints; None for a model held in memory)."""
        if isinstance(self._bundle, OnnxModel):
            return self._bundle.sha256
        if self._sha256 is None and self.path is not None:
            import hashlib

            self._sha256 = hashlib.sha256(Path(self.path).read_bytes()).hexdigest()
        return self._sha256

    @property
    def exported(self) -> bool:
        """True for an exported (ONNX) model."""
        return isinstance(self._bundle, OnnxModel)

    @property
    def sample_rate(self) -> int:
        """The rate in Hz the model works at."""
        return self.config.audio.sample_rate

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return max(1, int(round(self.hop_seconds * self.sample_rate)))

    def describe(self) -> dict:
        """Classes, rates, windowing and configuration: what a client needs to know about the model."""
        return {"classes": list(self.classes), "sample_rate": self.sample_rate,
                "channels": self.config.audio.channels, "window_seconds": self.window_seconds,
                "hop_seconds": self.hop_seconds, "config": self.config.to_dict(),
                "model": {"name": self.config.model.name, "path": self.path.name if self.path else None,
                          "trained_with": self.metadata.get("soundscene_version"),
                          "soundscene_version": __version__}}

    # -- clips already at the model's rate, each one window ----------------------------------------

    def classify_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, n_classes)`` of clips already at :attr:`sample_rate`, each scored as one window
        (``(samples,)`` or ``(channels, samples)`` float32; shorter clips are padded as in training, longer
        ones are scored whole).  Batching does not change results."""
        return self.scorer.score_clips(clips)

    # -- recordings of any length ------------------------------------------------------------------

    def predict_waveform(self, waveform: np.ndarray, *, sample_rate: int) -> np.ndarray:
        """Probabilities ``(n_classes,)`` of one recording at ``sample_rate`` Hz (windowed as a file is); None
        when every window is silent (below :attr:`silence_dbfs`)."""
        return self.classify_waveform(waveform, sample_rate=sample_rate).probabilities

    def classify_waveform(self, waveform: np.ndarray, *, sample_rate: int, name: str = "<waveform>",
                          overview: bool = False) -> Prediction:
        """Classify ``(samples,)`` or ``(channels, samples)`` audio at ``sample_rate`` Hz; AudioError if unusable
        (as a file would be: shorter than the model's ``audio.min_seconds`` included)."""
        w = as_channels_first(waveform)
        check_samples(w, name)
        check_sample_rate(sample_rate, f"{name}: sample rate")
        self._check_duration(name, w.shape[-1], sample_rate)
        return self._timeline(name, [w], sample_rate, w.shape[0], w.shape[-1], overview)

    def classify_file(self, path: str | Path, *, name: str | None = None, overview: bool = False) -> Prediction:
        """Classify one file of any length, read in blocks; raises AudioError (one line) if it cannot be used.

        name: what the result's ``path`` and error messages call the file (default: the path), e.g. an
        upload's display name instead of its temporary path."""
        path = Path(path)
        shown = str(path) if name is None else name
        try:
            info = audio_info(path)
            check_length(info, min_seconds=self.config.audio.min_seconds)
            return self._timeline(shown, read_blocks(info), info.sample_rate, info.channels, info.frames,
                                  overview)
        except AudioError as exc:
            if name is None:
                raise
            raise AudioError(str(exc).replace(str(path), name)) from None

    def classify_files(self, paths: Iterable[str | Path], *, overview: bool = False,
                       progress: bool = False) -> list[Prediction]:
        """Classify many files one after another (memory as for one); a file that cannot be used gets a
        Prediction whose ``error`` says why, and the others are kept."""
        return [p for _, p in self.classify_inputs([Input(str(path), Path(path)) for path in paths],
                                                   overview=overview, progress=progress)]

    def classify_inputs(self, inputs: Sequence[Input], *, overview: bool = False,
                        progress: bool = False) -> Iterator[tuple[Input, Prediction]]:
        """Each input (see :func:`soundscene.core.audio.expand_inputs`) with its Prediction, in order, as each is
        done; an input with a problem, or a file that cannot be used, gets a Prediction whose ``error`` says why."""
        from tqdm.auto import tqdm

        for item in tqdm(inputs, desc="predicting", unit="file", disable=not progress):
            if item.problem is not None:
                yield item, Prediction(item.name, self.classes, None, error=item.problem)
                continue
            try:
                yield item, self.classify_file(item.path, overview=overview)
            except (AudioError, ModelFileError) as exc:
                yield item, Prediction(item.name, self.classes, None, error=str(exc))

    def _check_duration(self, name: str, frames: int, rate: int) -> None:
        """AudioError (one line) for a recording shorter than the model's ``audio.min_seconds``."""
        minimum = self.config.audio.min_seconds
        if frames < minimum * rate:
            raise AudioError(f"{name}: {_seconds_below(frames / rate, minimum)} s ({frames} samples at {rate} Hz) "
                             f"is shorter than the model's minimum of {minimum:g} s (audio.min_seconds)")

    def _timeline(self, name: str, blocks: Iterable[np.ndarray], rate: int, channels_in: int, frames: int,
                  overview: bool) -> Prediction:
        channels = self.config.audio.channels
        if channels > 1 and channels_in != channels:
            raise AudioError(f"{name}: has {channels_in} channels but the model expects {channels}")
        builder = TimelineBuilder(self.scorer, self.classes, window=self.window_samples, hop=self.hop_samples,
                                  input_rate=rate, name=name, overview=overview and not self.exported,
                                  silence_dbfs=self.silence_dbfs,
                                  meter=self.level_meter(rate))
        for block in blocks:
            builder.push(block)
        return builder.finish(frames / rate)

    def classify_span(self, path: str | Path, *, first: int, stop: int | None, name: str | None = None) -> "Span":
        """The windows of one span of a file: those starting at samples ``first`` (a multiple of the hop, at
        the model's rate) up to ``stop`` (exclusive; None: to the end, the end-aligned window included).

        The span is decoded from a little before ``first`` (:data:`SPAN_PREROLL_SECONDS`, on the resampler's
        grid: :func:`~soundscene.core.timeline.span_bounds`) to its last window's end, through the same
        timeline as :meth:`classify_file`, so the windows of consecutive spans together are the file's (to
        float rounding, < 1e-6).  With levels, decoding starts at least :data:`SPAN_LEVELS_PREROLL_SECONDS`
        before (the weighting filters and the F detector settle) and the meter keeps the recording's tick
        grid (its ``origin``), so the windows' levels are the file's too.  The span also measures its own part
        of the input (frames ``first`` to ``stop`` at the input's rate) for the file's level.  AudioError (one
        line) if it cannot be read."""
        path = Path(path)
        shown = str(path) if name is None else name
        info = audio_info(path)
        check_length(info, min_seconds=self.config.audio.min_seconds)
        rate, input_rate = self.sample_rate, info.sample_rate
        preroll = SPAN_LEVELS_PREROLL_SECONDS if self.measure_levels else SPAN_PREROLL_SECONDS
        origin, frame = span_bounds(first, input_rate=input_rate, rate=rate, preroll=int(preroll * rate))
        meter = self.level_meter(input_rate, origin=frame)  # on the recording's tick grid from there
        span = Span(own_from=first * input_rate // rate,
                    own_to=info.frames if stop is None else min(info.frames, stop * input_rate // rate))
        channels = self.config.audio.channels
        if channels > 1 and info.channels != channels:
            raise AudioError(f"{shown}: has {info.channels} channels but the model expects {channels}")
        builder = TimelineBuilder(self.scorer, self.classes, window=self.window_samples, hop=self.hop_samples,
                                  input_rate=input_rate, name=shown, silence_dbfs=self.silence_dbfs,
                                  origin=origin, first=first, stop=stop, meter=meter)
        at = frame
        for block in read_blocks(info, start=frame):
            span.measure(block, at)
            at += block.shape[-1]
            builder.push(block)
            if builder.span_done:
                break
        span.windows = builder.finish_span(info.frames / input_rate if stop is None else None)
        return span

    def stream(self, *, input_rate: int | None = None, channels: int = 1, smoothing: float = 0.5,
               min_dwell_seconds: float | None = None) -> StreamClassifier:
        """A :class:`StreamClassifier` over this model."""
        return StreamClassifier(self, input_rate=input_rate or self.sample_rate, channels=channels,
                                smoothing=smoothing, min_dwell_seconds=min_dwell_seconds,
                                silence_dbfs=self.silence_dbfs)


@dataclass
class Span:
    """What :meth:`SceneClassifier.classify_span` returns: the span's windows, and the energy, sample count and
    peak of its own input frames ``own_from`` .. ``own_to`` (the spans of a file share these out without
    overlap, so their sums are the file's, for its level)."""

    own_from: int
    own_to: int
    windows: list[Window] = field(default_factory=list)
    energy: float = 0.0
    count: int = 0
    peak: float = 0.0

    def measure(self, block: np.ndarray, at: int) -> None:
        """Add the part of ``block`` (input frames from ``at``) that is this span's own."""
        part = block[:, max(0, self.own_from - at):max(0, self.own_to - at)]
        self.energy += float(np.square(part, dtype=np.float64).sum())
        self.count += part.size
        self.peak = max(self.peak, float(np.abs(part).max(initial=0.0)))


def _load(path: str | Path):
    """An exported model for a ``.onnx`` path, else a model file or run folder (torch, imported only then)."""
    if is_onnx_path(path):
        return load_onnx_model(path)
    try:
        from .modelfile import load_model_file
    except ImportError as exc:
        raise ModelFileError(f"{path}: a model file needs torch ({exc.name} is missing): pip install "
                             "'soundscene[train]', or export it (`soundscene export`) and use the .onnx file") from None
    return load_model_file(path)


def _scorer(bundle, device: str):
    """The window scorer of a loaded model: ONNX Runtime for an export, else torch on ``device``."""
    if isinstance(bundle, OnnxModel):
        return OnnxScorer(bundle)
    from .scorer import WindowScorer

    return WindowScorer(bundle.net, bundle.config, n_classes=len(bundle.classes), device=device)


def _settings(config, window_seconds, hop_seconds, silence_dbfs, calibration_db) -> tuple:
    """(window, hop, silence threshold, calibration) checked against their ranges; ConfigError names the option."""
    window = float(window_seconds) if window_seconds is not None else float(config.audio.clip_seconds)
    hop = float(hop_seconds) if hop_seconds is not None else window / 2
    problem = Range(config.audio.min_seconds, MAX_WINDOW_SECONDS, "s").refusal(window)
    if problem:
        raise ConfigError(f"--window {problem} (from the model's audio.min_seconds to "
                          f"{MAX_WINDOW_SECONDS / 60:g} minutes)")
    problem = Range(max(MIN_HOP_SECONDS, window / MAX_OVERLAP), window, "s").refusal(hop)
    if problem:
        raise ConfigError(f"--hop {problem} (from 1/{MAX_OVERLAP} of the window, at least "
                          f"{MIN_HOP_SECONDS * 1000:g} ms, to the window)")
    silence = LOW_LEVEL_DBFS if silence_dbfs is None else silence_dbfs
    problem = SILENCE_DBFS.refusal(silence)
    if problem:
        raise ConfigError(f"--silence-dbfs {problem}")
    problem = None if calibration_db is None else CALIBRATION_DB.refusal(calibration_db)
    if problem:
        raise ConfigError(f"--calibration-db {problem} (the dB SPL of a full-scale RMS at the microphone)")
    return window, hop, float(silence), None if calibration_db is None else float(calibration_db)


def _seconds_below(seconds: float, limit: float) -> str:
    """``seconds`` with just enough digits to read as less than ``limit`` (0.499, not 0.50, below 0.5)."""
    for digits in range(2, 12):
        text = f"{seconds:.{digits}g}"
        if float(text) < limit:
            return text
    return repr(seconds)
