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

import warnings
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from .._version import __version__
from ..config import MAX_OVERLAP, MAX_WINDOW_SECONDS, MIN_HOP_SECONDS, SILENCE_DBFS, Range
from ..errors import AudioError, ConfigError, ModelFileError
from .audio import (LOW_LEVEL_DBFS, Input, as_channels_first, audio_info, check_length, check_sample_rate, check_samples,
                    read_blocks)
from .modelfile import load_model_file
from .records import Decision, Prediction, Segment, Window  # noqa: F401 (the results' types, importable here)
from .scorer import WindowScorer
from .stream import StreamClassifier
from .timeline import TimelineBuilder

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

    def __init__(self, bundle, *, device: str | torch.device = "cpu", window_seconds: float | None = None,
                 hop_seconds: float | None = None, silence_dbfs: float | None = None):
        self.config = bundle.config
        self.classes = list(bundle.classes)
        self.metadata = bundle.metadata
        self.path = bundle.path
        self.scorer = WindowScorer(bundle.net, self.config, n_classes=len(self.classes), device=device)
        clip = float(self.config.audio.clip_seconds)
        self.window_seconds = float(window_seconds) if window_seconds is not None else clip
        self.hop_seconds = float(hop_seconds) if hop_seconds is not None else self.window_seconds / 2
        problem = Range(self.config.audio.min_seconds, MAX_WINDOW_SECONDS, "s").refusal(self.window_seconds)
        if problem:
            raise ConfigError(f"--window {problem} (from the model's audio.min_seconds to "
                              f"{MAX_WINDOW_SECONDS / 60:g} minutes)")
        shortest = max(MIN_HOP_SECONDS, self.window_seconds / MAX_OVERLAP)
        problem = Range(shortest, self.window_seconds, "s").refusal(self.hop_seconds)
        if problem:
            raise ConfigError(f"--hop {problem} (from 1/{MAX_OVERLAP} of the window, at least "
                              f"{MIN_HOP_SECONDS * 1000:g} ms, to the window)")
        silence_dbfs = LOW_LEVEL_DBFS if silence_dbfs is None else silence_dbfs
        problem = SILENCE_DBFS.refusal(silence_dbfs)
        if problem:
            raise ConfigError(f"--silence-dbfs {problem}")
        self.silence_dbfs = float(silence_dbfs)  # windows quieter than this are silent, not classified

    @classmethod
    def from_file(cls, path: str | Path, *, device: str | torch.device = "cpu", window_seconds: float | None = None,
                  hop_seconds: float | None = None, silence_dbfs: float | None = None) -> "SceneClassifier":
        """Load a model file or a run folder (see :mod:`soundscene.core.modelfile`)."""
        return cls(load_model_file(path), device=device, window_seconds=window_seconds, hop_seconds=hop_seconds,
                   silence_dbfs=silence_dbfs)

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

    def predict_waveforms(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Deprecated name of :meth:`classify_clips` (removed in the next release)."""
        warnings.warn("SceneClassifier.predict_waveforms is deprecated; use classify_clips", DeprecationWarning,
                      stacklevel=2)
        return self.classify_clips(waveforms)

    # -- recordings of any length ------------------------------------------------------------------

    def predict_files(self, paths: Iterable[str | Path], *, batch_size: int = 16, skip_bad: bool = True,
                      progress: bool = False) -> list[Prediction]:
        """Deprecated name of :meth:`classify_files` (release 1; removed in the next release).

        batch_size is ignored (batching never changed results); skip_bad=False raises the first file's
        AudioError instead of returning a Prediction with ``error``, as in release 1."""
        warnings.warn("SceneClassifier.predict_files is deprecated; use classify_files", DeprecationWarning,
                      stacklevel=2)
        if skip_bad:
            return self.classify_files(paths, progress=progress)
        return [self.classify_file(path) for path in paths]

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
                                  input_rate=rate, name=name, overview=overview, silence_dbfs=self.silence_dbfs)
        for block in blocks:
            builder.push(block)
        return builder.finish(frames / rate)

    def stream(self, *, input_rate: int | None = None, channels: int = 1, smoothing: float = 0.5,
               min_dwell_seconds: float | None = None) -> StreamClassifier:
        """A :class:`StreamClassifier` over this model."""
        return StreamClassifier(self, input_rate=input_rate or self.sample_rate, channels=channels,
                                smoothing=smoothing, min_dwell_seconds=min_dwell_seconds,
                                silence_dbfs=self.silence_dbfs)


def _seconds_below(seconds: float, limit: float) -> str:
    """``seconds`` with just enough digits to read as less than ``limit`` (0.499, not 0.50, below 0.5)."""
    for digits in range(2, 12):
        text = f"{seconds:.{digits}g}"
        if float(text) < limit:
            return text
    return repr(seconds)
