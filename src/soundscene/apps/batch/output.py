"""The batch's output: a Parquet data set partitioned by sensor and date, written one atomic file at a time.

    DIR/windows/sensor_id=S/date=YYYY-MM-DD/<shard>.parquet     one row per analysis window
    DIR/segments/sensor_id=S/date=.../<file>.parquet            runs of one scene, per file
    DIR/files/sensor_id=S/date=.../<file>.parquet               one row per file: duration, label, level, status
    DIR/errors/sensor_id=S/date=.../<file>.parquet              one row per file that failed: the reason

The values are the records' (:mod:`soundscene.core.records`: its rounding, its names), with the columns a
data set needs beside them: the file, and the absolute ``start_time``/``end_time`` (UTC) when the file's start
is known.  ``date`` is the UTC date of a row's absolute start (``unknown`` without a start time); a window is
in the partition of the day it starts in.  Sensor ids are URI-encoded in folder names (they are never used as
paths as given); :func:`read_table` reads a table back with both partition columns as text.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import quote

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..._io import atomic_write

TABLES = ("windows", "segments", "files", "errors")
NO_DATE = "unknown"
LEVEL_COLUMNS = ("LAeq", "LAFmax", "LAFmin", "LA10", "LA50", "LA90", "LCeq")  # the levels contract (issue 14)
PARTITIONING = pa.schema([("sensor_id", pa.string()), ("date", pa.string())])
_TIME = pa.timestamp("ms", tz="UTC")


def schemas(classes: Sequence[str]) -> dict[str, pa.Schema]:
    """Each table's columns (the partition columns sensor_id and date come from the folders)."""
    probabilities = pa.struct([(str(c), pa.float64()) for c in classes])
    where = [("file", pa.string()), ("file_id", pa.string())]
    span = [("start", pa.float64()), ("end", pa.float64()), ("start_time", _TIME), ("end_time", _TIME)]
    levels = [*((name, pa.float64()) for name in LEVEL_COLUMNS), ("levels_reference", pa.string()),
              ("levels_calibrated", pa.bool_()), ("bands", pa.map_(pa.string(), pa.float64()))]
    return {
        "windows": pa.schema([*where, ("shard", pa.int32()), *span, ("label", pa.string()),
                              ("confidence", pa.float64()), ("probabilities", probabilities),
                              ("level_dbfs", pa.float64()), ("silent", pa.bool_()), *levels]),
        "segments": pa.schema([*where, *span, ("label", pa.string()), ("confidence", pa.float64()),
                               ("silent", pa.bool_())]),
        "files": pa.schema([*where, ("start_time", _TIME), ("duration_seconds", pa.float64()),
                            ("label", pa.string()), ("confidence", pa.float64()), ("probabilities", probabilities),
                            ("level_dbfs", pa.float64()), ("windows", pa.int32()), ("warning", pa.string()),
                            ("status", pa.string()), ("error", pa.string())]),
        "errors": pa.schema([*where, ("reason", pa.string())]),
    }


def partition(out: Path, table: str, sensor_id: str, date: str) -> Path:
    """The folder of one partition; the sensor id is URI-encoded ('.' and '..' too), never a path of its own."""
    sensor = quote(sensor_id, safe="")
    if sensor in ("", ".", ".."):
        sensor = sensor.replace(".", "%2E") or "%00"
    return out / table / f"sensor_id={sensor}" / f"date={date}"


def date_of(time: datetime | None) -> str:
    return time.date().isoformat() if time is not None else NO_DATE


def absolute(start: datetime | None, seconds: float | None) -> datetime | None:
    """``start`` + ``seconds``, or None when the file's start is unknown."""
    return None if start is None or seconds is None else start + timedelta(seconds=seconds)


def window_row(record: dict[str, Any], *, file: str, file_id: str, shard: int, start: datetime | None) -> dict:
    """A ``window`` record (core.records) as a row of the windows table; ``levels`` flattened to columns."""
    row = {"file": file, "file_id": file_id, "shard": shard, **_span(record, start),
           "label": record["label"], "confidence": record["confidence"],
           "probabilities": record["probabilities"], "level_dbfs": record["level_dbfs"], "silent": record["silent"]}
    levels = record.get("levels") or {}
    row.update({name: levels.get(name) for name in LEVEL_COLUMNS})
    row["levels_reference"] = levels.get("reference")
    row["levels_calibrated"] = levels.get("calibrated")
    bands = levels.get("bands")
    row["bands"] = None if bands is None else list(bands.items())
    return row


def segment_row(record: dict[str, Any], *, file: str, file_id: str, start: datetime | None) -> dict:
    """A ``segment`` record as a row of the segments table."""
    return {"file": file, "file_id": file_id, **_span(record, start), "label": record["label"],
            "confidence": record["confidence"], "silent": record["silent"]}


def _span(record: dict[str, Any], start: datetime | None) -> dict:
    return {"start": record["start"], "end": record["end"], "start_time": absolute(start, record["start"]),
            "end_time": absolute(start, record["end"])}


def write_rows(out: Path, table: str, name: str, rows: Iterable[dict], *, sensor_id: str,
               schema: pa.Schema, date_key: str = "start_time") -> list[str]:
    """Write ``rows`` as ``<partition>/<name>.parquet``, one atomic file per date (rows are split by the UTC date
    of ``date_key``); returns the files written, relative to ``out``."""
    by_date: dict[str, list[dict]] = {}
    for row in rows:
        by_date.setdefault(date_of(row.get(date_key)), []).append(row)
    written = []
    for date, part in sorted(by_date.items()):
        path = partition(out, table, sensor_id, date) / f"{name}.parquet"
        data = pa.Table.from_pylist(part, schema=schema)
        atomic_write(path, lambda tmp: pq.write_table(data, tmp))
        written.append(str(path.relative_to(out)))
    return written


def remove(out: Path, relative: Iterable[str]) -> None:
    """Remove files written by an earlier attempt (a file that failed and now succeeds loses its error row)."""
    for rel in relative:
        path = out / rel
        if path.is_file():
            path.unlink()


def read_table(out: str | Path, table: str) -> pa.Table:
    """One table of a batch's output (``windows``, ``segments``, ``files`` or ``errors``) with its partition
    columns ``sensor_id`` and ``date`` as text; an empty table when nothing was written to it."""
    folder = Path(out) / table
    if not folder.is_dir():
        return pa.table({})
    return ds.dataset(folder, format="parquet",
                      partitioning=ds.partitioning(PARTITIONING, flavor="hive")).to_table()
