"""Loudness compensation from the normal equal-loudness-level contours of ISO 226:2023.

As music is played more quietly, bass (and the top octave) fade faster than the mids: the contours of
equal loudness are steeper at low loudness levels. Compensation applies, at each frequency, the difference
between the contour at the listening level and the contour at a reference level (the level the music was
meant to be heard at, default 80 phon), both taken relative to 1 kHz::

    compensation(f) = [L_p(f, L_N) - L_N] - [L_p(f, L_ref) - L_ref]        (0 dB at 1 kHz)

so that bass and treble keep their perceived balance with the mids. Above the reference nothing is applied.

The contour L_p(f, L_N) is ISO 226:2023 Formula (1) (clause 4.1)::

    L_p = (10 / a_f) lg[ (4e-10)^(0.3 - a_f) (10^(0.03 L_N) - 10^0.072) + 10^(a_f (T_f + L_U) / 10) ] - L_U

with a_f (exponent of loudness perception), L_U (magnitude of the linear transfer function normalised at
1 kHz) and T_f (threshold of hearing) from Table 1 of the standard at its 29 preferred third-octave
frequencies, 20 Hz .. 12.5 kHz (:data:`ISO226_2023_TABLE1`). The formula holds from 20 to 90 phon (80 phon
above 4 kHz); levels outside are clamped to 20..90 phon. Between the table's frequencies the compensation
is interpolated linearly over log frequency (the standard gives no interpolation), below 20 Hz and above
12.5 kHz it is held at the end value. Checks against the standard's published values (Annex B): 60 phon
at 100 Hz is 78.5 dB; at 1 kHz every contour passes through L_N.

Why a table here rather than a library: of the packages on the project's index, mosqito implements only
ISO 226:2003 (its 40-phon contour at 100 Hz is 62.1 dB SPL in 2003's Table 1 terms, 64.2 dB in 2023's),
and PyOctaveBand, acoustics and acoustic-toolbox have no equal-loudness contours; phonometry, which has
the 2023 edition, is not on the index. The 2023 revision changed Table 1 throughout (e.g. a_f at 100 Hz
0.367 -> 0.433, T_f at 20 Hz 78.5 -> 78.1 dB), so the 2003 code cannot be reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .curve import _MAX_CORRECTED_DB, BAND_Q, _section_db, _sections, band_centres
from .presets import BAND_CENTRES

# ISO 226:2023 Table 1: frequency (Hz) -> (a_f, L_U dB, T_f dB)
ISO226_2023_TABLE1: dict[float, tuple[float, float, float]] = {
    20.0: (0.635, -31.5, 78.1), 25.0: (0.602, -27.2, 68.7), 31.5: (0.569, -23.1, 59.5),
    40.0: (0.537, -19.3, 51.1), 50.0: (0.509, -16.1, 44.0), 63.0: (0.482, -13.1, 37.5),
    80.0: (0.456, -10.4, 31.5), 100.0: (0.433, -8.2, 26.5), 125.0: (0.412, -6.3, 22.1),
    160.0: (0.391, -4.6, 17.9), 200.0: (0.373, -3.2, 14.4), 250.0: (0.357, -2.1, 11.4),
    315.0: (0.343, -1.2, 8.6), 400.0: (0.330, -0.5, 6.2), 500.0: (0.320, 0.0, 4.4),
    630.0: (0.311, 0.4, 3.0), 800.0: (0.303, 0.5, 2.2), 1000.0: (0.300, 0.0, 2.4),
    1250.0: (0.295, -2.7, 3.5), 1600.0: (0.292, -4.2, 1.7), 2000.0: (0.290, -1.2, -1.3),
    2500.0: (0.290, 1.4, -4.2), 3150.0: (0.289, 2.3, -6.0), 4000.0: (0.289, 1.0, -5.4),
    5000.0: (0.289, -2.3, -1.5), 6300.0: (0.293, -7.2, 6.0), 8000.0: (0.303, -11.2, 12.6),
    10000.0: (0.323, -10.9, 13.9), 12500.0: (0.354, -3.5, 12.3),
}
PHON_RANGE = (20.0, 90.0)   # where Formula (1) holds (80 phon above 4 kHz)
REFERENCE_PHON = 80.0       # the default reference listening level
PHON_STEP = 1.0             # the listening level moves this much before the compensation is re-designed
MAX_BOOST_DB = 20.0         # the compensation curve is capped here (20 phon at 25 Hz would ask for 29 dB)

_F = np.array(sorted(ISO226_2023_TABLE1))
_A, _LU, _TF = (np.array([ISO226_2023_TABLE1[f][k] for f in _F]) for k in range(3))


def contour_spl(phon: float) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies (29,) Hz, L_p (29,) dB SPL) of the equal-loudness contour at ``phon`` (Formula 1).
    ``phon`` is clamped to 20..90."""
    ln = float(np.clip(phon, *PHON_RANGE))
    term = (4e-10) ** (0.3 - _A) * (10 ** (0.03 * ln) - 10 ** 0.072) + 10 ** (_A * (_TF + _LU) / 10)
    return _F.copy(), 10 / _A * np.log10(term) - _LU


