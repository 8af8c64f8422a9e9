"""Inference: a model file in, scene labels, probabilities and timelines out.

:class:`SceneClassifier` is the one inference API every application uses
(``predict``, ``listen``, the HTTP service, the MQTT sensor, the equalizer)::

    clf = SceneClassifier.from_file("run/model.safetensors")    # or the run folder
    result = clf.classify_file("street.wav")                      # Prediction, with a timeline
    result.label, result.confidence, result.to_record()
    clf.predict_waveform(samples, sample_rate=48000)              # probabilities (n_classes,)
    stream = clf.stream(input_rate=48000, channels=2)             # StreamClassifier
    for decision in stream.push(block): ...

**One rule for any length.**  A recording is classified window by window:
windows of ``window_seconds`` (default: the training clip length) every
``hop_seconds`` (default: half of it).  Each window is featurised on its own,
so its dB floor is taken over the window exactly as it was over each training
clip, then cut into patches whose probabilities are combined by
``model.aggregate``.  A recording no longer than one window is one window,
padded as training clips were.  When the hops do not reach the end, one more
window is aligned with the end, so every sample is seen.  The file's
probabilities are the mean of its windows' probabilities; its label is their
arg-max.  ``segments`` merge consecutive windows with the same top class into
runs that cover the file without gaps (a boundary between two windows lies
halfway between their centres).

**Bounded memory.**  Files are decoded, mixed down and resampled (soxr's
streaming resampler, whose output equals the one-shot resampler's exactly) in
blocks, and windows are classified as they fill, so memory does not grow with
the recording's length.

**Streaming.**  :class:`StreamClassifier` takes blocks of any size, keeps a
ring buffer of one window, emits a :class:`Decision` every hop, smooths the
probabilities with an exponential moving average and changes the reported
scene only after the new scene has led for ``min_dwell_seconds`` (hysteresis).
The raw window probabilities of a stream equal those of the same audio
classified as a file, whatever the block sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import soundfile as sf
import soxr
import torch

from .._version import __version__
from .audio import (AUDIO_EXTENSIONS, LOW_LEVEL_DBFS, audio_info, check_length, check_samples, fix_length,
                    level_dbfs, quiet_decoder)
from ..errors import AudioError, ModelFileError, SoundsceneError
from .features import FrontEnd
from .modelfile import load_model_file
from .models import predict_clips

BLOCK_SECONDS = 10.0  # decoding block
WINDOW_BATCH = 4  # windows per network call (peak memory ~300 MB over the imports for 10-s windows)


@dataclass
class Window:
    """One analysis window: start and end in seconds, class probabilities ``(n_classes,)``."""

    start: float
    end: float
    probabilities: np.ndarray


@dataclass
class Segment:
    """A run of consecutive windows with the same top class, from start to end seconds."""

    start: float
    end: float
    label: str
    confidence: float


@dataclass
class Prediction:
    """A recording's result: probabilities (mean over windows), its windows and level, or the error."""

    path: str
    classes: list[str]
    probabilities: np.ndarray | None
    windows: list[Window] = field(default_factory=list)
    duration_seconds: float = 0.0
    level_dbfs: float | None = None
    error: str | None = None
    overview: np.ndarray | None = None  # (rows, columns) coarse spectrogram for plots, when asked for

    @property
    def label(self) -> str | None:
        return None if self.probabilities is None else self.classes[int(np.argmax(self.probabilities))]

    @property
    def confidence(self) -> float | None:
        return None if self.probabilities is None else float(np.max(self.probabilities))

    @property
    def warning(self) -> str | None:
        """Why the prediction may be unreliable (near-silent input), or None."""
        if self.level_dbfs is not None and self.level_dbfs < LOW_LEVEL_DBFS:
            return (f"near-silent: level {self.level_dbfs:.1f} dBFS is below {LOW_LEVEL_DBFS:g} dBFS; "
                    "the prediction is unreliable")
        return None

    def segments(self) -> list[Segment]:
        """Merged runs of windows by top class, covering 0..duration without gaps."""
        if not self.windows:
            return []
        bounds = [0.0]
        for a, b in zip(self.windows, self.windows[1:]):
            bounds.append(((a.start + a.end) / 2 + (b.start + b.end) / 2) / 2)
        bounds.append(self.duration_seconds)
        out: list[Segment] = []
        runs: list[list[int]] = []
        tops = [int(np.argmax(w.probabilities)) for w in self.windows]
        for k, top in enumerate(tops):
            if runs and tops[runs[-1][0]] == top:
                runs[-1].append(k)
            else:
                runs.append([k])
        for run in runs:
            top = tops[run[0]]
            conf = float(np.mean([self.windows[k].probabilities[top] for k in run]))
            out.append(Segment(bounds[run[0]], bounds[run[-1] + 1], self.classes[top], conf))
        return out

    def to_record(self) -> dict:
        """A JSON-safe dict (no NaN): what ``predict --format json`` prints and the HTTP service returns."""
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        probs = _named(self.classes, self.probabilities)
        return {
            "path": self.path, "label": self.label, "confidence": round(self.confidence, 6), "probabilities": probs,
            "level_dbfs": _finite_db(self.level_dbfs), "duration_seconds": round(self.duration_seconds, 4),
            "warning": self.warning,
            "windows": [{"start": round(w.start, 4), "end": round(w.end, 4),
                         "probabilities": _named(self.classes, w.probabilities)} for w in self.windows],
            "segments": [{"start": round(s.start, 4), "end": round(s.end, 4), "label": s.label,
                          "confidence": round(s.confidence, 6)} for s in self.segments()],
        }


