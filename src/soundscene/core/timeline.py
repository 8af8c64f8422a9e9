"""The timeline of a recording: framing, window classification in batches, segments, the overview picture.

**One rule for any length.**  A recording is classified window by window:
windows of ``window`` samples (default: the training clip length) every
``hop`` samples (default: half of it), at the model's rate.  Each window is
featurised on its own (:class:`~soundscene.core.scorer.WindowScorer`), so its
dB floor is taken over the window exactly as it was over each training clip.
A recording no longer than one window is one window, padded as training clips
were.  When the hops do not reach the end, one more window is aligned with the
end, so every sample is seen.  The recording's probabilities are the mean of
its windows'; its label is their arg-max.  Segments merge consecutive windows
with the same top class into runs that cover the recording without gaps (a
boundary between two windows lies halfway between their centres).

**Silence is not a scene.**  A window whose level (measured around its mean, so
a DC offset does not count) is below ``silence_dbfs`` (default -80 dBFS) is not
classified: it is reported as silent and left out of the recording's mean; a
recording whose every window is silent gets no label (and a warning).

**Bounded memory.**  :class:`TimelineBuilder` takes decoded blocks at the
input's rate, resamples them with the streaming resampler, frames them and
classifies windows in batches of :data:`WINDOW_BATCH` as they fill, so memory
does not grow with the recording's length (but for one small record per window).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from ..errors import AudioError
from .audio import LOW_LEVEL_DBFS, StreamResampler, fix_length, level_dbfs
from .levels import LevelMeter, Levels
from .records import Prediction, Window

if TYPE_CHECKING:  # the torch scorer or the ONNX one (core.onnxmodel.OnnxScorer): the same interface
    from .scorer import WindowScorer

WINDOW_BATCH = 4  # windows per network call (peak memory ~300 MB over the imports for 10-s windows)


class Framer:
    """Cuts a stream of ``(channels, n)`` blocks into windows every hop: yields (start sample, window).

    A span of a longer stream (see :func:`span_bounds`): ``origin`` is the stream position of the first sample
    pushed, ``first`` the first window's start (default ``origin``; samples before it are only read), ``stop``
    the start at which no more windows are cut (default: none).  Positions are the whole stream's."""

    def __init__(self, window: int, hop: int, channels: int, *, origin: int = 0, first: int | None = None,
                 stop: int | None = None):
        self.window, self.hop = window, hop
        self.buffer = np.zeros((channels, 0), np.float32)
        self.buffer_start = origin  # stream position of buffer[:, 0]
        self.next_start = origin if first is None else first
        self.consumed = origin
        self.stop = stop
        self.emitted = 0
        self.last_start = -1

    @property
    def done(self) -> bool:
        """Every window before ``stop`` has been cut."""
        return self.stop is not None and self.next_start >= self.stop

    def push(self, block: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        self.buffer = np.concatenate([self.buffer, block.astype(np.float32, copy=False)], axis=1)
        self.consumed += block.shape[-1]
        while self.next_start + self.window <= self.consumed and not self.done:
            a = self.next_start - self.buffer_start
            yield self.next_start, self.buffer[:, a:a + self.window].copy()
            self.last_start = self.next_start
            self.emitted += 1
            self.next_start += self.hop
        drop = min(self.next_start - self.buffer_start, self.buffer.shape[-1])
        if drop > 0:
            self.buffer = self.buffer[:, drop:]
            self.buffer_start += drop


class TimelineBuilder:
    """One recording's windows, classified as its decoded blocks arrive (see the module docstring).

    push(block) takes ``(input_channels, n)`` float32 at ``input_rate``; finish(duration) returns the
    :class:`Prediction` (AudioError for digital silence).  A span of a recording (``origin``, ``first``,
    ``stop``: see :class:`Framer` and :func:`span_bounds`) is pushed from its aligned origin and closed with
    :meth:`finish_span`, which returns its windows: the spans' windows together are the recording's.
    """

    def __init__(self, scorer: WindowScorer, classes: Sequence[str], *, window: int, hop: int, input_rate: int,
                 name: str, overview: bool = False, silence_dbfs: float = LOW_LEVEL_DBFS, origin: int = 0,
                 first: int | None = None, stop: int | None = None, meter: LevelMeter | None = None):
        self.scorer, self.classes, self.name = scorer, list(classes), name
        self.silence_dbfs = silence_dbfs
        self.window, self.rate = window, scorer.config.audio.sample_rate
        self.windows: list[Window] = []
        self.coarse: list | None = [] if overview else None
        self._framer = Framer(window, hop, scorer.channels, origin=origin, first=first, stop=stop)
        self._resampler: StreamResampler | None = None
        self._input_rate = input_rate
        self._meter = meter  # measures levels on the input as recorded (mixed to mono), when given
        self._pending: list[tuple[int, np.ndarray, Levels | None]] = []
        self._tail = np.zeros((scorer.channels, 0), np.float32)
        self._energy, self._count, self._peak = 0.0, 0, 0.0

    def push(self, block: np.ndarray) -> None:
        if self._resampler is None:
            self._resampler = StreamResampler(self._input_rate, self.rate, block.shape[0])
        self._measure(block)
        if self._meter is not None:
            # the same numbers; a decoded block is a transposed view, and numpy's mean across its rows is 10x slower
            self._meter.push_channels(block)
        self._frame(self._resampler.push(block))

    @property
    def span_done(self) -> bool:
        """A span with a ``stop`` has cut all its windows: nothing more need be pushed."""
        return self._framer.done

    def finish_span(self, duration: float | None) -> list[Window]:
        """Score what is pending and return the windows.  ``duration`` (seconds) when the span reaches the end
        of the recording: the resampler is flushed and the end's windows added as :meth:`finish` does; None for
        a span that stops before the end (the resampler is not flushed: the next span reads on)."""
        if duration is not None:
            if self._meter is not None:
                self._meter.finish()
            if self._resampler is not None:
                self._frame(self._resampler.finish())
            framer, window = self._framer, self.window
            if framer.emitted == 0:  # shorter than one window: one window, padded as training clips are
                audio = self.scorer.config.audio
                self._pending.append((0, fix_length(self._tail, length=window, pad_mode=audio.pad_mode),
                                      self._levels(0)))
            elif framer.last_start + window < framer.consumed:  # the hops stop short of the end: one, end-aligned
                self._pending.append((framer.consumed - window, self._tail, self._levels(framer.consumed - window)))
        self._flush()
        if duration is not None and self.windows:  # a short recording's padded window ends with it
            self.windows[-1].end = min(self.windows[-1].end, duration)
        return self.windows

    def finish(self, duration: float) -> Prediction:
        if self._peak == 0.0:
            raise AudioError(f"{self.name}: is digital silence (every sample is 0)")
        self.finish_span(duration)
        heard = [w.probabilities for w in self.windows if not w.silent]
        probs = np.mean(heard, axis=0) if heard else None
        level = 10 * math.log10(self._energy / self._count) if self._energy > 0 else float("-inf")
        overview = stitch(self.coarse, self.windows, duration, self.window / self.rate) if self.coarse else None
        return Prediction(self.name, self.classes, probs, self.windows, duration, level, overview=overview,
                          silence_dbfs=self.silence_dbfs,
                          levels=None if self._meter is None else self._meter.total())

    def _measure(self, block: np.ndarray) -> None:
        """The level is measured on the input as recorded (its rate and channels)."""
        self._energy += float(np.square(block, dtype=np.float64).sum())
        self._count += block.size
        self._peak = max(self._peak, float(np.abs(block).max(initial=0.0)))

    def _frame(self, block: np.ndarray) -> None:
        if block.shape[-1] == 0:
            return
        mixed = self.scorer.mix(block)
        self._tail = np.concatenate([self._tail, mixed[:, -self.window:]], axis=1)[:, -self.window:]
        for start, w in self._framer.push(mixed):
            self._pending.append((start, w, self._levels(start)))
            if len(self._pending) >= WINDOW_BATCH:
                self._flush()

    def _flush(self) -> None:
        """Score the pending windows that are not silent (in one batch) and keep every window, in order.

        Each window owns its probabilities (see WindowScorer.score_heard): views of the network's output
        buffers, thousands of small long-lived blocks between large short-lived ones, are what made memory
        grow with the recording's length."""
        if not self._pending:
            return
        scores = self.scorer.score_heard([w for _, w, _ in self._pending], silence_dbfs=self.silence_dbfs,
                                         overview=self.coarse)
        for (start, w, levels), probs in zip(self._pending, scores):
            self.windows.append(Window(start / self.rate, (start + self.window) / self.rate, probs, level_dbfs(w),
                                       levels))
        self._pending.clear()

    def _levels(self, start: int) -> Levels | None:
        """The levels of the window starting at ``start`` (model-rate samples), measured at the input's rate."""
        if self._meter is None:
            return None
        return self._meter.levels_between(start / self.rate, (start + self.window) / self.rate)


def span_bounds(first: int, *, input_rate: int, rate: int, preroll: int) -> tuple[int, int]:
    """Where to start decoding a span whose first window starts at sample ``first`` (at the model's ``rate``):
    ``(origin, input frame)``.  The origin is at least ``preroll`` samples before ``first`` (or 0) and on the
    resampler's grid (``origin * input_rate / rate`` is a whole input frame), so a resampler started there
    gives the whole recording's samples from ``first`` on, to float rounding (~3e-7 after 256 samples)."""
    common = math.gcd(int(input_rate), int(rate))
    out_step, in_step = int(rate) // common, int(input_rate) // common
    origin = max(0, first - preroll) // out_step * out_step
    return origin, origin // out_step * in_step


def resampled_length(frames: int, *, input_rate: int, rate: int) -> int:
    """How many samples at ``rate`` the streaming resampler makes of ``frames`` at ``input_rate`` (rounded half
    up, as soxr does)."""
    return (2 * int(frames) * int(rate) + int(input_rate)) // (2 * int(input_rate))


def stitch(columns: list[np.ndarray], windows: list[Window], duration: float, window_seconds: float) -> np.ndarray:
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
    if not out:  # a recording shorter than the first column's centre (a long window): that column stands for it
        out.append(columns[0][:, 0])
    return np.stack(out, axis=-1)
