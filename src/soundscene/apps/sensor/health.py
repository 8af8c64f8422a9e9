"""A sensor's health: what its process, its queue, its board and its input signal did over an interval.

The parts measure one thing each and know nothing of MQTT:

* :class:`InputMonitor`: the input signal, block by block in O(1) memory: RMS level, share of samples at full
  scale, DC offset, and whether the input was dead (digitally constant: a broken microphone or cable);
* :class:`ProcessMonitor`: the process: CPU (percent of one core between two samples, from ``os.times``),
  resident memory and its peak (``/proc/self/status``), uptime;
* :func:`board_temperature`, :func:`disk_free`, :func:`model_info`: the board, the spool's disk, the model.

:class:`HealthReporter` puts them together into the ``health`` record of :mod:`soundscene.core.records`
(``soundscene schema health``).  The listen loop pushes every input block into it and asks :meth:`due
<HealthReporter.due>` after each one; a report is due every ``interval_seconds`` of audio or of wall-clock
time, whichever comes first (a microphone that drops blocks still reports on time)::

    reporter = HealthReporter("kitchen-1", model_info("cnn", "0.1.0", "model.safetensors"), 60.0, spool,
                              publisher, rate=48000, spool_path=spool_dir)
    for block in blocks:
        reporter.push(block)
        ...
        if reporter.due():
            publish(reporter.take(seq=next_seq(), boot=boot))   # a health record

Counters come from *sources*, duck-typed objects (a spool, an MQTT publisher) read when a report is made: any
of ``queued``, ``bytes``, ``dropped``, ``refused``, ``disk_free`` (bytes), ``connected``, ``last_error`` (or
``problem``, as a spool says it): plain attributes, properties or methods without arguments; one that no
source has, or that is None, is null in the record.  ``dropped`` and ``refused`` are summed over the sources
(give each counter once: a publisher that reports its spool's drops as its own is not given the spool too);
for the others the first source with a value wins (put the spool before the publisher).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..._version import __version__
from ...core import records
from ...errors import SoundsceneError
from ..protocol import utc_timestamp

FULL_SCALE = 0.999  # a sample with |x| at least this is counted as clipped
THERMAL_ROOT = Path("/sys/class/thermal")
PROC_STATUS = Path("/proc/self/status")
MIB = 1024 * 1024
#: the fields of a health record that a source supplies, with the source attributes they come from (the first
#: a source has: a spool tells its ``problem``, a publisher its ``last_error``)
SOURCE_FIELDS = {"spool_messages": ("undelivered", "queued"), "spool_bytes": ("bytes",), "dropped_messages": ("dropped",),
                 "refused_messages": ("refused",), "connected": ("connected",),
                 "last_error": ("last_error", "problem"), "disk_free_bytes": ("disk_free",)}
_SUMMED = ("dropped", "refused")  # counters: summed over the sources


class InputMonitor:
    """Statistics of the input signal over an interval, from ``(channels, n)`` float32 blocks (full scale 1).

    :meth:`push` accumulates sums, counts and each channel's extremes (O(1) memory whatever the interval's
    length); :meth:`take` returns the interval's values and starts the next one.  ``rate`` (Hz), when given,
    makes :attr:`seconds` the seconds of audio pushed in the interval."""

    def __init__(self, rate: float | None = None):
        self.rate = rate
        self._reset()

    def _reset(self) -> None:
        self.frames = 0  # samples per channel pushed in this interval
        self._count = 0  # samples of all channels
        self._sum = 0.0
        self._squares = 0.0
        self._clipped = 0
        self._low: np.ndarray | None = None  # each channel's minimum and maximum
        self._high: np.ndarray | None = None

    @property
    def seconds(self) -> float | None:
        """Seconds of audio pushed in this interval; None without a rate."""
        return self.frames / self.rate if self.rate else None

    def push(self, block: np.ndarray) -> None:
        """Add one block: ``(channels, n)`` (a 1-D block is one channel)."""
        block = np.asarray(block)
        if block.ndim == 1:
            block = block[np.newaxis]
        if block.size == 0:
            return
        wide = block.astype(np.float64, copy=False).ravel()
        self.frames += block.shape[1]
        self._count += wide.size
        self._sum += float(wide.sum())
        self._squares += float(np.dot(wide, wide))
        self._clipped += int(np.count_nonzero(np.abs(wide) >= FULL_SCALE))
        low, high = block.min(axis=1), block.max(axis=1)
        if self._low is None:
            self._low, self._high = low, high
        elif self._low.shape == low.shape:
            self._low, self._high = np.minimum(self._low, low), np.maximum(self._high, high)
        else:  # the channel count changed: keep one range for all
            self._low = np.array([min(self._low.min(), low.min())])
            self._high = np.array([max(self._high.max(), high.max())])

    def take(self) -> dict[str, Any]:
        """``input_level_dbfs`` (RMS, dB re full scale; -inf for digital silence, which the record makes null),
        ``clipping_fraction``, ``dc_offset`` (the mean), ``dead_input`` (every channel constant the whole
        interval) of the interval, all None when nothing was pushed; then starts the next interval."""
        if not self._count:
            values = {"input_level_dbfs": None, "clipping_fraction": None, "dc_offset": None, "dead_input": None}
        else:
            mean_square = self._squares / self._count
            values = {"input_level_dbfs": 10 * math.log10(mean_square) if mean_square > 0 else -math.inf,
                      "clipping_fraction": self._clipped / self._count,
                      "dc_offset": self._sum / self._count,
                      "dead_input": bool(np.array_equal(self._low, self._high))}
        self._reset()
        return values


def _cpu_seconds() -> float:
    """CPU seconds this process has used (user and system, all its threads; not its children)."""
    t = os.times()
    return t.user + t.system


class ProcessMonitor:
    """CPU, memory and uptime of this process.  :meth:`sample` gives the CPU used between two samples (the
    first: since the monitor was made) in percent of one core; ``clock`` (monotonic seconds) and
    ``cpu_seconds`` can be replaced to test the arithmetic."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 cpu_seconds: Callable[[], float] = _cpu_seconds, status_path: Path = PROC_STATUS):
        self.clock, self.cpu_seconds, self.status_path = clock, cpu_seconds, Path(status_path)
        self._wall, self._cpu = clock(), cpu_seconds()
        self._started = self._wall - (process_age() or 0.0)

    def sample(self) -> dict[str, Any]:
        """``interval_seconds`` (wall clock since the last sample), ``cpu_percent`` (None over no time),
        ``memory_mb`` and ``memory_peak_mb`` (MiB; None without /proc), ``uptime_seconds``."""
        wall, cpu = self.clock(), self.cpu_seconds()
        elapsed = wall - self._wall
        percent = 100.0 * (cpu - self._cpu) / elapsed if elapsed > 0 else None
        self._wall, self._cpu = wall, cpu
        rss, peak = memory_mb(self.status_path)
        return {"interval_seconds": max(elapsed, 0.0), "cpu_percent": percent, "memory_mb": rss,
                "memory_peak_mb": peak, "uptime_seconds": max(wall - self._started, 0.0)}