def _named(classes: Sequence[str], probs: np.ndarray) -> dict[str, float]:
    return {c: round(float(p), 6) for c, p in zip(classes, probs)}


def _finite_db(value: float | None) -> float | None:
    if value is None:
        return None
    return round(max(value, -200.0), 2)  # digital silence is refused earlier; clamp for JSON anyway


@dataclass
class Decision:
    """One streaming decision, made at ``time`` seconds (the end of its window).

    probabilities: this window's own; smoothed: after the moving average; label /
    confidence: the reported scene (changes only with hysteresis); changed: the
    reported scene changed at this decision (the first decision counts as a change).
    """

    time: float
    label: str
    confidence: float
    probabilities: np.ndarray
    smoothed: np.ndarray
    changed: bool
    previous: str | None
    level_dbfs: float

    def to_record(self, classes: Sequence[str]) -> dict:
        return {"time": round(self.time, 4), "label": self.label, "confidence": round(self.confidence, 6),
                "probabilities": _named(classes, self.smoothed), "changed": self.changed,
                "previous": self.previous, "level_dbfs": _finite_db(self.level_dbfs)}


class SceneClassifier:
    """A loaded model: the front end and network built from the model file's configuration."""

    def __init__(self, bundle, *, device: str | torch.device = "cpu", window_seconds: float | None = None,
                 hop_seconds: float | None = None):
        self.config = bundle.config
        self.classes = list(bundle.classes)
        self.metadata = bundle.metadata
        self.path = bundle.path
        self.device = torch.device(device)
        self.net = bundle.net.to(self.device).eval()
        self.front_end = FrontEnd.from_config(self.config).to(self.device)
        clip = float(self.config.audio.clip_seconds)
        self.window_seconds = float(window_seconds) if window_seconds is not None else clip
        self.hop_seconds = float(hop_seconds) if hop_seconds is not None else self.window_seconds / 2
        min_window = self.config.audio.min_seconds
        if not math.isfinite(self.window_seconds) or self.window_seconds < min_window:
            raise SoundsceneError(f"window of {self.window_seconds:g} s is shorter than the model's minimum "
                                  f"({min_window:g} s)")
        if not (math.isfinite(self.hop_seconds) and 0 < self.hop_seconds <= self.window_seconds):
            raise SoundsceneError(f"hop must be > 0 and at most the window ({self.window_seconds:g} s), "
                                  f"got {self.hop_seconds:g} s")

    @classmethod
    def from_file(cls, path: str | Path, *, device: str | torch.device = "cpu", window_seconds: float | None = None,
                  hop_seconds: float | None = None) -> "SceneClassifier":
        """Load a model file or a run folder (see :mod:`soundscene.modelfile`)."""
        return cls(load_model_file(path), device=device, window_seconds=window_seconds, hop_seconds=hop_seconds)

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

    # -- clips already at the model's rate ---------------------------------------------------------

    def predict_waveforms(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, n_classes)`` of clips already at :attr:`sample_rate`, each one window
        (``(samples,)`` or ``(channels, samples)`` float32; shorter clips are padded as in training).
        Clips of equal length are batched together; batching does not change results."""
        prepared = [self._prepare(w) for w in waveforms]
        out = np.zeros((len(prepared), len(self.classes)), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for k, w in enumerate(prepared):
            by_length.setdefault(w.shape[-1], []).append(k)
        for indices in by_length.values():
            out[indices] = self._window_probabilities(np.stack([prepared[k] for k in indices]))
        return out

    def _window_probabilities(self, batch: np.ndarray, overview: list | None = None) -> np.ndarray:
        """``(n, channels, samples)`` windows -> ``(n, n_classes)``; AudioError if not finite."""
        feats = self.front_end(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device))
        if not torch.isfinite(feats).all():
            raise AudioError("features are not finite (samples too large?)")
        probs = predict_clips(self.net, feats, features_config=self.config.features,
                              aggregate=self.config.model.aggregate).numpy()
        if not np.isfinite(probs).all():
            raise ModelFileError("the model gives non-finite probabilities on finite features; its weights are "
                                 "damaged")
        if overview is not None:
            f = feats.mean(dim=1).cpu().numpy()  # (n, rows, frames), channels averaged
            cols = max(1, min(f.shape[-1], 24))
            edges = np.linspace(0, f.shape[-1], cols + 1).astype(int)
            overview.extend(np.stack([f[..., a:b].mean(-1) for a, b in zip(edges[:-1], edges[1:])], -1))
        return probs

    # -- any length --------------------------------------------------------------------------------

    def predict_waveform(self, waveform: np.ndarray, *, sample_rate: int) -> np.ndarray:
        """Probabilities ``(n_classes,)`` of one recording at ``sample_rate`` Hz (windowed as a file is)."""
        return self.classify_waveform(waveform, sample_rate=sample_rate).probabilities

    def classify_waveform(self, waveform: np.ndarray, *, sample_rate: int, name: str = "<waveform>",
                          overview: bool = False) -> Prediction:
        """Classify ``(samples,)`` or ``(channels, samples)`` audio at ``sample_rate`` Hz; AudioError if unusable."""
        w = _shape(waveform)
        check_samples(w, name)
        if not 1000 <= sample_rate <= 768000:
            raise AudioError(f"{name}: sample rate {sample_rate} Hz is outside 1000..768000 Hz")
        return self._classify_blocks(name, iter([w]), sample_rate, w.shape[0], w.shape[-1], overview)

    def classify_file(self, path: str | Path, *, overview: bool = False) -> Prediction:
        """Classify one file of any length, read in blocks; raises AudioError (one line) if it cannot be used."""
        path = Path(path)
        info = audio_info(path)
        check_length(info, min_seconds=self.config.audio.min_seconds)
        return self._classify_blocks(str(path), _file_blocks(info), info.sample_rate, info.channels, info.frames,
                                     overview)

    def classify_files(self, paths: Iterable[str | Path], *, overview: bool = False,
                       progress: bool = False) -> list[Prediction]:
        """Classify many files one after another (memory as for one); a file that cannot be used gets a
        Prediction whose ``error`` says why, and the others are kept."""
        from tqdm.auto import tqdm

        out = []
        for path in tqdm(list(paths), desc="predicting", unit="file", disable=not progress):
            try:
                out.append(self.classify_file(path, overview=overview))
            except (AudioError, ModelFileError) as exc:
                out.append(Prediction(str(path), self.classes, None, error=str(exc)))
        return out

    # legacy names kept for the API of release 1
    def predict_file(self, path: str | Path) -> Prediction:
        """Same as :meth:`classify_file`."""
        return self.classify_file(path)

    def _classify_blocks(self, name: str, blocks: Iterator[np.ndarray], rate: int, channels_in: int,
                         frames: int, overview: bool) -> Prediction:
        channels = self.config.audio.channels
        if channels > 1 and channels_in != channels:
            raise AudioError(f"{name}: has {channels_in} channels but the model expects {channels}")
        duration = frames / rate
        window, hop = self.window_samples, self.hop_samples
        framer = _Framer(window, hop, channels)
        windows: list[Window] = []
        pending: list[tuple[int, np.ndarray]] = []
        coarse: list | None = [] if overview else None
        energy, count, peak = 0.0, 0, 0.0
        tail = np.zeros((channels, 0), np.float32)

        def flush():
            if pending:
                probs = self._window_probabilities(np.stack([w for _, w in pending]), coarse)
                for (start, _), p in zip(pending, probs):
                    windows.append(Window(start / self.sample_rate, (start + window) / self.sample_rate, p))
                pending.clear()

        for block in _resampled(blocks, rate, self.sample_rate, channels_in, name):
            energy += float(np.square(block[1], dtype=np.float64).sum())
            count += block[1].size
            peak = max(peak, float(np.abs(block[1]).max(initial=0.0)))
            mixed = self._mix(block[0])
            tail = np.concatenate([tail, mixed[:, -window:]], axis=1)[:, -window:]
            for start, w in framer.push(mixed):
                pending.append((start, w))
                if len(pending) >= WINDOW_BATCH:
                    flush()
        if peak == 0.0:
            raise AudioError(f"{name}: is digital silence (every sample is 0)")
        seen = framer.consumed
        if framer.emitted == 0:  # shorter than one window: one window, padded as training clips are
            pending.append((0, fix_length(tail, length=window, pad_mode=self.config.audio.pad_mode)))
        elif framer.last_start + window < seen:  # the hops stop short of the end: one more window, end-aligned
            pending.append((seen - window, tail))
        flush()
        windows[-1].end = min(windows[-1].end, duration)  # a short recording's padded window ends with it
        probs = np.mean([w.probabilities for w in windows], axis=0)
        level = 10 * math.log10(energy / count) if energy > 0 else float("-inf")
        return Prediction(name, self.classes, probs, windows, duration, level,
                          overview=_stitch(coarse, windows, duration, self.window_seconds) if coarse else None)

    def _mix(self, block: np.ndarray) -> np.ndarray:
        if self.config.audio.channels == 1 and block.shape[0] > 1:
            return block.mean(axis=0, keepdims=True)
        return block

    def stream(self, *, input_rate: int | None = None, channels: int = 1, smoothing: float = 0.5,
               min_dwell_seconds: float | None = None) -> "StreamClassifier":
        """A :class:`StreamClassifier` over this model."""
        return StreamClassifier(self, input_rate=input_rate or self.sample_rate, channels=channels,
                                smoothing=smoothing, min_dwell_seconds=min_dwell_seconds)

    @staticmethod
    def _prepare_shape(waveform: np.ndarray) -> np.ndarray:
        return _shape(waveform)

    def _prepare(self, waveform: np.ndarray) -> np.ndarray:
        w = self._mix(_shape(waveform))
        channels = self.config.audio.channels
        if w.shape[0] != channels:
            raise AudioError(f"waveform has {w.shape[0]} channels; the model expects {channels}")
        if w.shape[-1] < self.config.audio.clip_samples:
            w = fix_length(w, length=self.config.audio.clip_samples, pad_mode=self.config.audio.pad_mode)
        return np.ascontiguousarray(w)


class StreamClassifier:
    """Scene decisions from audio blocks of any size (see the module docstring).

    input_rate / channels: what the blocks are (resampled and mixed as files are).
    smoothing: weight of the newest window in the moving average (1 = no smoothing).
    min_dwell_seconds: how long a new scene must lead the smoothed probabilities before it is
    reported (default: one window).
    """

    def __init__(self, classifier: SceneClassifier, *, input_rate: int, channels: int = 1,
                 smoothing: float = 0.5, min_dwell_seconds: float | None = None):
        if not 0 < smoothing <= 1:
            raise SoundsceneError(f"smoothing must be in (0, 1], got {smoothing}")
        if not 1000 <= input_rate <= 768000:
            raise SoundsceneError(f"input rate {input_rate} Hz is outside 1000..768000 Hz")
        model_channels = classifier.config.audio.channels
        if model_channels > 1 and channels != model_channels:
            raise SoundsceneError(f"the model expects {model_channels} channels, the stream has {channels}")
        self.classifier = classifier
        self.input_rate, self.channels, self.smoothing = int(input_rate), int(channels), float(smoothing)
        self.min_dwell_seconds = classifier.window_seconds if min_dwell_seconds is None else float(min_dwell_seconds)
        self._resampler = None if input_rate == classifier.sample_rate else soxr.ResampleStream(
            input_rate, classifier.sample_rate, channels, dtype="float32", quality="HQ")
        self._framer = _Framer(classifier.window_samples, classifier.hop_samples, model_channels)
        self._smoothed: np.ndarray | None = None
        self._label: str | None = None
        self._candidate: str | None = None
        self._candidate_since: float = 0.0

    @property
    def label(self) -> str | None:
        """The scene reported now (None before the first decision)."""
        return self._label

    def push(self, block: np.ndarray) -> list[Decision]:
        """Feed ``(channels, samples)`` (or ``(samples,)`` for mono) float samples; returns the decisions made."""
        block = _shape(block) if np.asarray(block).size else np.zeros((self.channels, 0), np.float32)
        if block.shape[0] != self.channels:
            raise AudioError(f"block has {block.shape[0]} channels; the stream was opened with {self.channels}")
        if not np.isfinite(block).all():
            raise AudioError("block contains NaN or infinite samples")
        if self._resampler is not None:
            block = np.ascontiguousarray(self._resampler.resample_chunk(np.ascontiguousarray(block.T)).T)
        return self._frames(block)

    def _frames(self, block: np.ndarray) -> list[Decision]:
        windows = list(self._framer.push(self.classifier._mix(block)))
        if not windows:
            return []
        probs = self.classifier._window_probabilities(np.stack([w for _, w in windows]))
        return [self._decide(start, w, p) for (start, w), p in zip(windows, probs)]

    def finish(self) -> list[Decision]:
        """End of input: flush what the resampler still holds; returns the decisions that completes."""
        if self._resampler is None:
            return []
        rest = self._resampler.resample_chunk(np.zeros((0, self.channels), np.float32), last=True)
        self._resampler = None
        return self._frames(np.ascontiguousarray(rest.T)) if rest.shape[0] else []

    def _decide(self, start: int, window: np.ndarray, probs: np.ndarray) -> Decision:
        clf = self.classifier
        time = (start + clf.window_samples) / clf.sample_rate
        a = self.smoothing
        self._smoothed = probs.copy() if self._smoothed is None else a * probs + (1 - a) * self._smoothed
        top = clf.classes[int(np.argmax(self._smoothed))]
        previous, changed = self._label, False
        if self._label is None:
            self._label, changed = top, True
        elif top == self._label:
            self._candidate = None
        else:
            if top != self._candidate:
                self._candidate, self._candidate_since = top, time
            if time - self._candidate_since >= self.min_dwell_seconds - 1e-9:
                self._label, changed, self._candidate = top, True, None
        k = clf.classes.index(self._label)
        level = level_dbfs(window)
        return Decision(time, self._label, float(self._smoothed[k]), probs, self._smoothed.copy(), changed,
                        previous if changed else None, level)


class _Framer:
    """Cuts a stream of ``(channels, n)`` blocks into windows every hop: yields (start sample, window)."""

    def __init__(self, window: int, hop: int, channels: int):
        self.window, self.hop = window, hop
        self.buffer = np.zeros((channels, 0), np.float32)
        self.buffer_start = 0  # stream position of buffer[:, 0]
        self.next_start = 0
        self.consumed = 0
        self.emitted = 0
        self.last_start = -1

    def push(self, block: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        self.buffer = np.concatenate([self.buffer, block.astype(np.float32, copy=False)], axis=1)
        self.consumed += block.shape[-1]
        while self.next_start + self.window <= self.consumed:
            a = self.next_start - self.buffer_start
            yield self.next_start, self.buffer[:, a:a + self.window].copy()
            self.last_start = self.next_start
            self.emitted += 1
            self.next_start += self.hop
        drop = min(self.next_start - self.buffer_start, self.buffer.shape[-1])
        if drop > 0:
            self.buffer = self.buffer[:, drop:]
            self.buffer_start += drop


def _stitch(columns: list[np.ndarray], windows: list[Window], duration: float, window_seconds: float) -> np.ndarray:
    """One ``(rows, columns)`` picture of 0..duration from the windows' coarse columns (windows overlap:
    each time is drawn from the first window that covers it)."""
    out, covered = [], 0.0
    for cols, w in zip(columns, windows):
        step = window_seconds / cols.shape[-1]
        for i in range(cols.shape[-1]):
            centre = w.start + (i + 0.5) * step
            if covered <= centre < duration:
                out.append(cols[:, i])
                covered = w.start + (i + 1) * step
    return np.stack(out, axis=-1)


def _file_blocks(info) -> Iterator[np.ndarray]:
    """Decoded ``(channels, n)`` float32 blocks of a file, with its checks (truncation, NaN, range)."""
    block = max(1, int(BLOCK_SECONDS * info.sample_rate))
    read = 0
    try:
        with quiet_decoder():
            f = sf.SoundFile(str(info.path))
        with f:
            while True:
                with quiet_decoder():
                    data = f.read(block, dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    break
                read += data.shape[0]
                check_samples(data, info.path, silence_ok=True)
                yield data.T
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{info.path}: decoding failed ({str(exc).strip().splitlines()[-1]}); "
                         "the file is damaged") from None
    if read != info.frames:
        raise AudioError(f"{info.path}: truncated: header declares {info.frames} frames but only {read} could be read")


def _resampled(blocks: Iterator[np.ndarray], rate: int, target: int, channels: int,
               name: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(resampled block, original block) pairs; the streaming resampler equals the one-shot one exactly."""
    stream = None if rate == target else soxr.ResampleStream(rate, target, channels, dtype="float32", quality="HQ")
    for block in blocks:
        if stream is None:
            yield block, block
        else:
            yield np.ascontiguousarray(stream.resample_chunk(np.ascontiguousarray(block.T)).T), block
    if stream is not None:
        rest = stream.resample_chunk(np.zeros((0, channels), np.float32), last=True)
        if rest.shape[0]:
            yield np.ascontiguousarray(rest.T), np.zeros((channels, 0), np.float32)


def _shape(waveform: np.ndarray) -> np.ndarray:
    """(samples,) or (channels, samples) float32; AudioError for empty or (samples, channels) input."""
    w = np.asarray(waveform, dtype=np.float32)
    if w.ndim == 1:
        w = w[None]
    if w.ndim != 2 or w.shape[-1] == 0:
        raise AudioError(f"waveform must be (samples,) or (channels, samples) with samples > 0, got {w.shape}")
    if w.shape[0] > w.shape[1] or w.shape[0] > 16:
        raise AudioError(f"waveform of shape {w.shape} looks like (samples, channels) as soundfile returns it; "
                         "pass its transpose, (channels, samples)")
    return w


def expand_inputs(inputs: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files and folders (searched recursively for audio files) -> (sorted files, [(input, reason)] of
    inputs that do not exist or are folders without audio).  Nothing raises: every input is accounted for."""
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                problems.append((str(path), f"{path}: folder holds no audio files ({', '.join(AUDIO_EXTENSIONS)})"))
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            problems.append((str(path), f"{path}: does not exist"))
    return files, problems