def loudness_level(spl_db: float, frequency: float) -> float:
    """The loudness level (phon) of a pure tone at one of the table's frequencies (Formula 2)."""
    a, lu, tf = ISO226_2023_TABLE1[float(frequency)]
    b = (10 ** (a * (spl_db + lu) / 10) - 10 ** (a * (tf + lu) / 10)) / (4e-10) ** (0.3 - a) + 10 ** 0.072
    return float(100 / 3 * np.log10(b))


def compensation_db(phon: float, freqs: Sequence[float] | np.ndarray, *,
                    reference_phon: float = REFERENCE_PHON) -> np.ndarray:
    """The loudness compensation (dB, 0 at 1 kHz) at ``freqs`` for listening at ``phon`` instead of
    ``reference_phon``: zero at or above the reference, else the contour difference (module docstring)."""
    freqs = np.asarray(freqs, dtype=float)
    if not phon < reference_phon:
        return np.zeros(freqs.shape)
    _, low = contour_spl(phon)
    _, ref = contour_spl(reference_phon)
    diff = (low - float(np.clip(phon, *PHON_RANGE))) - (ref - float(np.clip(reference_phon, *PHON_RANGE)))
    return np.interp(np.log(np.clip(freqs, _F[0], _F[-1])), np.log(_F), diff)


def band_targets(phon: float, *, sample_rate: int, reference_phon: float = REFERENCE_PHON) -> np.ndarray:
    """The compensation as band gains (10,) to add to a curve (:func:`~.curve.combine`): the response at the
    band centres of the cascade that best fits (least squares, on a 1/24-octave grid from 31.5 Hz to the top
    kept centre) the compensation curve, capped at :data:`MAX_BOOST_DB`. Fitting the whole curve rather than
    its values at the centres makes the cascade follow it between the centres too (at 100 Hz, 40 phon:
    within 0.2 dB, against 0.8 dB off when only the centres are hit). Levels are rounded to 0.1 phon and
    the results cached, so a running equalizer asks for them freely."""
    return _band_targets(round(float(phon), 1), int(sample_rate), round(float(reference_phon), 1)).copy()


@lru_cache(maxsize=512)
def _band_targets(phon: float, sample_rate: int, reference_phon: float) -> np.ndarray:
    out = np.zeros(len(BAND_CENTRES))
    if not phon < reference_phon:
        return out
    fc = band_centres(sample_rate)
    grid = np.geomspace(31.5, fc[-1], int(24 * np.log2(fc[-1] / 31.5)) + 1)
    want = np.minimum(compensation_db(phon, grid, reference_phon=reference_phon), MAX_BOOST_DB)
    unit = _section_db(_sections(np.ones(len(fc)), sample_rate, BAND_Q), grid, sample_rate).T
    gains = np.zeros(len(fc))
    pinv = np.linalg.pinv(unit)
    for _ in range(12):  # Gauss-Newton with the unit-gain responses as the Jacobian (dB scale ~ linearly)
        error = want - _section_db(_sections(gains, sample_rate, BAND_Q), grid, sample_rate).sum(0)
        step = pinv @ error
        gains = np.clip(gains + step, -_MAX_CORRECTED_DB, _MAX_CORRECTED_DB)
        if np.abs(step).max() < 0.01:
            break
    out[:len(fc)] = _section_db(_sections(gains, sample_rate, BAND_Q), fc, sample_rate).sum(0)
    return out


class ListeningLevel:
    """The listening level (phon) the compensation is designed for, moved in steps.

    measured: the output's A-weighted level at the ear is known (playback calibration): the level is that;
    else it is the reference plus the volume (0 dB volume = the reference level). It changes (at
    0.5-phon resolution, never above the reference) when it has moved by :data:`PHON_STEP` or more, so the
    cascade is re-designed and crossfaded now and then, not every frame.
    """

    def __init__(self, reference_phon: float, *, measured: bool):
        self.reference_phon, self.measured = reference_phon, measured
        self.phon: float | None = None  # None: no compensation designed yet

    def update(self, *, level_db: float | None, volume_db: float) -> bool:
        """The level for this frame (``level_db``: the output's level at the ear, None in silence or when
        not measured); True when the compensation must be re-designed."""
        if self.measured:
            if level_db is None:
                return False
            phon = level_db
        else:
            phon = self.reference_phon + volume_db
        if self.phon is None and phon >= self.reference_phon:
            return False
        if self.phon is not None and abs(phon - self.phon) < PHON_STEP:
            return False
        self.phon = min(round(phon * 2) / 2, self.reference_phon)
        return True
