"""Streaming classification: audio blocks of any size in, a :class:`Decision` every hop out.

:class:`StreamClassifier` resamples and mixes blocks as files are, keeps one
window of audio, scores a window every hop with the classifier's
:class:`~soundscene.core.scorer.WindowScorer`, smooths the probabilities with an
exponential moving average and changes the reported scene only after the new
scene has led for ``min_dwell_seconds`` (hysteresis).  The raw window
probabilities of a stream equal those of the same audio classified as a file,
whatever the block sizes.  A window below ``silence_dbfs`` (a dead or muted
microphone) gives a silent decision: no scene, and the smoothing and
hysteresis are left as they were.
"""

from __future__ import annotations

import numpy as np

from ..config import SILENCE_DBFS
from ..errors import AudioError, SoundsceneError
from .audio import StreamResampler, as_channels_first, check_sample_rate, check_samples, level_dbfs
from .records import Decision
from .timeline import Framer

MAX_DWELL_SECONDS = 86400.0  # hysteresis of at most a day


class StreamClassifier:
    """Scene decisions from audio blocks of any size.

    classifier: a :class:`soundscene.core.inference.SceneClassifier` (its scorer, classes and windowing).
    input_rate / channels: what the blocks are (resampled and mixed as files are).
    smoothing: weight of the newest window in the moving average (1 = no smoothing).
    min_dwell_seconds: how long a new scene must lead the smoothed probabilities before it is
    reported (default: one window).
    """

    def __init__(self, classifier, *, input_rate: int, channels: int = 1, smoothing: float = 0.5,
                 min_dwell_seconds: float | None = None, silence_dbfs: float | None = None):
        if not 0 < smoothing <= 1:  # also refuses nan
            raise SoundsceneError(f"--smoothing {smoothing:g} is outside (0, 1]")
        if isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels <= 16:
            raise SoundsceneError(f"--channels {channels} is outside 1..16")
        try:
            check_sample_rate(input_rate, "input rate")
        except AudioError as exc:
            raise SoundsceneError(str(exc)) from None
        model_channels = classifier.scorer.channels
        if model_channels > 1 and channels != model_channels:
            raise SoundsceneError(f"the model expects {model_channels} channels, the stream has {channels}")
        self.scorer, self.classes = classifier.scorer, list(classifier.classes)
        self.window_samples, self.sample_rate = classifier.window_samples, classifier.sample_rate
        self.input_rate, self.channels, self.smoothing = int(input_rate), int(channels), float(smoothing)
        self.min_dwell_seconds = classifier.window_seconds if min_dwell_seconds is None else float(min_dwell_seconds)
        if not 0 <= self.min_dwell_seconds <= MAX_DWELL_SECONDS:  # also refuses nan
            raise SoundsceneError(f"--dwell {self.min_dwell_seconds:g} s is outside 0..{MAX_DWELL_SECONDS:g} s")
        self.silence_dbfs = classifier.silence_dbfs if silence_dbfs is None else float(silence_dbfs)
        problem = SILENCE_DBFS.refusal(self.silence_dbfs)
        if problem:
            raise SoundsceneError(f"--silence-dbfs {problem}")
        self._resampler = StreamResampler(self.input_rate, self.sample_rate, self.channels)
        self.meter = classifier.level_meter(self.input_rate)  # levels of the audio as heard, before resampling
        self._framer = Framer(classifier.window_samples, classifier.hop_samples, model_channels)
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
        block = as_channels_first(block) if np.asarray(block).size else np.zeros((self.channels, 0), np.float32)
        if block.shape[0] != self.channels:
            raise AudioError(f"block has {block.shape[0]} channels; the stream was opened with {self.channels}")
        check_samples(block, "input block", silence_ok=True)  # as predict checks a file: finite, within ±MAX
        if self.meter is not None:
            self.meter.push_channels(block)
        return self._frames(self._resampler.push(block))

    def finish(self) -> list[Decision]:
        """End of input: flush what the resampler still holds; returns the decisions that completes."""
        if self.meter is not None:
            self.meter.finish()
        rest = self._resampler.finish()
        return self._frames(rest) if rest.shape[-1] else []

    def _frames(self, block: np.ndarray) -> list[Decision]:
        windows = list(self._framer.push(self.scorer.mix(block)))
        if not windows:
            return []
        scores = self.scorer.score_heard([w for _, w in windows], silence_dbfs=self.silence_dbfs)
        decisions = [self._silent(start, level_dbfs(w)) if probs is None else self._decide(start, level_dbfs(w), probs)
                     for (start, w), probs in zip(windows, scores)]
        if self.meter is not None:
            for (start, _), decision in zip(windows, decisions):
                decision.levels = self.meter.levels_between(start / self.sample_rate,
                                                            (start + self.window_samples) / self.sample_rate)
        return decisions

    def _silent(self, start: int, level: float) -> Decision:
        """A silent hop: no scene, and a scene that was gaining on the reported one must start again (silence
        is not time in which it led)."""
        time = (start + self.window_samples) / self.sample_rate
        self._candidate = None
        return Decision(time, None, None, None, None, False, None, level, silent=True)

    def _decide(self, start: int, level: float, probs: np.ndarray) -> Decision:
        time = (start + self.window_samples) / self.sample_rate
        a = self.smoothing
        self._smoothed = probs.copy() if self._smoothed is None else a * probs + (1 - a) * self._smoothed
        top = self.classes[int(np.argmax(self._smoothed))]
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
        k = self.classes.index(self._label)
        return Decision(time, self._label, float(self._smoothed[k]), probs, self._smoothed.copy(), changed,
                        previous if changed else None, level)
