"""The plan of a batch: every input file, its duration from its header, and its shards.

Inputs are files, folders (searched recursively), globs, or manifest CSVs (a ``.csv`` with a ``path`` column,
optional ``sensor_id`` and ``start_time``).  A file's shards split its windows, which start every hop on the
model's sample grid, into runs of ``--shard-minutes``: shard *k* holds the windows starting at samples
``k*S`` up to ``(k+1)*S`` (S a whole number of hops), the last one also the end-aligned window.  Each shard is
decoded from a little before its first window to its last window's end (one window of overlap with the next),
so the shards' windows are exactly the windows ``predict`` computes on the whole file
(:meth:`soundscene.core.inference.SceneClassifier.classify_span`).

Nothing here raises for a bad file: a file that cannot be used is planned with its ``problem`` (one line) and
no shards, and becomes a row of ``errors/``.
"""

from __future__ import annotations

import csv
import glob
import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence

from ...config import Range
from ...errors import AudioError, DataError
from ...core.audio import Input, audio_info, check_length, expand_inputs
from ...core.records import printable
from ...core.timeline import resampled_length

SHARD_MINUTES = Range(0.5, 24 * 60, "min")  # --shard-minutes: from 30 s to a day
NO_SENSOR = "unknown"  # the sensor of files given without a manifest's sensor_id


@dataclass(frozen=True)
class Shard:
    """One unit of work: the windows of ``path`` starting at model-rate samples ``first`` up to ``stop``
    (None: to the end).  ``seconds``: the audio it accounts for (its own part of the file)."""

    shard_id: str
    file_id: str
    index: int
    path: str
    name: str
    first: int
    stop: int | None
    seconds: float
    sensor_id: str
    start_time: str | None  # the file's start, ISO 8601 UTC, when known

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FileEntry:
    """One input file of the plan: where it is, whose it is, what its header says, its shards or problem."""

    file_id: str
    path: str
    name: str
    sensor_id: str = NO_SENSOR
    start_time: datetime | None = None
    sample_rate: int = 0
    channels: int = 0
    frames: int = 0
    problem: str | None = None
    shards: list[Shard] = field(default_factory=list)

    @property
    def duration_seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True)
class Source:
    """An input before its header is read: a path (or a problem), and what a manifest says of it."""

    item: Input
    sensor_id: str = NO_SENSOR
    start_time: datetime | None = None
    consecutive: bool = False  # no start_time of its own: it starts where the sensor's previous file ended


def gather(inputs: Sequence[str | Path]) -> list[Source]:
    """Files, folders, globs and manifest CSVs -> sources, in the order given (see the module docstring)."""
    out: list[Source] = []
    for raw in inputs:
        text = str(raw)
        path = Path(text)
        if path.suffix.lower() == ".csv" and path.is_file():
            out.extend(read_manifest(path))
        elif not path.exists() and glob.has_magic(text):
            found = sorted(glob.glob(text, recursive=True))
            if not found:
                out.append(Source(Input(text, problem=f"{text}: matches no file")))
            out.extend(Source(i) for i in expand_inputs(found))
        else:
            out.extend(Source(i) for i in expand_inputs([path]))
    return out


def read_manifest(path: Path) -> list[Source]:
    """A manifest CSV: ``path`` (relative to the CSV's folder, or absolute), optional ``sensor_id`` and
    ``start_time`` (ISO 8601; without a zone it is taken as UTC).  A row without ``start_time`` after a row of
    the same sensor that has one is a consecutive recording: it starts where that one ended.  DataError (one
    line naming the row) for a manifest without ``path`` or with a time that cannot be read."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the manifest ({exc})") from None
    if not rows or "path" not in rows[0]:
        raise DataError(f"{path}: a manifest needs a 'path' column (optional: sensor_id, start_time)")
    out = []
    for number, row in enumerate(rows, start=2):
        where = f"{path} line {number}"
        name = (row.get("path") or "").strip()
        if not name:
            raise DataError(f"{where}: the path is empty")
        sensor = (row.get("sensor_id") or "").strip() or NO_SENSOR
        start = parse_time((row.get("start_time") or "").strip(), where)
        file_path = Path(name) if Path(name).is_absolute() else path.parent / name
        item = Input(name, file_path) if file_path.is_file() else Input(name, problem=f"{where}: {name}: does not "
                                                                                       "exist")
        out.append(Source(item, sensor, start, consecutive=start is None and "start_time" in row))
    return out


def parse_time(text: str, where: str) -> datetime | None:
    """ISO 8601 text -> an aware UTC datetime (no zone: UTC); None for empty text; DataError otherwise."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise DataError(f"{where}: start_time {printable(text)!r} is not an ISO 8601 time "
                        "(e.g. 2026-03-01T23:59:30Z)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def file_id(path: Path, sensor_id: str, frames: int, rate: int) -> str:
    """A stable id for a file's outputs: its absolute path, sensor and header (a changed file is a new one)."""
    key = f"{path.resolve()}\0{sensor_id}\0{frames}\0{rate}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(key).hexdigest()[:16]


