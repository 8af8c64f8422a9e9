"""Sound levels in the units noise rules are written in, on PyOctaveBand (the library now called phonometry).

A :class:`LevelMeter` takes a recording's audio as recorded -- its own sample rate and full band width, mixed to
mono as the classifier mixes it, before any resampling -- in blocks of any size, and measures:

* ``LAeq`` and ``LCeq``: A- and C-weighted equivalent levels (IEC 61672-1 weighting filters from
  :class:`pyoctaveband.WeightingFilter`: A filters every sample, as its stateful filter does block to block,
  computed from the ticks' spectra (see below); C weights the ticks' spectra as the bands do; within the class 1
  tolerances up to
  20 kHz at 44.1/48 kHz and up to 6.3 kHz at 22.05 kHz, where the bilinear design falls off towards Nyquist);
* ``LAFmax``, ``LAFmin``: the extremes of the A-weighted, F (125 ms) time-weighted level
  (:class:`pyoctaveband.TimeWeighting`), taken every 1/3 ms at most (see :class:`_FDetector`: at most 0.012 dB
  inside the extremes of its every sample); ``LA10``, ``LA50``, ``LA90``: the levels it exceeds 10, 50 and 90 % of
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

**What it costs, and how that is kept low.**  A sensor meters every sample it hears, so the meter is written for
speed (``benchmarks/bench_levels.py`` prints its cost in the live path beside the target).  Complete ticks wait
in a buffer and are measured up to :data:`BATCH_TICKS` at a time, or when levels are asked for: their FFTs run
vectorised over the ticks (two a tick, about half the meter's time), the A weighting is computed from their
spectra (:class:`_AWeighting`: scipy's ``sosfilt`` output to float rounding, for two thirds of its cost) and the
F detector from sums over spans of 1/3 ms (:class:`_FDetector`), in arrays allocated once.  Only a tick that
does not start on the grid (a meter's first, with an ``origin`` off it) or ends short (a recording's last) is
filtered sample by sample.  The values depend neither on how the audio was cut into blocks nor on when levels
were asked for.

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
GRID_SECONDS = 1 / 3000  # the F-weighted level's extremes are looked for at most this far apart (_FDetector)
BATCH_TICKS = 20  # complete ticks measured together at most (5 s: the buffer a meter holds)
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


@dataclass
class _Tick:
    """One tick's measurements (what :attr:`LevelMeter.ticks` lists)."""

    start: int  # the stream position (input frames) of its first sample
    samples: int
    a: float  # A-weighted energy (sum of squares)
    c: float  # C-weighted energy
    bands: np.ndarray  # band energies
    fmax: float  # the extremes of the settled F-weighted mean square (-inf, inf: none settled)
    fmin: float
    f_values: np.ndarray  # its settled 10-ms values


@dataclass
class _Ticks:
    """The measurements of ticks, one row (or value) each: what is summed, and what a meter keeps."""

    start: np.ndarray
    samples: np.ndarray
    a: np.ndarray
    c: np.ndarray
    bands: np.ndarray  # (ticks, bands)
    fmax: np.ndarray
    fmin: np.ndarray
    values: np.ndarray  # (ticks, most 10-ms values in a tick): the settled 10-ms values, the first count of a row
    count: np.ndarray

    @classmethod
    def empty(cls, ticks: int, n_bands: int, n_values: int) -> "_Ticks":
        return cls(np.zeros(ticks, np.int64), np.zeros(ticks, np.int64), np.zeros(ticks), np.zeros(ticks),
                   np.zeros((ticks, n_bands)), np.full(ticks, -math.inf), np.full(ticks, math.inf),
                   np.zeros((ticks, n_values)), np.zeros(ticks, np.int64))

    def take(self, rows) -> "_Ticks":
        return _Ticks(*(getattr(self, f)[rows] for f in _TICK_FIELDS))

    def put(self, rows, other: "_Ticks") -> None:
        for name in _TICK_FIELDS:
            getattr(self, name)[rows] = getattr(other, name)

    def settled_values(self) -> np.ndarray:
        """All the 10-ms values, tick by tick."""
        return self.values[np.arange(self.values.shape[1]) < self.count[:, None]]


