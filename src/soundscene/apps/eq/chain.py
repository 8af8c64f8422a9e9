"""The crossfading filter cascade: one curve's biquads with their state, and fades between curves.

* **Crossfades.** A curve change runs the old and new chains side by side, mixed by a linear equal-gain
  ramp (weights sum to 1): both filter the same input, so their outputs are coherent and equal gain keeps
  the level steady where equal power would bulge by up to 3 dB mid-fade. The new chain is first warmed up
  on the last 0.2 s of input, so it starts settled rather than with a transient. A change asked for
  during a fade starts when that fade ends (only the latest such request is kept).
* **Headroom.** A chain's auto-gain normally removes the peak of its own curve. With loudness compensation
  on, it removes only the peak of the curve *without* the compensation (``headroom``): the compensation's
  bass boost stays a boost, and the gain stage after it (with its look-ahead peak control) keeps the output
  within full scale; auto-gain on the whole curve would instead lower the mids by the boost (up to 20 dB).
* scipy, not pedalboard: pedalboard is GPL-3.0 and soundscene is MIT; a biquad cascade is all that is
  needed, and ``sosfilt`` carries the filter state between blocks exactly.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.signal import sosfilt

from .curve import curve_sos, design_sos
from .presets import Curve

WARMUP_SECONDS = 0.2


@lru_cache(maxsize=256)
def _designed(curve: Curve, sample_rate: int) -> np.ndarray:
    """The cascade of ``curve`` without auto-gain (cached: loudness levels come back as the volume moves)."""
    return design_sos(curve.gains_db, sample_rate=sample_rate, preamp_db=curve.preamp_db, limit_db=curve.limit_db)


class _Chain:
    """One curve's filter cascade with its state (n_sections, channels, 2)."""

    def __init__(self, curve: Curve, sample_rate: int, channels: int, headroom: Curve | None = None):
        self.curve, self.headroom = curve, headroom
        if headroom is None:
            self.sos, self.auto_gain_db = curve_sos(curve, sample_rate=sample_rate)
        else:
            self.sos = _designed(curve, sample_rate).copy()
            self.auto_gain_db = curve_sos(headroom, sample_rate=sample_rate)[1]
            self.sos[0, :3] *= 10 ** (self.auto_gain_db / 20)
        self.zi = np.zeros((len(self.sos), channels, 2))

    @property
    def key(self) -> tuple[Curve, Curve | None]:
        return self.curve, self.headroom

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y, self.zi = sosfilt(self.sos, x, axis=-1, zi=self.zi)
        return y


class FadingCascade:
    """The curve in force, the one fading in and the one waiting; ``process`` filters (float64, unclipped)."""

    def __init__(self, curve: Curve, sample_rate: int, channels: int, crossfade_samples: int,
                 headroom: Curve | None = None):
        self.sample_rate, self.channels, self.crossfade_samples = sample_rate, channels, crossfade_samples
        self._chain = _Chain(curve, sample_rate, channels, headroom)
        self._incoming: _Chain | None = None
        self._fade_pos = 0
        self._pending: tuple[Curve, Curve | None] | None = None
        self.requests = 0  # counts the requests that changed what is asked for
        self._history = np.zeros((channels, int(round(WARMUP_SECONDS * sample_rate))))

    @property
    def requested(self) -> tuple[Curve, Curve | None]:
        """The latest (curve, headroom) asked for (in force, fading in, or waiting for a fade to end)."""
        return self._pending or (self._incoming or self._chain).key

    @property
    def auto_gain_db(self) -> float:
        return self._chain.auto_gain_db

    @property
    def sos(self) -> np.ndarray:
        return self._chain.sos.copy()

    def snapshot(self) -> tuple:
        """Everything :meth:`process` changes, copied, for :meth:`restore`."""
        chains = [(c, c.zi.copy()) for c in (self._chain, self._incoming) if c is not None]
        return chains, self._incoming is not None, self._fade_pos, self._pending, self._history.copy()

    def restore(self, state: tuple) -> None:
        chains, fading, self._fade_pos, self._pending, history = state
        for chain, zi in chains:
            chain.zi = zi.copy()
        self._chain, self._incoming = chains[0][0], (chains[1][0] if fading else None)
        self._history = history.copy()

    def request(self, curve: Curve, headroom: Curve | None = None) -> None:
        """Fade to ``curve``; asking again for what is already requested does nothing."""
        if (curve, headroom) != self.requested:
            self._pending = (curve, headroom)
            self.requests += 1

    def process(self, x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        pos, n = 0, x.shape[1]
        while pos < n:
            if self._incoming is None and self._pending is not None:
                self._start_fade()
            if self._incoming is None:
                stop = n
                out[:, pos:] = self._chain(x[:, pos:])
            else:
                stop = pos + min(n - pos, self.crossfade_samples - self._fade_pos)
                seg = x[:, pos:stop]
                w = (self._fade_pos + 1 + np.arange(stop - pos)) / (self.crossfade_samples + 1)
                out[:, pos:stop] = self._chain(seg) * (1 - w) + self._incoming(seg) * w
                self._fade_pos += stop - pos
                if self._fade_pos >= self.crossfade_samples:
                    self._chain, self._incoming = self._incoming, None
            self._remember(x[:, pos:stop])
            pos = stop
        return out

    def _start_fade(self) -> None:
        (curve, headroom), self._pending = self._pending, None
        if (curve, headroom) == self._chain.key:
            return
        chain = _Chain(curve, self.sample_rate, self.channels, headroom)
        chain(self._history)  # warm up: start from (nearly) the steady state for the recent input
        if self.crossfade_samples == 0:
            self._chain = chain
        else:
            self._incoming, self._fade_pos = chain, 0

    def _remember(self, x: np.ndarray) -> None:
        keep = self._history.shape[1]
        if x.shape[1] >= keep:
            self._history[:] = x[:, x.shape[1] - keep:]
        elif x.shape[1]:
            self._history[:, :-x.shape[1]] = self._history[:, x.shape[1]:]
            self._history[:, -x.shape[1]:] = x
