"""The gain stage after the cascade: one gain per frame, one frame of look-ahead, then a peak limiter.

The equalized signal is cut into frames of :data:`FRAME_SECONDS` on a fixed grid of samples. For each frame
the caller gives a target gain (volume + level following + loudness make-up); the stage then picks the
largest gain at or below it such that, with the gain ramped linearly from the previous frame's value over
the frame (no steps, no zipper noise), the A-weighted mean square of the output over the last second (this
frame and the 49 before it) stays within ``ceiling`` (the **exposure limiter**'s hard bound: every 1-s
stretch on the frame grid, hence every longer one, is at or below the level the remaining allowance
permits; a loud beat may use what the quieter frames before it left, so the bound does not flatten every
kick drum). The bound grows quadratically with the end gain, so the largest admissible end gain is a closed
form; only when even an end gain of 0 would break it (the previous gain was high and the frame starts loud)
is the frame given one constant gain that meets it: the only case of a step. Seeing the frame before
choosing its gain costs one frame of latency. The gain falls as fast as a frame needs, and rises at most
:data:`RISE_DB_PER_SECOND`.

**Peak control** is not the frame gain's business (a frame gain lowered for a peak stays low for the whole
frame and, rising slowly, for many after it: the music dropped by tens of dB for seconds after each kick
drum). The frames go on into a true look-ahead peak limiter (:mod:`.limiter`): a 5-ms delay line, the gain
down by exactly what the loudest sample needs when it arrives, held 25 ms and released in 50 ms, so a
full-scale input with a 12-dB boost is turned down at its peaks only and never clipped. The stage's latency
is one frame plus the look-ahead (:attr:`GainStage.latency`).

The A-weighting is IEC 61672-1's, as PyOctaveBand designs it (the filter the core's level meter uses). The
exposure bound holds for the frame-gained signal, and the limiter only lowers it; the mean squares the
stage reports (for the dose) are those of its actual output, after the limiter. Frames, their gains and
the limiter depend only on sample positions, so block-wise processing equals whole processing.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

import numpy as np
from scipy.signal import sosfilt

from .limiter import limit_peaks, limiter_state

FRAME_SECONDS = 0.02        # 20 ms frames: 882 samples at 44.1 kHz (the latency, with the limiter's 5 ms)
WINDOW_FRAMES = 50          # the exposure bound holds over every 50 frames (1 s)
RISE_DB_PER_SECOND = 20.0   # the frame gain rises at most this fast (0.4 dB a frame)


class Frame(NamedTuple):
    """What :meth:`GainStage.apply` did with a frame."""

    gain: float                # the frame gain at the frame's end (linear), before the peak limiter
    mean_square: float         # A-weighted mean square of the music that came out (after the limiter)
    seconds: float             # how much music came out (a frame; less the limiter's delay the first time)
    limited: bool              # the exposure ceiling held the frame gain below its target
    peak_reduction_db: float   # the peak limiter's largest reduction over the samples that came out (>= 0)


class GainStage:
    """Frames in (float64 equalized audio), gained and peak-limited frames out, :attr:`latency` later."""

    def __init__(self, sample_rate: int, channels: int):
        from pyoctaveband import WeightingFilter

        self.frame = max(16, int(round(FRAME_SECONDS * sample_rate)))
        self.seconds, self.sample_rate = self.frame / sample_rate, int(sample_rate)
        self._limiter = limiter_state(channels=channels, sample_rate=self.sample_rate)
        self._power = np.zeros(self._limiter.lookahead)  # per-sample mean squares, delayed with the audio
        self._silence = self._limiter.lookahead  # samples of the limiter's initial silence not yet out
        self._buf = np.zeros((channels, self.frame))
        self._fill = 0
        self._ready = [np.zeros((channels, self.frame))]  # one frame of silence first (the limiter adds its own)
        self._ready_used = 0
        self._a_sos = WeightingFilter(int(sample_rate), "A", stateful=True).sos
        self._a_zi = np.zeros((len(self._a_sos), channels, 2))
        self._t = np.arange(1, self.frame + 1) / self.frame
        self._pow = np.zeros(self.frame)
        self._recent: deque[float] = deque(maxlen=WINDOW_FRAMES - 1)  # the last frames' output mean squares
        self.gain: float | None = None  # the gain at the end of the last frame (linear; None before the first)
        self._rise = 10 ** (RISE_DB_PER_SECOND * self.seconds / 20)

    @property
    def latency(self) -> int:
        """Samples by which the output lags the input: one frame and the limiter's look-ahead."""
        return self.frame + self._limiter.lookahead

    @property
    def room(self) -> int:
        """Samples still needed to complete the open frame."""
        return self.frame - self._fill

    def put(self, y: np.ndarray) -> None:
        """Add equalized samples (channels, k <= :attr:`room`)."""
        self._buf[:, self._fill:self._fill + y.shape[1]] = y
        self._fill += y.shape[1]

    def measure(self) -> float:
        """The complete frame's A-weighted mean square (full scale = 1), before the gain (the A-weighting runs
        frame by frame, its state carried: once per frame whatever the block sizes)."""
        weighted, self._a_zi = sosfilt(self._a_sos, self._buf, axis=-1, zi=self._a_zi)
        np.mean(weighted * weighted, axis=0, out=self._pow)
        return float(self._pow.mean())

    def apply(self, target: float, ceiling: float | None) -> Frame:
        """Gain the measured frame towards ``target`` (linear) within, over the last second, the mean-square
        ``ceiling`` (None: no exposure limiter), and send it through the peak limiter."""
        if ceiling is not None:  # what this frame may use of the last second's allowance
            ceiling = max(WINDOW_FRAMES * ceiling - sum(self._recent), 0.0)
        buf, p = self._buf, self._pow
        g0 = target if self.gain is None else self.gain  # the first frame starts at its target, not at 1
        target = min(target, g0 * self._rise)
        mean_p, high = float(p.mean()), max(g0, target)
        # a ramp never exceeds its larger end: a bound that the larger end meets cannot bind (the usual case)
        energy_bound = math.inf if ceiling is None or high * high * mean_p <= ceiling else \
            self._energy_bound(p, g0, ceiling)
        g = min(target, energy_bound)
        if g < 0:  # no ramp from the previous gain fits: one constant gain for the frame
            g = min(target, math.sqrt(ceiling / max(mean_p, 1e-300)))
        if g == g0 or energy_bound < 0:
            out, power = buf * g, p * (g * g)
        else:
            ramp = g0 + (g - g0) * self._t
            out, power = buf * ramp, ramp * ramp * p
        self._recent.append(float(power.mean()))
        self._fill, self.gain = 0, float(g)
        return self._limit(out, power, float(g), energy_bound < target)

    def _limit(self, out: np.ndarray, power: np.ndarray, g: float, limited: bool) -> Frame:
        """The frame-gained samples through the peak limiter; their per-sample mean squares delayed alike."""
        out, gain, self._limiter = limit_peaks(out, state=self._limiter, sample_rate=self.sample_rate)
        power = np.concatenate([self._power, power])
        self._power, power = power[gain.size:], power[:gain.size]
        self._ready.append(out)
        skip, self._silence = self._silence, 0  # the delay line's silence before the first sample is no music
        music = gain[skip:]
        return Frame(g, float(np.dot(power[skip:], music * music)) / music.size, music.size / self.sample_rate,
                     limited, float(-20 * math.log10(gain.min())))

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` output samples (always available: the output runs :attr:`latency` behind the input)."""
        parts, need = [self._buf[:, :0]], n
        while need:
            head = self._ready[0]
            k = min(need, head.shape[1] - self._ready_used)
            parts.append(head[:, self._ready_used:self._ready_used + k])
            self._ready_used += k
            need -= k
            if self._ready_used == head.shape[1]:
                self._ready.pop(0)
                self._ready_used = 0
        return np.concatenate(parts, axis=1) if len(parts) > 2 else parts[-1]

    def _energy_bound(self, p: np.ndarray, g0: float, ceiling: float) -> float:
        """The largest end gain g with mean(p (g0 (1 - t) + g t)^2) <= ceiling (-1 when none >= 0 fits)."""
        t = self._t
        a, b, c = np.mean(p * (1 - t) ** 2), np.mean(p * (1 - t) * t), np.mean(p * t * t)
        if c <= 0:
            return math.inf
        disc = b * b * g0 * g0 - c * (a * g0 * g0 - ceiling)
        if disc < 0:
            return -1.0
        return float((-b * g0 + math.sqrt(disc)) / c)