_TICK_FIELDS = ("start", "samples", "a", "c", "bands", "fmax", "fmin", "values", "count")


@dataclass
class _Summary:
    samples: int
    a: float
    c: float
    bands: np.ndarray
    fmax: float
    fmin: float
    values: np.ndarray
    bins: np.ndarray | None


def _summary(ticks: _Ticks, *, bins: bool) -> _Summary:
    """What ticks add to a sum: their samples, energies, the extremes and 10-ms values of the F-weighted level
    (and these values' histogram bins, when asked for).  A tick without a settled 10-ms value adds no F
    statistics."""
    heard = ticks.count > 0
    values = ticks.settled_values()
    return _Summary(int(ticks.samples.sum()), float(ticks.a.sum()), float(ticks.c.sum()), ticks.bands.sum(axis=0),
                    float(ticks.fmax[heard].max(initial=-math.inf)), float(ticks.fmin[heard].min(initial=math.inf)),
                    values, _histogram_bins(values) if bins else None)


class _Sum:
    """Energies (sums of squares), sample counts and F-weighted statistics of one or more ticks."""

    def __init__(self, n_bands: int, *, histogram: bool):
        self.samples = 0
        self.a = self.c = 0.0
        self.bands = np.zeros(n_bands)
        self.fmax, self.fmin = -math.inf, math.inf  # mean squares
        self.f_samples: list[np.ndarray] = []  # the 10-ms F-weighted mean squares (windows: exact percentiles)
        self.histogram = np.zeros(_HISTOGRAM_BINS, np.int64) if histogram else None

    def add(self, summary: _Summary) -> None:
        """Add ticks (all at once: a window's, or a batch's to the running totals), as :func:`_summary` sums them."""
        self.samples += summary.samples
        self.a += summary.a
        self.c += summary.c
        self.bands += summary.bands
        if summary.values.size:
            self.fmax, self.fmin = max(self.fmax, summary.fmax), min(self.fmin, summary.fmin)
            if self.histogram is None:
                self.f_samples.append(summary.values)
            else:
                np.add.at(self.histogram, summary.bins, 1)

    def levels(self, offset_db: float | None, labels: list[str]) -> Levels:
        gain = 0.0 if offset_db is None else offset_db
        n = max(self.samples, 1)
        out = Levels(calibrated=offset_db is not None, seconds=0.0)
        out.LAeq, out.LCeq = _db(self.a / n, gain), _db(self.c / n, gain)
        if math.isfinite(self.fmax):
            out.LAFmax, out.LAFmin = _db(self.fmax, gain), _db(self.fmin, gain)
            for name, value in zip(PERCENTILES, self._percentiles(gain)):
                setattr(out, name, value)
        out.bands = {label: _db(e / n, gain) for label, e in zip(labels, self.bands.tolist())}
        return out

    def _percentiles(self, gain: float) -> list[float | None]:
        """The levels exceeded 10, 50 and 90 % of the time (the order of PERCENTILES)."""
        shares = [100 - exceeded for exceeded in PERCENTILES.values()]
        if self.histogram is None:
            values = np.percentile(np.concatenate(self.f_samples), shares, method="inverted_cdf")
            return [_db(float(v), gain) for v in values]
        counts = np.cumsum(self.histogram)
        out = []
        for q in shares:
            k = int(np.searchsorted(counts, q / 100 * counts[-1]))
            silent = k == 0 and self.histogram[0]  # digital silence for at least that share of the time
            out.append(None if silent else _HISTOGRAM_FLOOR_DB + (k + 0.5) * HISTOGRAM_STEP_DB + gain)
        return out


