"""The gain stage after the cascade: one gain per frame, with one frame of look-ahead.

The equalized signal is cut into frames of :data:`FRAME_SECONDS` on a fixed grid of samples. For each frame
the caller gives a target gain (volume + level following + loudness make-up); the stage then picks the
largest gain at or below it such that, with the gain ramped linearly from the previous frame's value over
the frame (no steps, no zipper noise):

* no sample exceeds full scale (**peak control**: a full-scale input with a 12-dB boost is turned down in
  that frame instead of being clipped), and
* the A-weighted mean square of the output over the last second (this frame and the 49 before it) stays
  within ``ceiling`` (the **exposure limiter**'s hard bound: every 1-s stretch on the frame grid, hence every
  longer one, is at or below the level the remaining allowance permits; a loud beat may use what the quieter
  frames before it left, so the bound does not flatten every kick drum).

Both bounds grow with the end gain (the first linearly per sample, the second quadratically), so the
largest admissible end gain is a closed form. Only when even an end gain of 0 would break a bound (the
previous gain was high and the frame starts loud) is the frame given one constant gain that meets both:
the only case of a step. Seeing the frame before choosing its gain costs one frame of latency. The gain
falls as fast as a frame needs, and rises at most :data:`RISE_DB_PER_SECOND` (a limiter's release), so a
run of loud peaks lowers the music for a moment instead of making it flutter frame by frame.

The A-weighting is IEC 61672-1's, as PyOctaveBand designs it (the filter the core's level meter uses).
Frames and their gains depend only on sample positions, so block-wise processing equals whole processing.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from scipy.signal import sosfilt

FRAME_SECONDS = 0.02        # 20 ms frames: 882 samples at 44.1 kHz, the stage's latency
WINDOW_FRAMES = 50          # the exposure bound holds over every 50 frames (1 s)
RISE_DB_PER_SECOND = 20.0   # the gain rises at most this fast (0.4 dB a frame): a release after a peak


class GainStage:
    """Frames in (float64 equalized audio), gained frames out, one frame later."""

    def __init__(self, sample_rate: int, channels: int):
        from pyoctaveband import WeightingFilter

        self.frame = max(16, int(round(FRAME_SECONDS * sample_rate)))
        self.seconds = self.frame / sample_rate
        self._buf = np.zeros((channels, self.frame))
        self._fill = 0
        self._ready = [np.zeros((channels, self.frame))]  # the latency: one frame of silence first
        self._ready_used = 0
        self._a_sos = WeightingFilter(int(sample_rate), "A", stateful=True).sos
        self._a_zi = np.zeros((len(self._a_sos), channels, 2))
        self._t = np.arange(1, self.frame + 1) / self.frame
        self._pow = np.zeros(self.frame)
        self._recent: deque[float] = deque(maxlen=WINDOW_FRAMES - 1)  # the last frames' output mean squares
        self.gain: float | None = None  # the gain at the end of the last frame (linear; None before the first)
        self._rise = 10 ** (RISE_DB_PER_SECOND * self.seconds / 20)

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

    def apply(self, target: float, ceiling: float | None) -> tuple[float, float, bool]:
        """Gain the measured frame towards ``target`` (linear) within full scale and, over the last second,
        the mean-square ``ceiling`` (None: no limiter). Returns (end gain, output A-weighted mean square,
        whether the ceiling held the gain below both the target and the peak bound)."""
        if ceiling is not None:  # what this frame may use of the last second's allowance
            ceiling = max(WINDOW_FRAMES * ceiling - sum(self._recent), 0.0)
        buf, p = self._buf, self._pow
        g0 = target if self.gain is None else self.gain  # the first frame starts at its target, not at 1
        target = min(target, g0 * self._rise)
        peak = np.abs(buf).max(axis=0)
        top, mean_p, high = float(peak.max()), float(p.mean()), max(g0, target)
        # a ramp never exceeds its larger end: bounds that the larger end meets cannot bind (the usual case)
        peak_bound = math.inf if top * high <= 1.0 else self._peak_bound(peak, g0)
        energy_bound = math.inf if ceiling is None or high * high * mean_p <= ceiling else \
            self._energy_bound(p, g0, ceiling)
        g = min(target, peak_bound, energy_bound)
        limited = energy_bound < min(target, peak_bound)
        if g >= 0 and g == g0:
            out, out_ms = buf * g, g * g * mean_p
        elif g >= 0:
            ramp = g0 + (g - g0) * self._t
            out, out_ms = buf * ramp, float(np.dot(ramp * ramp, p)) / self.frame
        else:  # no ramp from the previous gain fits: one constant gain for the frame
            g = min(target, 1.0 / top if top > 1.0 else math.inf,
                    math.sqrt(ceiling / max(mean_p, 1e-300)) if ceiling is not None else math.inf)
            out, out_ms = buf * g, g * g * mean_p
        if top * max(g0, g) > 0.999999:
            np.clip(out, -1.0, 1.0, out=out)  # float rounding only: the bounds keep every sample within
        self._ready.append(out)
        self._recent.append(float(out_ms))
        self._fill, self.gain = 0, float(g)
        return float(g), float(out_ms), limited

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` output samples (always available: the output runs one frame behind the input)."""
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

    def _peak_bound(self, peak: np.ndarray, g0: float) -> float:
        """The largest end gain g with peak * (g0 (1 - t) + g t) <= 1 at every sample."""
        loud = peak > 0
        if not loud.any():
            return math.inf
        t = self._t[loud]
        return float(np.min((1.0 / peak[loud] - g0 * (1 - t)) / t))

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