def memory_mb(status_path: Path = PROC_STATUS) -> tuple[float | None, float | None]:
    """(resident memory now, its peak) of this process in MiB, from VmRSS and VmHWM of /proc/self/status;
    None for what cannot be read (not Linux)."""
    try:
        text = Path(status_path).read_text()
    except OSError:
        return None, None
    found: dict[str, float] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if key in ("VmRSS", "VmHWM") and len(fields) == 2 and fields[1] == "kB" and fields[0].isdigit():
            found[key] = int(fields[0]) / 1024
    return found.get("VmRSS"), found.get("VmHWM")


def process_age() -> float | None:
    """Seconds since this process started (from /proc/self/stat and /proc/uptime); None where unknown."""
    try:
        stat = Path("/proc/self/stat").read_text()
        since_boot = float(Path("/proc/uptime").read_text().split()[0])
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])  # field 22, starttime; the name may hold spaces
        return max(since_boot - ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return None


def board_temperature(root: Path = THERMAL_ROOT) -> float | None:
    """The highest temperature of ``root/thermal_zone*/temp`` in degC (they hold millidegrees), or None when
    there is none; zones that cannot be read or hold no number are skipped."""
    found = []
    for path in sorted(Path(root).glob("thermal_zone*/temp")):
        try:
            found.append(int(path.read_text().strip()) / 1000)
        except (OSError, ValueError):
            continue
    return max(found) if found else None


def disk_free(path: str | os.PathLike) -> float | None:
    """MiB free for this user on the file system of ``path`` (or of its nearest existing folder: a spool
    folder not made yet); None when it cannot be told."""
    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        stat = os.statvfs(where)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize / MIB


def model_info(name: str | None, version: str | None, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The health record's ``model``: ``{"name", "version", "sha256"}``; sha256 of the file at ``path`` (None
    without one, or for a folder)."""
    digest = None
    if path is not None and Path(path).is_file():
        sha = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sha.update(chunk)
        digest = sha.hexdigest()
    return {"name": name, "version": version, "sha256": digest}


def read_sources(sources) -> dict[str, Any]:
    """The counters of the health record from duck-typed ``sources`` (see the module's docstring):
    ``spool_messages``, ``spool_bytes``, ``dropped_messages``, ``refused_messages``, ``connected``,
    ``last_error`` and ``disk_free_bytes``; None for what no source tells."""
    out = {}
    for field, attributes in SOURCE_FIELDS.items():
        found = [v for v in (_attribute(s, attributes) for s in sources) if v is not None]
        if attributes[0] in _SUMMED:
            out[field] = sum(found) if found else None
        else:
            out[field] = found[0] if found else None
    return out


def _attribute(source: Any, names: tuple[str, ...]) -> Any:
    """The first of ``source``'s attributes ``names`` that it has (called when it is a method); None when it has
    none, or when reading it fails on the OS or on a closed source."""
    for name in names:
        try:
            value = getattr(source, name)
            return value() if callable(value) else value
        except AttributeError:
            continue
        except (OSError, SoundsceneError):
            return None
    return None


def health_record(measured: Mapping[str, Any], *, sensor_id: str, seq: int, boot: str | None = None,
                  timestamp: datetime | str | None = None) -> dict[str, Any]:
    """The ``health`` record from ``measured`` (:meth:`HealthReporter.measure`) and the message's identity:
    what a publisher calls inside the lock that numbers its messages."""
    stamp = timestamp if isinstance(timestamp, str) else utc_timestamp(timestamp)
    return records.make("health", sensor_id=sensor_id, **({"boot": boot} if boot else {}), seq=seq,
                        timestamp=stamp, **measured)


class HealthReporter:
    """Makes a sensor's ``health`` records: push the input blocks, ask :meth:`due`, then :meth:`take` (a whole
    record) or :meth:`measure` (its fields without sensor_id, boot, seq and timestamp, for a publisher that
    numbers its messages itself: :func:`health_record`).

    ``model``: ``{"name", "version", "sha256"}`` (:func:`model_info`); ``sources``: a spool, a publisher...
    (read at each report); ``rate``: the input's sample rate, for the audio clock and ``audio_seconds``;
    ``spool_path``: the spool's folder, for ``disk_free_mb`` when no source tells ``disk_free``."""

    def __init__(self, sensor_id: str, model: Mapping[str, Any], interval_seconds: float, *sources: Any,
                 rate: float | None = None, spool_path: str | os.PathLike | None = None,
                 clock: Callable[[], float] = time.monotonic, thermal_root: Path = THERMAL_ROOT):
        if not (isinstance(interval_seconds, (int, float)) and math.isfinite(interval_seconds)
                and interval_seconds > 0):
            raise SoundsceneError(f"health interval must be a positive number of seconds, got {interval_seconds!r}")
        self.sensor_id, self.interval_seconds = sensor_id, float(interval_seconds)
        self.model = {"name": model.get("name"), "version": model.get("version"), "sha256": model.get("sha256")}
        self.sources = list(sources)
        self.spool_path, self.clock, self.thermal_root = spool_path, clock, thermal_root
        self.input = InputMonitor(rate)
        self.process = ProcessMonitor(clock=clock)
        self._since = clock()

    def push(self, block: np.ndarray) -> None:
        """One input block, ``(channels, n)``."""
        self.input.push(block)

    def due(self) -> bool:
        """True when ``interval_seconds`` of audio, or of wall-clock time, have passed since the last report."""
        audio = self.input.seconds
        return ((audio is not None and audio >= self.interval_seconds - 1e-9)
                or self.clock() - self._since >= self.interval_seconds)

    def measure(self) -> dict[str, Any]:
        """The fields of the health record other than sensor_id, boot, seq and timestamp, over the interval
        since the last report (or the start); starts the next interval."""
        audio = self.input.seconds
        process = self.process.sample()
        self._since = self.clock()
        counters = read_sources(self.sources)
        free_bytes = counters.pop("disk_free_bytes")
        if free_bytes is not None:
            free = free_bytes / MIB
        else:
            free = disk_free(self.spool_path) if self.spool_path is not None else None
        return {"interval_seconds": process["interval_seconds"], "audio_seconds": audio,
                "uptime_seconds": process["uptime_seconds"], "cpu_percent": process["cpu_percent"],
                "memory_mb": process["memory_mb"], "memory_peak_mb": process["memory_peak_mb"],
                "spool_messages": counters["spool_messages"], "spool_bytes": counters["spool_bytes"],
                "dropped_messages": counters["dropped_messages"], "refused_messages": counters["refused_messages"],
                "disk_free_mb": free, **self.input.take(), "model": self.model, "soundscene_version": __version__,
                "temperature_c": board_temperature(self.thermal_root), "connected": counters["connected"],
                "last_error": counters["last_error"]}

    def take(self, *, seq: int, boot: str | None = None, timestamp: datetime | str | None = None) -> dict[str, Any]:
        """The health record of the interval (timestamp: now by default); starts the next interval."""
        return health_record(self.measure(), sensor_id=self.sensor_id, seq=seq, boot=boot, timestamp=timestamp)
