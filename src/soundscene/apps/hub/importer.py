"""Archives on the dashboard: a ``soundscene batch`` result loaded into the hub (``soundscene hub import DIR``).

Each window of ``DIR/windows`` (the batch's Parquet data set) becomes a decision of its sensor and goes through
the same writer as a live sensor's messages (:func:`~soundscene.apps.hub.writer.store_batch`), so segments, the
fleet table, timelines and summaries treat archives and live sensors alike.  A file is one *boot* of its sensor
(``batch-`` and the file's id) and a window's place in its file is its ``seq``: importing the same result twice,
or a resumed batch's result again, stores each window once.  A window is placed at its absolute end time, so only
files with a known start (a manifest's ``start_time``) can be imported; the others are counted and left out, as
are sensor ids that could not be an MQTT sensor's.  Raw decisions older than the hub's ``--keep-days`` are kept
here (an archive is old by nature); the hub's pruning applies to them as to the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ...errors import SoundsceneError
from ..protocol import check_sensor_id
from .messages import SceneMessage
from .writer import store_batch

CHUNK = 5000  # windows per transaction


@dataclass
class ImportResult:
    stored: int = 0
    duplicates: int = 0
    untimed: int = 0  # windows of files without a start time
    refused_sensors: int = 0  # windows of sensor ids that are not valid ones


def import_batch(engine, folder: str | Path) -> ImportResult:
    """Store the windows of the batch result in ``folder``; see the module docstring."""
    folder = Path(folder)
    if not (folder / "windows").is_dir():
        raise SoundsceneError(f"{folder}: has no windows/ folder: not a soundscene batch result, or one whose "
                              "batch wrote no window yet (see its summary.json)")
    try:
        settings = json.loads((folder / "batch.json").read_text())
        from ..batch.output import read_table

        rows = read_table(folder, "windows").to_pylist()
    except (OSError, ValueError) as exc:
        raise SoundsceneError(f"{folder}: not a soundscene batch result ({exc})") from None
    result, messages = ImportResult(), []
    version = str(settings.get("model_sha256", ""))[:12] or None
    rows.sort(key=lambda r: (r["sensor_id"], r["file_id"], r["start"]))
    seq, last = 0, None
    for row in rows:
        if row["end_time"] is None:
            result.untimed += 1
            continue
        try:
            sensor = check_sensor_id(row["sensor_id"])
        except SoundsceneError:
            result.refused_sensors += 1
            continue
        seq = seq + 1 if (sensor, row["file_id"]) == last else 1
        last = (sensor, row["file_id"])
        messages.append(_message(row, sensor, seq, settings, version))
        if len(messages) >= CHUNK:
            _store(engine, messages, result)
    _store(engine, messages, result)
    return result


def _message(row: dict, sensor: str, seq: int, settings: dict, version: str | None) -> SceneMessage:
    laeq = row.get("LAeq")
    level = laeq if laeq is not None else row["level_dbfs"]
    reference = None if level is None else ("dB SPL" if laeq is not None and row.get("levels_calibrated")
                                            else "dBFS")
    probabilities = row["probabilities"] if not row["silent"] else None
    return SceneMessage(
        sensor_id=sensor, boot=f"batch-{row['file_id']}"[:64], seq=seq, t=row["end_time"].timestamp(),
        hop=float(settings.get("hop_seconds") or row["end"] - row["start"]), label=row["label"],
        confidence=row["confidence"], level=level, level_reference=reference, silent=bool(row["silent"]),
        probabilities=probabilities, model_name="batch", model_version=version,
        classes=tuple(settings.get("classes") or ()), levels=None)


def _store(engine, messages: list, result: ImportResult) -> None:
    if messages:
        done = store_batch(engine, messages, keep_days=float("inf"))
        result.stored += done.stored
        result.duplicates += done.duplicates
        messages.clear()