def plan_files(sources: Iterable[Source], *, classifier, shard_minutes: float) -> list[FileEntry]:
    """Read every source's header and cut it into shards for ``classifier``'s windows and hop."""
    rate = classifier.sample_rate
    window, hop = classifier.window_samples, classifier.hop_samples
    shard = max(hop, int(shard_minutes * 60 * rate) // hop * hop)
    ends: dict[str, datetime] = {}  # sensor -> where its previous file ended (consecutive recordings)
    entries, seen = [], set()
    for source in sources:
        entry = _entry(source, classifier)
        if entry.file_id in seen:  # the same file named twice (a folder and a file in it): once
            continue
        seen.add(entry.file_id)
        if entry.start_time is None and source.consecutive:
            entry.start_time = ends.get(source.sensor_id)
        if entry.start_time is not None and entry.sample_rate:
            ends[source.sensor_id] = entry.start_time + timedelta(seconds=entry.duration_seconds)
        else:  # a file of unknown length breaks the chain: what follows has no start time of its own
            ends.pop(source.sensor_id, None)
        if entry.problem is None:
            entry.shards = _shards(entry, rate=rate, window=window, hop=hop, shard=shard)
        entries.append(entry)
    return entries


def _entry(source: Source, classifier) -> FileEntry:
    item = source.item
    name = printable(item.name)
    if item.problem is not None:
        return FileEntry(hashlib.sha256(item.name.encode("utf-8", "surrogateescape")).hexdigest()[:16], item.name,
                         name, source.sensor_id, source.start_time, problem=item.problem)
    path = Path(item.path)
    entry = FileEntry("", str(path), name, source.sensor_id, source.start_time)
    try:
        info = audio_info(path)
        entry.sample_rate, entry.channels, entry.frames = info.sample_rate, info.channels, info.frames
        check_length(info, min_seconds=classifier.config.audio.min_seconds)
        channels = classifier.config.audio.channels
        if channels > 1 and info.channels != channels:
            raise AudioError(f"{path}: has {info.channels} channels but the model expects {channels}")
    except AudioError as exc:
        entry.problem = str(exc)
    entry.file_id = file_id(path, source.sensor_id, entry.frames, entry.sample_rate)
    return entry


def _shards(entry: FileEntry, *, rate: int, window: int, hop: int, shard: int) -> list[Shard]:
    """The shards of one file (see the module docstring): every hop-grid window start belongs to exactly one."""
    total = resampled_length(entry.frames, input_rate=entry.sample_rate, rate=rate)
    last_start = (total - window) // hop * hop if total >= window else 0
    count = last_start // shard + 1
    start = entry.start_time.isoformat() if entry.start_time else None
    out = []
    for k in range(count):
        first, stop = k * shard, (k + 1) * shard if k < count - 1 else None
        own_from = first * entry.sample_rate // rate
        own_to = entry.frames if stop is None else stop * entry.sample_rate // rate
        out.append(Shard(f"{entry.file_id}-{k:05d}", entry.file_id, k, entry.path, entry.name, first, stop,
                         (own_to - own_from) / entry.sample_rate, entry.sensor_id, start))
    return out


def plan_rows(entries: Sequence[FileEntry], *, rate: int) -> list[dict]:
    """The rows of ``plan.parquet``: one per shard, and one per file that cannot be used (with its problem)."""
    rows = []
    for e in entries:
        base = {"file": e.name, "file_id": e.file_id, "sensor_id": e.sensor_id, "start_time": e.start_time,
                "duration_seconds": e.duration_seconds, "sample_rate": e.sample_rate, "channels": e.channels}
        if e.problem is not None:
            rows.append({**base, "shard": None, "shard_id": None, "first_seconds": None, "stop_seconds": None,
                         "problem": e.problem})
        for s in e.shards:
            rows.append({**base, "shard": s.index, "shard_id": s.shard_id, "first_seconds": s.first / rate,
                         "stop_seconds": None if s.stop is None else s.stop / rate, "problem": None})
    return rows
