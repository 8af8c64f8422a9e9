"""The peak limiter at the end of the gain stage: a true look-ahead limiter, as in broadcast limiters.

The audio runs through a delay line of the look-ahead length ``L`` (:data:`LOOKAHEAD_SECONDS`, 5 ms), so
the gain can be lowered *before* a peak arrives. From the samples entering the delay line:

1. **Required gain** ``g_req[n] = min(1, ceiling / max_channels |x[n]|)``: what sample ``n`` needs, nothing
   more (1 for every sample already within the ceiling).
2. **Look-ahead and hold**: a running minimum of ``g_req`` over ``[n - H, n + L]`` (``H``:
   :data:`HOLD_SECONDS`, 25 ms). The look-ahead has the gain down before the peak; the hold keeps it steady
   through the cycles of a bass note (a period up to 25 ms: 40 Hz), so a loud steady low tone is turned
   down by a constant gain instead of being modulated (distorted) at its own frequency.
3. **Release**: the reduction in dB falls back exponentially (time constant :data:`RELEASE_SECONDS`,
   50 ms) but never below what the window in 2 needs: a reduction lasts only as long as something needs it.
4. **Attack**: a moving average of the gain from 3 over ``L + 1`` samples. Every gain it averages for
   output sample ``a`` has seen ``g_req[a]`` in its window (2), so the average is at or below it: the
   reduction ramps in linearly over the look-ahead and is complete at the peak, and no sample exceeds the
   ceiling. The output is the delayed audio times this gain.

The reduction at a sample is therefore never more than the overshoot of the loudest sample within
``[-(H + L), +L]`` of it, and after that the overshoot decays at the release rate: no drops beyond what a
peak needs. Everything depends on sample positions only (the state carries the delay line and the last
gains), so cutting the signal into chunks of any sizes gives the same output as one chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

LOOKAHEAD_SECONDS = 0.005  # the delay line: the attack is complete at the peak, L = 220 samples at 44.1 kHz
HOLD_SECONDS = 0.025       # a reduction is held this long after the sample that needed it (bass periods)
RELEASE_SECONDS = 0.05     # then the reduction (dB) decays with this time constant
CEILING = 1.0              # full scale: no output sample beyond it
_RELEASE_SPAN = 20.0       # release computed in pieces of at most this many time constants (no overflow)
_NEGLIGIBLE_DB = 1e-4      # a released reduction below this is none (the limiter rests: gain exactly 1)
_DB = 20.0 / math.log(10.0)  # dB per neper of amplitude


@dataclass(frozen=True)
class LimiterState:
    """What the limiter carries from one chunk to the next (arrays never modified in place)."""

    audio: np.ndarray      # (channels, L): the delay line, samples in but not yet out
    required: np.ndarray   # (H + L,): the last required gains (for the running minimum)
    reduction: np.ndarray  # (L,): 1 - the last released gains (for the attack's moving average)
    release_db: float      # the released reduction (dB >= 0) at the last sample
    rests: bool = True     # no reduction anywhere in the state (all required gains 1): the fast path

    @property
    def lookahead(self) -> int:
        """The look-ahead in samples: the limiter's latency."""
        return self.audio.shape[1]


def limiter_state(*, channels: int, sample_rate: int, lookahead_seconds: float = LOOKAHEAD_SECONDS,
                  hold_seconds: float = HOLD_SECONDS) -> LimiterState:
    """The state before the first sample: silence in the delay line, no reduction."""
    lookahead = max(1, int(round(lookahead_seconds * sample_rate)))
    hold = max(0, int(round(hold_seconds * sample_rate)))
    return LimiterState(np.zeros((channels, lookahead)), np.ones(hold + lookahead), np.zeros(lookahead), 0.0)


def required_gain(x: np.ndarray, *, ceiling: float = CEILING) -> np.ndarray:
    """``min(1, ceiling / max_channels |x|)`` per sample of ``x`` (channels, n)."""
    peak = np.abs(x).max(axis=0)
    gain = np.ones(peak.shape)
    np.divide(ceiling, peak, out=gain, where=peak > ceiling)
    return gain