def _histogram_bins(mean_squares: np.ndarray) -> np.ndarray:
    """The histogram bin of each F-weighted value (bin 0: digital silence, which has no level)."""
    with np.errstate(divide="ignore"):
        db = 10 * np.log10(mean_squares)
    db[~np.isfinite(db)] = _HISTOGRAM_FLOOR_DB
    return np.clip(((db - _HISTOGRAM_FLOOR_DB) / HISTOGRAM_STEP_DB).astype(np.int64), 0, _HISTOGRAM_BINS - 1)


def _db(mean_square: float, gain: float) -> float | None:
    return 10 * math.log10(mean_square) + gain if mean_square > 0 and math.isfinite(mean_square) else None


class LevelMeter:
    """A sound level meter fed block by block (see the module docstring).

    sample_rate: of the audio as recorded; calibration_db: dB SPL of a full-scale RMS (None: levels in dBFS);
    keep_seconds: how much of the recent past :meth:`levels_between` can still be asked about; origin: the
    stream position (input frames) of the first sample pushed, for a part of a longer recording (its ticks stay
    on the recording's grid; times given to :meth:`levels_between` are the recording's).

    :attr:`ticks` lists the recent measured ticks; complete ticks still in the buffer are measured whenever
    levels are asked for (and at :meth:`finish`).
    """

    def __init__(self, sample_rate: int, *, calibration_db: float | None = None, keep_seconds: float = 60.0,
                 origin: int = 0):
        self.sample_rate = int(sample_rate)
        self.calibration_db = None if calibration_db is None else float(calibration_db)
        self.tick = max(1, int(round(TICK_SECONDS * self.sample_rate)))
        self.step = max(1, int(round(SAMPLE_SECONDS * self.sample_rate)))
        self._design = _design(self.sample_rate, self.tick, self.step)
        self.labels = self._design.labels
        self._settle = int(round(SETTLE_SECONDS * self.sample_rate))
        self._keep = max(2, int(math.ceil(keep_seconds / TICK_SECONDS)) + 2)
        self._buffer = np.empty(BATCH_TICKS * self.tick)  # samples not yet measured: the open tick's, and
        self._open = 0  # complete ticks that wait to be measured together
        self._work: _Work | None = None  # what batches are computed in (allocated at the first)
        self._a_state = np.zeros(self._design.a.order)  # the A weighting's state (sosfilt's zi, flattened)
        self._f_state = 0.0  # the F detector's mean square after the last sample measured
        self.origin = int(origin)
        self.consumed = 0  # samples measured since the origin
        self._kept = _Ticks.empty(self._keep, len(self.labels), -(-self.tick // self.step))  # a ring
        self._stored = 0  # ticks measured since the start (the next one goes to row _stored % _keep)
        self._total = _Sum(len(self.labels), histogram=True)
        self._interval = _Sum(len(self.labels), histogram=True)
        self._finished = False

    def push(self, mono: np.ndarray) -> None:
        """Measure the next ``(n,)`` samples (float, full scale 1.0).  They are copied into the meter's buffer
        (so the caller may reuse its array); complete ticks are measured when it is full or levels are asked for."""
        x = np.asarray(mono).reshape(-1)
        end = self._open + x.size
        if end < self._buffer.size:  # the usual case: a block of a stream
            self._buffer[self._open:end] = x
            self._open = end
            return
        while x.size:
            take = min(x.size, self._buffer.size - self._open)
            self._buffer[self._open:self._open + take] = x[:take]
            self._open += take
            x = x[take:]
            if self._open == self._buffer.size:
                self._measure(whole_ticks=True)

    def push_channels(self, block: np.ndarray) -> None:
        """Measure ``(channels, n)`` audio mixed to mono as the classifier mixes it (the mean of the channels; of a
        contiguous copy, which is several times faster than of the transposed view a decoder gives)."""
        block = np.asarray(block)
        self.push(block[0] if block.shape[0] == 1 else np.ascontiguousarray(block).mean(axis=0))

    def finish(self) -> None:
        """End of the audio: the last, shorter tick counts too."""
        if self._open and not self._finished:
            self._measure(whole_ticks=False)
        self._finished = True

    def levels_between(self, start_seconds: float, end_seconds: float) -> Levels:
        """Levels of the ticks within ``[start, end)`` seconds (at least the tick nearest its middle)."""
        self._flush()
        first, last = start_seconds * self.sample_rate, end_seconds * self.sample_rate
        kept = self._kept  # (a ring: its rows in any order, the sums' to float rounding)
        held = kept.samples > 0
        inside = held & (kept.start >= first - 1e-6) & (kept.start + kept.samples <= last + 1e-6)
        if not inside.any() and held.any():
            distance = np.where(held, np.abs(kept.start + kept.samples / 2 - (first + last) / 2), np.inf)
            nearest = np.flatnonzero(distance == distance.min())
            inside = [nearest[np.argmin(kept.start[nearest])]]  # of two as near, the earlier
        total = _Sum(len(self.labels), histogram=False)
        total.add(_summary(kept.take(inside), bins=False))
        out = total.levels(self.calibration_db, self.labels)
        out.seconds = total.samples / self.sample_rate
        return out

    @property
    def ticks(self) -> list[_Tick]:
        """The recent measured ticks, oldest first (as many as ``keep_seconds`` asks for)."""
        kept = self._kept.take(self._rows())
        return [_Tick(int(kept.start[t]), int(kept.samples[t]), float(kept.a[t]), float(kept.c[t]), kept.bands[t],
                      float(kept.fmax[t]), float(kept.fmin[t]), kept.values[t, :kept.count[t]])
                for t in range(len(kept.start))]

    def _rows(self) -> np.ndarray:
        """The rows of the kept ticks, oldest first."""
        held = min(self._stored, self._keep)
        return (self._stored - held + np.arange(held)) % self._keep

    def total(self) -> Levels:
        """Levels of everything measured so far."""
        self._flush()
        out = self._total.levels(self.calibration_db, self.labels)
        out.seconds = self._total.samples / self.sample_rate
        return out

    @property
    def interval_seconds(self) -> float:
        """Audio measured in the current interval (complete ticks, those still in the buffer too)."""
        position = self.origin + self.consumed
        waiting = (position + self._open) // self.tick * self.tick - position
        return (self._interval.samples + max(0, waiting)) / self.sample_rate

    def take_interval(self) -> Levels:
        """Levels since the last call (or the start), and start a new interval (a sensor's ``--level-interval``)."""
        self._flush()
        out = self._interval.levels(self.calibration_db, self.labels)
        out.seconds = self._interval.samples / self.sample_rate
        self._interval = _Sum(len(self.labels), histogram=True)
        return out

    def _flush(self) -> None:
        """Measure the complete ticks waiting in the buffer."""
        position = self.origin + self.consumed
        if (position + self._open) // self.tick > position // self.tick:
            self._measure(whole_ticks=True)

    def _measure(self, *, whole_ticks: bool) -> None:
        """Measure the buffer up to the last complete tick (or all of it, at the end): whole ticks on the grid
        together, from their spectra; a tick that starts off the grid or ends short by itself, sample by sample."""
        x = self._buffer[:self._open]
        position = self.origin + self.consumed
        upto = (position + x.size) // self.tick * self.tick if whole_ticks else position + x.size
        done = 0
        while position + done < upto:
            first = position + done
            whole = (upto - first) // self.tick if first % self.tick == 0 else 0
            if whole:
                self._measure_ticks(first, x[done:done + whole * self.tick].reshape(whole, self.tick))
                done += whole * self.tick
            else:
                end = min(upto, (first // self.tick + 1) * self.tick) - position
                self._measure_part(first, x[done:end])
                done = end
        rest = x[done:]
        self._buffer[:rest.size] = rest
        self._open = rest.size

    def _measure_ticks(self, first: int, frames: np.ndarray) -> None:
        """Measure whole ticks ``(k, tick)`` on the grid, the first starting at stream position ``first``."""
        design, k = self._design, len(frames)
        if self._work is None:
            self._work = _Work(BATCH_TICKS, self.tick)
        work = self._work
        spectra = _rfft(frames, work.spectra[:k])
        power, imag = work.squares[0, :k], work.squares[1, :k]
        np.square(spectra.real, out=power)
        power += np.square(spectra.imag, out=imag)
        energies = design.band_energies(power)
        weighted, self._a_state = design.a.weigh(frames, spectra, self._a_state, work.weighted[:k])
        np.square(weighted, out=weighted)
        values, a_energies, self._f_state = design.f.run(weighted, self._f_state)
        self._record(first, np.full(k, self.tick), a_energies, energies, values)

    def _measure_part(self, first: int, x: np.ndarray) -> None:
        """Measure a tick that starts off the grid or ends short: its spectrum zero-padded to a tick's length
        (Parseval holds as well, and one set of band weights per rate serves), its samples filtered one by one."""
        design = self._design
        energies = design.band_energies(_power(np.fft.rfft(x, n=self.tick)[None]))
        weighted, self._a_state = design.a.weigh_part(x, self._a_state)
        values, a_energy, self._f_state = design.f.run_part(np.square(weighted), self._f_state, first)
        self._record(first, np.array([x.size]), np.array([a_energy]), energies, values[None])

    def _record(self, first: int, lengths: np.ndarray, a_energies: np.ndarray, energies: np.ndarray,
                values: np.ndarray) -> None:
        """Close ticks measured together: ``lengths`` samples each, from stream position ``first``; their
        A-weighted energies, band energies with the C-weighted one last ``(k, bands + 1)``, and F-weighted values
        ``(k, m)`` at the grid points in each (the samples whose position + 1 is a multiple of the grid).  Grid
        points before ``origin + settle`` are left out (the detector settles from rest first)."""
        grid, every = self._design.f.grid, self.step // self._design.f.grid
        starts = first + np.concatenate([[0], np.cumsum(lengths)[:-1]])
        offsets = (grid - 1 - starts) % grid  # of each tick's first grid point
        settled = np.maximum(0, -(-(self.origin + self._settle - starts - offsets) // grid))  # its first settled one
        fmax, fmin = _extremes(values, settled)
        phase = (self.step - 1 - starts - offsets) % self.step // grid  # the first 10-ms value (position + 1 = k step)
        sampled = phase + np.maximum(0, -(-(settled - phase) // every)) * every  # ... that has settled
        picked = np.zeros((len(lengths), self._kept.values.shape[1]))  # at most a value each 10 ms of a tick
        if (sampled == sampled[0]).all():  # whole ticks whose 10-ms values fall alike (the tick is a whole 10 ms)
            row = values[:, sampled[0]::every]
            picked[:, :row.shape[1]] = row
            count = np.full(len(lengths), row.shape[1])
        else:
            count = np.zeros(len(lengths), np.int64)
            for t in range(len(lengths)):
                row = values[t, sampled[t]::every]
                picked[t, :row.size], count[t] = row, row.size
        ticks = _Ticks(starts, lengths, a_energies, energies[:, -1], energies[:, :-1], fmax, fmin, picked, count)
        k = min(len(lengths), self._keep)  # the ring keeps the last _keep ticks
        self._kept.put((self._stored + len(lengths) - k + np.arange(k)) % self._keep, ticks.take(slice(-k, None)))
        self._stored += len(lengths)
        summary = _summary(ticks, bins=True)
        self._total.add(summary)
        self._interval.add(summary)
        self.consumed += int(lengths.sum())


class _Work:
    """The arrays a meter computes its batches in, allocated once: fresh arrays of megabytes for every batch
    cost a page fault per 4 KB each time (a third of the meter's time, measured)."""

    def __init__(self, rows: int, n: int):
        self.spectra = np.empty((rows, n // 2 + 1), complex)
        self.squares = np.empty((2, rows, n // 2 + 1))  # the spectra's real and imaginary parts squared
        self.weighted = np.empty((rows, n))


_FFT_OUT = int(np.__version__.split(".")[0]) >= 2  # numpy 2 writes an FFT into a given array


def _rfft(frames: np.ndarray, out: np.ndarray) -> np.ndarray:
    if _FFT_OUT:
        return np.fft.rfft(frames, axis=-1, out=out)
    out[...] = np.fft.rfft(frames, axis=-1)
    return out


def _irfft(spectra: np.ndarray, n: int, out: np.ndarray) -> np.ndarray:
    if _FFT_OUT:
        return np.fft.irfft(spectra, n=n, axis=-1, out=out)
    out[...] = np.fft.irfft(spectra, n=n, axis=-1)
    return out


def _power(spectra: np.ndarray) -> np.ndarray:
    """|spectra|^2, without the square root and square of np.abs."""
    return np.square(spectra.real) + np.square(spectra.imag)


def _extremes(values: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest and smallest of each row of ``values`` from its column ``first`` on (-inf and inf: none)."""
    if first.any():
        keep = np.arange(values.shape[1]) >= first[:, None]
        return (np.where(keep, values, -np.inf).max(axis=1, initial=-np.inf),
                np.where(keep, values, np.inf).min(axis=1, initial=np.inf))
    return values.max(axis=1, initial=-np.inf), values.min(axis=1, initial=np.inf)


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


# ---- what a meter computes with, designed once per rate ------------------------------------------------------

class _AWeighting:
    """The IEC 61672-1 A weighting (PyOctaveBand's design: second-order sections, whose state is kept as
    scipy's ``sosfilt`` keeps it) over whole ticks of ``n`` samples from their spectra, or sample by sample.

    Why: ``sosfilt`` costs ~7 ns a sample whatever the filter (1.8 ms per 5 s of 48-kHz audio on the benchmark
    machine), while the ticks' spectra are computed anyway (for the bands).  How: a tick repeated forever would
    come out of the filter as the inverse FFT of its spectrum times the filter's frequency response (circular
    convolution with the whole impulse response), starting from the state ``steady`` (n, order) that the periodic
    input keeps the filter in.  The tick as it is starts from the state the previous one left; the filter being
    linear, the difference is its free response ``zir`` (order, n) to the difference of the two states.  The
    state a tick leaves is ``steady + phi @ (state - steady)``, with ``phi`` = A^n, what remains of a state a tick
    later (~1e-10: the slowest poles are at 20.6 Hz).  The output agrees with ``sosfilt``'s to ~1e-11 of the
    signal (tests/test_levels.py), and the error does not build up: each tick's state is computed afresh.
    """

    def __init__(self, sample_rate: int, n: int):
        from pyoctaveband import WeightingFilter
        from scipy.signal import sosfreqz

        self.sos = WeightingFilter(sample_rate, "A", stateful=True).sos
        a, b, c = _state_space(self.sos)
        self.order = len(a)
        _, self.response = sosfreqz(self.sos, worN=2 * np.pi * np.arange(n // 2 + 1) / n)
        self.zir = np.ascontiguousarray(_powers(c, a, n).T)  # column m: c A^m, the output m samples on
        self.phi = np.linalg.matrix_power(a, n)
        reach = _powers(b, a.T, n)[::-1]  # row j: A^(n-1-j) b, the state at the end from a unit sample at j
        self.steady = np.linalg.solve(np.eye(self.order) - self.phi, reach.T)  # (order, n): x -> steady state
        # the first sample of a tick that reaches each state by more than 1e-20 of the most (the fast sections'
        # states hear only a tick's last samples): the products before it round away
        self.reached = (np.abs(self.steady) > 1e-20 * np.abs(self.steady).max(axis=1, keepdims=True)).argmax(axis=1)

    def weigh(self, frames: np.ndarray, spectra: np.ndarray, state: np.ndarray,
              out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The A-weighted ticks ``(k, n)`` (in ``out``) and the state after them, from the ticks, their spectra
        (overwritten) and the state before the first."""
        from scipy.linalg.blas import dgemm

        steady = self.steady_states(frames)
        # each tick's state less its steady state: o[t] = steady[t-1] - steady[t] + phi o[t-1], where phi o[t-1]
        # is ~1e-10 of it, and what phi o[t-2] adds to that, ~1e-20, is below float rounding
        offsets = np.empty_like(steady)
        offsets[0] = state - steady[0]
        offsets[1:] = steady[:-1] - steady[1:]
        offsets[1:] += offsets[:-1] @ self.phi.T
        np.multiply(spectra, self.response, out=spectra)
        weighted = _irfft(spectra, frames.shape[1], out)
        # weighted += offsets @ zir, in place: BLAS adds into a column-major matrix, which weighted.T is
        dgemm(1.0, self.zir.T, offsets.T, beta=1.0, c=weighted.T, overwrite_c=True)
        return weighted, steady[-1] + self.phi @ offsets[-1]

    def steady_states(self, frames: np.ndarray) -> np.ndarray:
        """The steady state of each tick ``(k, order)``: ``frames @ steady.T`` without the products that round
        away."""
        out = np.empty((len(frames), self.order))
        for i, first in enumerate(self.reached):
            out[:, i] = frames[:, first:] @ self.steady[i, first:]
        return out

    def weigh_part(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x`` A-weighted sample by sample from ``state`` (what WeightingFilter(stateful=True) runs)."""
        from scipy.signal import sosfilt

        weighted, state = sosfilt(self.sos, x, zi=state.reshape(-1, 2))
        return weighted, state.reshape(-1)


def _state_space(sos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, b, c)`` of second-order sections in cascade (their feedthrough is left out: only the states' part is
    wanted), each section's two states those of sosfilt's direct form II transposed, in its ``zi``'s order."""
    a, b, c, d = np.zeros((0, 0)), np.zeros(0), np.zeros(0), 1.0
    for b0, b1, b2, _, a1, a2 in sos:
        # w = b0 v + z0;  z0' = b1 v - a1 w + z1;  z1' = b2 v - a2 w   (v: the section's input, the last output)
        section, into = np.array([[-a1, 1.0], [-a2, 0.0]]), np.array([b1 - a1 * b0, b2 - a2 * b0])
        n = len(a)
        cascade = np.zeros((n + 2, n + 2))
        cascade[:n, :n], cascade[n:, :n], cascade[n:, n:] = a, np.outer(into, c), section
        a, b, c, d = cascade, np.concatenate([b, into * d]), np.concatenate([b0 * c, [1.0, 0.0]]), b0 * d
    return a, b, c


def _powers(first: np.ndarray, matrix: np.ndarray, n: int) -> np.ndarray:
    """The rows ``first @ matrix**m`` for m < n (by doubling: log2(n) matrix products)."""
    out = np.empty((n, len(first)))
    out[0] = first
    done, power = 1, matrix
    while done < n:
        more = min(done, n - done)
        out[done:done + more] = out[:more] @ power
        done += more
        power = power @ power
    return out


class _FDetector:
    """IEC 61672-1 F time weighting (exponential, 125 ms) of the A-weighted square, as PyOctaveBand's
    TimeWeighting runs it (``y = alpha x + (1 - alpha) y``), evaluated every ``grid`` samples.

    Why: ``lfilter`` costs ~6 ns a sample (1.4 ms per 5 s at 48 kHz).  The value at the end of each span of
    ``grid`` samples is the decayed value before it plus the span's squares weighted by what is left of each at
    the end: one matrix product for all spans, then ``lfilter`` over one value a span.  The 10-ms values lie on
    the grid (exact, to float rounding); between grid points the detector can rise above the next one by at most
    its decay over one span, 34.7 dB/s x ``grid`` samples (at most 1/3 ms: 0.012 dB), so LAFmax and LAFmin are at
    most that far inside the extremes of its every sample.
    """

    def __init__(self, sample_rate: int, grid: int):
        self.alpha = 1 - np.exp(-1 / (sample_rate * 0.125))  # TimeWeighting's "fast"
        self.beta = 1 - self.alpha
        self.grid = grid
        self.decay = self.beta ** grid
        self.weights = self.alpha * self.beta ** np.arange(grid - 1, -1, -1.0)  # what a span's squares add at its end

    def run(self, squares: np.ndarray, value: float) -> tuple[np.ndarray, np.ndarray, float]:
        """Rows of squares, whole spans from a grid point on -> the detector at each span's end ``(k, n / grid)``,
        each row's energy, and the detector's last value; ``value``: the detector before the first."""
        from scipy.signal import lfilter

        rows, n = squares.shape
        values, _ = lfilter([1.0], [1.0, -self.decay], squares.reshape(-1, self.grid) @ self.weights,
                            zi=[self.decay * value])
        energies = squares @ np.ones(n)  # (matrix products: several times faster than sum here)
        return values.reshape(rows, -1), energies, float(values[-1])

    def run_part(self, squares: np.ndarray, value: float, first: int) -> tuple[np.ndarray, float, float]:
        """The same for squares from any stream position ``first``, sample by sample: the detector at the grid
        points among them, their energy, and the detector's last value."""
        from scipy.signal import lfilter

        detector, _ = lfilter([self.alpha], [1.0, -self.beta], squares, zi=[self.beta * value])
        return detector[(self.grid - 1 - first) % self.grid::self.grid], float(squares.sum()), float(detector[-1])


def _grid(sample_rate: int, tick: int, step: int) -> int:
    """The F detector's grid: the longest span of at most GRID_SECONDS that divides both the tick and the 10-ms
    step (so ticks hold whole spans and the 10-ms values are grid points)."""
    common, longest = math.gcd(tick, step), max(1, int(GRID_SECONDS * sample_rate))
    return max(d for d in range(1, longest + 1) if common % d == 0)


class _Design:
    """What a meter at one rate computes with: band labels and weights, the A weighting and the F detector.

    The band weights are multiplied in groups of rows up to the last bin the group weighs: the lower bands'
    designs end at their own Nyquist, so at 48 kHz under a third of the products are made, with the same sums."""

    def __init__(self, sample_rate: int, tick: int, step: int):
        self.labels, weights = band_weights(sample_rate, tick)
        self.tick = tick
        self.rows = len(weights)
        ends = [int(np.flatnonzero(row)[-1]) + 1 if row.any() else 1 for row in weights]
        self.groups = []  # (bins, rows, their weights transposed): consecutive rows, ends within 2x of the first's
        first = 0
        for row in range(1, len(ends) + 1):
            if row == len(ends) or ends[row] > 2 * ends[first]:
                end = max(ends[first:row])
                self.groups.append((end, slice(first, row), np.ascontiguousarray(weights[first:row, :end].T)))
                first = row
        self.a = _AWeighting(sample_rate, tick)
        self.f = _FDetector(sample_rate, _grid(sample_rate, tick, step))

    def band_energies(self, power: np.ndarray) -> np.ndarray:
        """Power spectra of ticks ``(k, bins)`` -> their band energies, the C-weighted one last (sums of squares)."""
        out = np.empty((len(power), self.rows))
        for end, rows, weights in self.groups:
            out[:, rows] = power[:, :end] @ weights
        out /= self.tick
        return out


_DESIGNS: dict[tuple[int, int, int], _Design] = {}


def _design(sample_rate: int, tick: int, step: int) -> _Design:
    key = (sample_rate, tick, step)
    if key not in _DESIGNS:
        _DESIGNS[key] = _Design(*key)
    return _DESIGNS[key]


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
