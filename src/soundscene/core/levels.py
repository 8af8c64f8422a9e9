"""Sound levels in the units noise rules are written in, on PyOctaveBand (the library now called phonometry).

A :class:`LevelMeter` takes a recording's audio as recorded -- its own sample rate and full band width, mixed to
mono as the classifier mixes it, before any resampling -- in blocks of any size, and measures:

* ``LAeq`` and ``LCeq``: A- and C-weighted equivalent levels (IEC 61672-1 weighting filters from
  :class:`pyoctaveband.WeightingFilter`: A runs block to block, C weights the ticks' spectra as the bands do;
  within the class 1 tolerances up to
  20 kHz at 44.1/48 kHz and up to 6.3 kHz at 22.05 kHz, where the bilinear design falls off towards Nyquist);
* ``LAFmax``, ``LAFmin``: the extremes of the A-weighted, F (125 ms) time-weighted level
  (:class:`pyoctaveband.TimeWeighting`); ``LA10``, ``LA50``, ``LA90``: the levels it exceeds 10, 50 and 90 % of
  the time, from its value every 10 ms.  The first 0.75 s of a stream (six time constants, while the
  detector settles from rest to within 0.01 dB) is left out of the F-weighted statistics (PyOctaveBand's
  ``ln_levels`` leaves out two);
* ``bands``: third-octave band Leq (IEC 61260-1 centre frequencies) from 25 Hz up to the highest band whose
  upper edge lies below the input's Nyquist frequency.

**How the band levels are computed, and why.**  The audio is cut into ticks of :data:`TICK_SECONDS` on a fixed
grid of samples.  Each tick's power spectrum is weighted by each band filter's squared magnitude response --
the Butterworth filters PyOctaveBand designs to IEC 61260-1, each at the rate it designs it for, averaged over
every FFT bin -- and summed (the C-weighted energy likewise, from the C weighting's response).  This is the
energy of the filters' output (Parseval), without running 31 band-pass filters over every sample: PyOctaveBand's block-wise (stateful) filter bank cannot decimate, and at
the full rate it costs more than the classifier itself (``benchmarks/bench_levels.py`` prints both).  The
skirts of the lowest bands are as selective as the ticks' 4-Hz bins allow.

**Window, interval and file levels** are combined from ticks: a window's levels come from the ticks that lie
within it (for windows on the default grid, exactly its samples), a recording's and a sensor's interval levels
from all ticks since the start (percentiles from a 0.05-dB histogram, so memory does not grow with length).
Tick boundaries depend only on sample positions, so levels do not depend on how the audio was cut into
blocks.

**Calibration.**  Without it, levels are dB relative to full scale (an RMS of 1.0 is 0 dB: a full-scale sine
is -3 dB) and say so (``calibrated: false``, ``reference: "dBFS"``).  ``calibration_db`` is the level in dB
SPL that a full-scale RMS produces at the microphone: levels become dB SPL re 20 uPa.  :func:`calibration_offset`
finds it from a recording of an acoustic calibrator.  Digital silence has no level: ``None``, never -inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import AudioError

TICK_SECONDS = 0.25  # the grid windows and intervals are built from (and the band spectrum's frame: 4-Hz bins)
SAMPLE_SECONDS = 0.01  # the F-weighted level is sampled every 10 ms for the statistical levels
SETTLE_SECONDS = 0.75  # 6 x the F time constant (the detector within 0.01 dB): left out of the F statistics
LOWEST_BAND_HZ = 25.0
HISTOGRAM_STEP_DB = 0.05
_HISTOGRAM_FLOOR_DB = -400.0  # 10 log10 of the smallest mean square a float64 holds is about -3080; clamp here
_HISTOGRAM_BINS = int(800 / HISTOGRAM_STEP_DB)
NAMES = ("LAeq", "LAFmax", "LAFmin", "LA10", "LA50", "LA90", "LCeq")
PERCENTILES = {"LA10": 10, "LA50": 50, "LA90": 90}


def band_centres(sample_rate: int) -> list[float]:
    """Nominal third-octave centres (Hz) from 25 Hz to the highest band whose upper edge is below Nyquist."""
    from pyoctaveband import normalizedfreq

    nominal = [f for f in normalizedfreq(3) if f >= LOWEST_BAND_HZ]
    return [f for f in nominal if _exact_centre(f) * 2 ** (1 / 6) < sample_rate / 2]


def band_label(centre: float) -> str:
    """The key of a band in records: ``"25"``, ``"31.5"``, ``"1000"``, ``"12500"``."""
    return f"{centre:g}" if centre < 1e5 else str(int(centre))


def _exact_centre(nominal: float) -> float:
    """The base-10 exact mid-band frequency (IEC 61260-1) nearest a nominal one."""
    x = round(10 * math.log10(nominal / 1000) / 1.0)  # band number relative to 1 kHz, G = 10^(3/10)
    return 1000.0 * 10 ** (x / 10)


@dataclass
class Levels:
    """Levels over a span of audio, in dB (``None`` where there was no sound to measure)."""

    calibrated: bool
    LAeq: float | None = None
    LAFmax: float | None = None
    LAFmin: float | None = None
    LA10: float | None = None
    LA50: float | None = None
    LA90: float | None = None
    LCeq: float | None = None
    bands: dict[str, float | None] = field(default_factory=dict)
    seconds: float = 0.0

    def to_record(self) -> dict[str, Any]:
        """The ``levels`` record (rounded to 0.1 dB, ``None`` for no level)."""
        from .records import make

        return make("levels", calibrated=self.calibrated, reference="dB SPL" if self.calibrated else "dBFS",
                    **{name: getattr(self, name) for name in NAMES}, bands=self.bands)


class _Sum:
    """Energies (sums of squares), sample counts and F-weighted statistics of one or more ticks."""

    def __init__(self, n_bands: int, *, histogram: bool):
        self.samples = 0
        self.a = self.c = 0.0
        self.bands = np.zeros(n_bands)
        self.fmax, self.fmin = -math.inf, math.inf  # mean squares
        self.f_samples: list[np.ndarray] = []  # the 10-ms F-weighted mean squares (windows: exact percentiles)
        self.histogram = np.zeros(_HISTOGRAM_BINS, np.int64) if histogram else None

    def add(self, tick: "_Tick") -> None:
        self.samples += tick.samples
        self.a += tick.a
        self.c += tick.c
        self.bands += tick.bands
        if tick.f_values.size:
            self.fmax, self.fmin = max(self.fmax, tick.fmax), min(self.fmin, tick.fmin)
            if self.histogram is None:
                self.f_samples.append(tick.f_values)
            else:
                np.add.at(self.histogram, tick.bins, 1)

    def levels(self, offset_db: float | None, labels: list[str]) -> Levels:
        gain = 0.0 if offset_db is None else offset_db
        n = max(self.samples, 1)
        out = Levels(calibrated=offset_db is not None, seconds=0.0)
        out.LAeq, out.LCeq = _db(self.a / n, gain), _db(self.c / n, gain)
        if math.isfinite(self.fmax):
            out.LAFmax, out.LAFmin = _db(self.fmax, gain), _db(self.fmin, gain)
            for name, n_exceeded in PERCENTILES.items():
                setattr(out, name, self._percentile(100 - n_exceeded, gain))
        out.bands = {label: _db(e / n, gain) for label, e in zip(labels, self.bands)}
        return out

    def _percentile(self, q: float, gain: float) -> float | None:
        if self.histogram is None:
            values = np.concatenate(self.f_samples)
            return _db(float(np.percentile(values, q, method="inverted_cdf")), gain)
        counts = np.cumsum(self.histogram)
        k = int(np.searchsorted(counts, q / 100 * counts[-1]))
        if k == 0 and self.histogram[0]:
            return None  # digital silence for at least that share of the time
        return _HISTOGRAM_FLOOR_DB + (k + 0.5) * HISTOGRAM_STEP_DB + gain


def _histogram_bins(mean_squares: np.ndarray) -> np.ndarray:
    """The histogram bin of each F-weighted value (bin 0: digital silence, which has no level)."""
    with np.errstate(divide="ignore"):
        db = 10 * np.log10(mean_squares)
    db[~np.isfinite(db)] = _HISTOGRAM_FLOOR_DB
    return np.clip(((db - _HISTOGRAM_FLOOR_DB) / HISTOGRAM_STEP_DB).astype(np.int64), 0, _HISTOGRAM_BINS - 1)


def _db(mean_square: float, gain: float) -> float | None:
    return 10 * math.log10(mean_square) + gain if mean_square > 0 and math.isfinite(mean_square) else None


@dataclass
class _Tick:
    start: int  # the stream position (input frames) of its first sample
    samples: int
    a: float
    c: float
    bands: np.ndarray
    fmax: float
    fmin: float
    f_values: np.ndarray
    bins: np.ndarray  # the f_values' histogram bins


class LevelMeter:
    """A sound level meter fed block by block (see the module docstring).

    sample_rate: of the audio as recorded; calibration_db: dB SPL of a full-scale RMS (None: levels in dBFS);
    keep_seconds: how much of the recent past :meth:`levels_between` can still be asked about; origin: the
    stream position (input frames) of the first sample pushed, for a part of a longer recording (its ticks stay
    on the recording's grid; times given to :meth:`levels_between` are the recording's).
    """

    def __init__(self, sample_rate: int, *, calibration_db: float | None = None, keep_seconds: float = 60.0,
                 origin: int = 0):
        from pyoctaveband import TimeWeighting, WeightingFilter

        self.sample_rate = int(sample_rate)
        self.calibration_db = None if calibration_db is None else float(calibration_db)
        self.tick = max(1, int(round(TICK_SECONDS * self.sample_rate)))
        self.step = max(1, int(round(SAMPLE_SECONDS * self.sample_rate)))
        self._a = WeightingFilter(self.sample_rate, "A", stateful=True)
        self._f = TimeWeighting(self.sample_rate, "fast")
        self.labels, self._weights = band_weights(self.sample_rate, self.tick)
        self._settle = int(round(SETTLE_SECONDS * self.sample_rate))
        self._keep = max(2, int(math.ceil(keep_seconds / TICK_SECONDS)) + 2)
        self._pending: list[np.ndarray] = []  # samples of the open tick, not yet filtered
        self._open = 0
        self.origin = int(origin)
        self.consumed = 0  # samples measured since the origin
        self.ticks: list[_Tick] = []
        self._total = _Sum(len(self.labels), histogram=True)
        self._interval = _Sum(len(self.labels), histogram=True)
        self._finished = False

    def push(self, mono: np.ndarray) -> None:
        """Measure the next ``(n,)`` samples (float, full scale 1.0).  Samples wait until a tick is complete and
        are filtered a tick or more at a time (the filters carry their state, so this changes nothing but the
        number of calls: live input comes in 0.1-s blocks)."""
        x = np.asarray(mono, dtype=np.float64).reshape(-1)
        if not x.size:
            return
        self._pending.append(x)
        self._open += x.size
        position = self.origin + self.consumed
        if (position + self._open) // self.tick > position // self.tick:  # a tick of the grid is complete
            self._measure(whole_ticks=True)

    def push_channels(self, block: np.ndarray) -> None:
        """Measure ``(channels, n)`` audio mixed to mono as the classifier mixes it (the mean of the channels; of a
        contiguous copy, which is several times faster than of the transposed view a decoder gives)."""
        self.push(np.ascontiguousarray(block).mean(axis=0))

    def _measure(self, *, whole_ticks: bool) -> None:
        """Filter the waiting samples (up to the last complete tick, or all at the end) and close their ticks."""
        x = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        position = self.origin + self.consumed
        upto = (position + x.size) // self.tick * self.tick if whole_ticks else position + x.size
        rest = x[upto - position:]
        x = x[:upto - position]
        a = self._a.filter(x)
        rows = (x, a, self._f.process(a))
        edges = [position, *range((position // self.tick + 1) * self.tick, upto, self.tick), upto]
        for first, last in zip(edges, edges[1:]):
            self._close_tick(first, *(row[first - position:last - position] for row in rows))
        self._pending, self._open = ([rest.copy()], rest.size) if rest.size else ([], 0)

    def finish(self) -> None:
        """End of the audio: the last, shorter tick counts too."""
        if self._open and not self._finished:
            self._measure(whole_ticks=False)
        self._finished = True

    def levels_between(self, start_seconds: float, end_seconds: float) -> Levels:
        """Levels of the ticks within ``[start, end)`` seconds (at least the tick nearest its middle)."""
        first, last = start_seconds * self.sample_rate, end_seconds * self.sample_rate
        inside = [t for t in self.ticks if t.start >= first - 1e-6 and t.start + t.samples <= last + 1e-6]
        if not inside:
            middle = (first + last) / 2
            inside = [min(self.ticks, key=lambda t: abs(t.start + t.samples / 2 - middle))] if self.ticks else []
        total = _Sum(len(self.labels), histogram=False)
        for t in inside:
            total.add(t)
        out = total.levels(self.calibration_db, self.labels)
        out.seconds = total.samples / self.sample_rate
        return out

    def total(self) -> Levels:
        """Levels of everything measured so far."""
        out = self._total.levels(self.calibration_db, self.labels)
        out.seconds = self._total.samples / self.sample_rate
        return out

    @property
    def interval_seconds(self) -> float:
        """Audio measured in the current interval (complete ticks)."""
        return self._interval.samples / self.sample_rate

    def take_interval(self) -> Levels:
        """Levels since the last call (or the start), and start a new interval (a sensor's ``--level-interval``)."""
        out = self._interval.levels(self.calibration_db, self.labels)
        out.seconds = self._interval.samples / self.sample_rate
        self._interval = _Sum(len(self.labels), histogram=True)
        return out

    def _close_tick(self, first_sample: int, raw: np.ndarray, a: np.ndarray, envelope: np.ndarray) -> None:
        settle = min(max(0, self.origin + self._settle - first_sample), raw.size)  # the detector settles first
        sampled = (self.step - 1 - first_sample) % self.step  # every step-th sample of the stream, from step - 1
        if sampled < settle:
            sampled += -(-(settle - sampled) // self.step) * self.step
        # a shorter tick (a recording's last, a span's first) is zero-padded to the tick: Parseval holds as well,
        # and one set of weights per rate serves (not one per length, which would pile up over many files)
        spectrum = np.fft.rfft(raw, n=self.tick)
        energies = self._weights @ (spectrum.real ** 2 + spectrum.imag ** 2) / self.tick  # sums of squares
        settled = envelope[settle:]
        f_values = envelope[sampled::self.step].copy()
        tick = _Tick(first_sample, raw.size, float(np.square(a).sum()), float(energies[-1]), energies[:-1],
                     float(settled.max()) if settled.size else -math.inf,
                     float(settled.min()) if settled.size else math.inf, f_values, _histogram_bins(f_values))
        self.ticks.append(tick)
        del self.ticks[:-self._keep]
        self._total.add(tick)
        self._interval.add(tick)
        self.consumed += raw.size


_WEIGHTS: dict[tuple[int, int], tuple[list[str], np.ndarray]] = {}


def band_weights(sample_rate: int, n_fft: int) -> tuple[list[str], np.ndarray]:
    """Band labels and the ``(bands + 1, n_fft // 2 + 1)`` weights that turn a frame's |rfft|^2 into band
    energies times ``n_fft`` (the last row: the C-weighted energy): each band filter's squared magnitude
    response (PyOctaveBand's IEC 61260-1 design at the rate it designs it for; its IEC 61672-1 C weighting)
    averaged over each bin, doubled for the bins that stand for two frequencies."""
    key = (int(sample_rate), int(n_fft))
    if key not in _WEIGHTS:
        _WEIGHTS[key] = _design_weights(*key)
    return _WEIGHTS[key]


def _design_weights(sample_rate: int, n_fft: int) -> tuple[list[str], np.ndarray]:
    from pyoctaveband import WeightingFilter
    from scipy.signal import sosfreqz

    centres = band_centres(sample_rate)
    labels = [band_label(c) for c in centres]
    bins = n_fft // 2 + 1
    oversample = 8  # response points per bin, averaged: the bin's share of the band
    grid = (np.arange(bins * oversample) - (oversample - 1) / 2) * sample_rate / n_fft / oversample
    grid = np.clip(grid, 0, sample_rate / 2)
    _, h = sosfreqz(WeightingFilter(sample_rate, "C", stateful=True).sos, worN=grid, fs=sample_rate)
    c_row = (np.abs(h) ** 2).reshape(1, bins, oversample).mean(axis=2)
    weights = np.vstack([_band_rows(sample_rate, centres, grid, bins, oversample), c_row])
    weights[:, 1:bins - 1 + (n_fft % 2)] *= 2  # one-sided spectrum
    return labels, weights


def _band_rows(sample_rate, centres, grid, bins, oversample) -> np.ndarray:
    from pyoctaveband import OctaveFilterBank
    from scipy.signal import sosfreqz

    if not centres:
        return np.zeros((0, bins))
    bank = OctaveFilterBank(sample_rate, fraction=3, limits=[LOWEST_BAND_HZ, _exact_centre(centres[-1])])
    index = [int(np.argmin(np.abs(np.log(np.asarray(bank.freq) / _exact_centre(c))))) for c in centres]
    weights = np.zeros((len(centres), bins))
    for b, k in enumerate(index):
        rate = sample_rate / bank.factor[k]
        response = np.zeros_like(grid)
        below = grid < rate / 2
        _, h = sosfreqz(bank.sos[k], worN=grid[below], fs=rate)
        response[below] = np.abs(h) ** 2
        weights[b] = response.reshape(bins, oversample).mean(axis=1)
    return weights


# ---- calibration --------------------------------------------------------------------------------------------

CALIBRATION_FREQUENCY_TOLERANCE = 0.05  # the tone within 5 % of the calibrator's stated frequency
CALIBRATION_STEADINESS_DB = 0.5  # its 0.25-s levels within +-0.5 dB of their mean
CALIBRATION_PURITY = 0.9  # at least 90 % of the energy in the tone's third-octave band


def calibration_offset(mono: np.ndarray, sample_rate: int, *, reference_db: float = 94.0,
                       frequency: float = 1000.0, name: str = "the recording") -> float:
    """The ``calibration_db`` that makes a calibrator's recording read ``reference_db`` dB SPL.

    Refuses (AudioError, one line) a recording that is not a steady tone near ``frequency``: shorter than
    1 s, silent, with its strongest frequency off by more than 5 %, less than 90 % of its energy in that
    tone's third-octave band, or a level that varies by more than 0.5 dB over 0.25-s stretches."""
    from pyoctaveband import calculate_sensitivity

    x = np.asarray(mono, dtype=np.float64).reshape(-1)
    if x.size < sample_rate:
        raise AudioError(f"{name}: {x.size / sample_rate:.2f} s is too short to calibrate (at least 1 s of the tone)")
    x = x[int(0.1 * x.size):]  # the start, while the calibrator is put on, is left out
    x = x - x.mean()
    if not np.any(x):
        raise AudioError(f"{name}: is silent; record the calibrator's tone")
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    peak = float(np.argmax(spectrum[1:]) + 1) * sample_rate / x.size
    if abs(peak - frequency) > CALIBRATION_FREQUENCY_TOLERANCE * frequency:
        raise AudioError(f"{name}: its strongest frequency is {peak:.0f} Hz, not a calibrator's {frequency:g} Hz "
                         "tone (give --frequency if the calibrator uses another)")
    freqs = np.fft.rfftfreq(x.size, 1 / sample_rate)
    band = (freqs > peak * 2 ** (-1 / 6)) & (freqs < peak * 2 ** (1 / 6))
    purity = float(spectrum[band].sum() / spectrum.sum())
    if purity < CALIBRATION_PURITY:
        raise AudioError(f"{name}: only {purity:.0%} of its energy is in the {peak:.0f}-Hz tone; record the "
                         "calibrator alone, in a quiet place")
    tick = int(TICK_SECONDS * sample_rate)
    parts = 10 * np.log10(np.mean(x[: x.size // tick * tick].reshape(-1, tick) ** 2, axis=1) + 1e-300)
    if parts.size and float(np.max(np.abs(parts - parts.mean()))) > CALIBRATION_STEADINESS_DB:
        raise AudioError(f"{name}: its level varies by {float(np.ptp(parts)):.1f} dB; a calibrator's tone is "
                         "steady (was it taken off or moved during the recording?)")
    pascal_per_unit = calculate_sensitivity(x, target_spl=reference_db)
    return 20 * math.log10(pascal_per_unit / 2e-5)


CALIBRATION_MAX_SECONDS = 60.0  # a calibrator's recording is read up to this long


def calibrate_file(path, *, reference_db: float = 94.0, frequency: float = 1000.0) -> float:
    """:func:`calibration_offset` of a recording file (its first minute, mixed to mono as inference mixes it)."""
    from .audio import audio_info, check_length, check_sample_rate, read_blocks

    if not 0 < reference_db < 200 or not 10 <= frequency <= 20000:  # also refuses nan
        raise AudioError(f"--reference-db {reference_db:g} must be in (0, 200) dB SPL and --frequency "
                         f"{frequency:g} in 10..20000 Hz")
    info = audio_info(path)
    check_length(info)
    check_sample_rate(info.sample_rate, f"{path}: sample rate")
    wanted, parts = int(CALIBRATION_MAX_SECONDS * info.sample_rate), []
    for block in read_blocks(info):
        parts.append(block.mean(axis=0))
        wanted -= block.shape[-1]
        if wanted <= 0:
            break
    mono = np.concatenate(parts)[: int(CALIBRATION_MAX_SECONDS * info.sample_rate)]
    return calibration_offset(mono, info.sample_rate, reference_db=reference_db, frequency=frequency,
                              name=str(path))