def limit_peaks(x: np.ndarray, *, state: LimiterState, sample_rate: int, ceiling: float = CEILING,
                release_seconds: float = RELEASE_SECONDS) -> tuple[np.ndarray, np.ndarray, LimiterState]:
    """Limit ``x`` (channels, n), the samples following those of ``state``. Returns the output (channels, n),
    delayed by :attr:`LimiterState.lookahead` samples, the gain applied to each output sample (n,) and the
    state after ``x``. The output is within ``ceiling``."""
    n, lookahead = x.shape[1], state.lookahead
    audio = np.concatenate([state.audio, x], axis=1)
    if state.rests and (n == 0 or max(x.max(), -x.min()) <= ceiling):  # at rest (the usual): a delay line
        return audio[:, :n], np.ones(n), LimiterState(audio[:, n:], state.required, state.reduction, 0.0)
    required = np.concatenate([state.required, required_gain(x, ceiling=ceiling)])
    window = required.size - n  # H + L: the running minimum over H + L + 1 samples, L of them ahead
    held_db = np.log(_running_min(required, size=window + 1))
    held_db *= -_DB
    beta = math.exp(-1.0 / (release_seconds * sample_rate))
    released_db = _release(held_db, start_db=state.release_db, beta=beta)
    reduction = np.concatenate([state.reduction, -np.expm1(released_db * (-1.0 / _DB))])
    gain = 1.0 - _moving_mean(reduction, size=lookahead + 1)
    np.minimum(gain, required[window - lookahead: window - lookahead + n], out=gain)  # float rounding only
    out = np.clip(audio[:, :n] * gain, -ceiling, ceiling)  # the clip: float rounding only (gain <= g_req)
    release_db = float(released_db[-1]) if n else state.release_db
    rests = release_db == 0.0 and required[n:].min() == 1.0 and not reduction[n:].any()
    return out, gain, LimiterState(audio[:, n:], required[n:], reduction[n:], release_db, rests)


def _release(held_db: np.ndarray, *, start_db: float, beta: float) -> np.ndarray:
    """``r[i] = max(held_db[i], beta * r[i - 1])`` with ``r[-1] = start_db``: the reduction (dB) decays
    exponentially, never below what is held. Vectorised: ``r[i] = beta**i max(beta r[-1], max_{m<=i}
    held_db[m] beta**-m)``, in pieces short enough for ``beta**-m`` to stay finite."""
    out = np.empty_like(held_db)
    piece = max(1, int(_RELEASE_SPAN / max(-math.log(beta), 1e-300)))
    previous = start_db
    for start in range(0, held_db.size, piece):
        part = held_db[start:start + piece]
        scale, inverse = _powers(beta, part.size)
        peak = np.maximum(part * inverse, beta * previous)
        np.maximum.accumulate(peak, out=peak)
        peak *= scale
        done = out[start:start + part.size]
        np.maximum(peak, part, out=done)  # the max: exact where held
        done[done < _NEGLIGIBLE_DB] = 0.0
        previous = done[-1]
    return out


@lru_cache(maxsize=16)
def _powers(beta: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``beta ** arange(size)`` and its inverse (read-only: shared between calls)."""
    scale = beta ** np.arange(size)
    inverse = 1.0 / scale
    scale.flags.writeable = inverse.flags.writeable = False
    return scale, inverse


def _running_min(values: np.ndarray, *, size: int) -> np.ndarray:
    """Minima of ``values`` over each run of ``size`` consecutive samples (``values.size - size + 1`` of
    them), van Herk / Gil-Werman: cut into blocks of ``size``, a run is the end of one block and the start of
    the next, so its minimum is a suffix minimum of the one and a prefix minimum of the other."""
    n = values.size - size + 1
    out = np.empty(max(n, 0))
    for start in range(0, n, size):
        head = values[start:start + size]
        suffix = np.minimum.accumulate(head[::-1])[::-1]  # min of head[i:]
        count = min(size, n - start)
        out[start:start + count] = suffix[:count]
        if count > 1:  # the runs from head[i] (i >= 1) reach i samples into the next block
            prefix = np.minimum.accumulate(values[start + size:start + size + count - 1])
            np.minimum(out[start + 1:start + count], prefix, out=out[start + 1:start + count])
    return out


def _moving_mean(values: np.ndarray, *, size: int) -> np.ndarray:
    """Means of ``values`` over each run of ``size`` consecutive samples (``values.size - size + 1`` of
    them). Runs of zeros give exactly 0 (no reduction: the gain is exactly 1)."""
    total = np.concatenate([[0.0], np.cumsum(values)])
    return (total[size:] - total[:-size]) / size
