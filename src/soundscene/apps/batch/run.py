"""A batch run from start to end: claim DIR, plan, run the shards not yet done, finish each file, summarise.

    result = run_batch("model.safetensors", ["archive/"], "out/", engine="local", workers=4)
    result.failed, result.summary          # and out/windows/, segments/, files/, errors/, summary.json

A DIR holds one model and one set of settings (``batch.json``): another model or setting is refused in one
line naming each difference.  Rerunning the same command skips the shards already done (a shard is done when
its marker is written, after its windows), so a run that was killed, even with SIGKILL, redoes only the shards
that were in flight; shards that failed are tried again.  A file is finished (its ``files/`` row, segments,
or ``errors/`` row) as soon as its last shard is done, from its shards' recorded windows.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..._io import atomic_write, atomic_write_json
from ...errors import SoundsceneError
from ...core.records import Prediction, Window
from . import output
from .engines import ENGINES, run_local, run_ray
from .plan import SHARD_MINUTES, FileEntry, gather, plan_files, plan_rows
from .progress import Progress, duration_text
from .shards import STATE, Settings, load_classifier, marker_path, read_marker

RUN_FILE = "batch.json"
PLANNING_RATE = 110.0  # audio seconds per CPU second of a worker, for a first run's estimate (bench_batch.py)
# seconds before a worker scores its first shard (a process importing torch and loading the model; Ray also
# starts its runtime): part of the estimate, which a short batch is mostly made of
WORKER_STARTUP_SECONDS = {"local": 5.0, "ray": 20.0}


@dataclass
class BatchResult:
    """What a run did: files and their failures (name, reason), shards run now and skipped, the summary."""

    out: Path
    files: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    shards: int = 0
    shards_run: int = 0
    shards_skipped: int = 0
    cpu_seconds: float = 0.0  # the workers' CPU time on the shards run now
    audio_seconds_run: float = 0.0  # the audio of the shards run now
    summary: dict = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return len(self.errors)


def run_batch(model: str | Path, inputs: Sequence[str | Path], out: str | Path, *, engine: str = "local",
              workers: int = 1, ray_address: str | None = None, shard_minutes: float = 10.0,
              window_seconds: float | None = None, hop_seconds: float | None = None,
              silence_dbfs: float | None = None, calibration_db: float | None = None, levels: bool = True,
              progress: Progress | None = None, report: Callable[[str], None] = lambda line: None,
              setup: Callable[[], object] | None = None) -> BatchResult:
    """Run (or resume) a batch; see the module docstring.  ``report`` gets the plan's summary lines;
    ``setup`` runs once in each worker process before the model is loaded (the CLI's allocator setting)."""
    if engine not in ENGINES:
        raise SoundsceneError(f"--engine {engine!r}: use one of {', '.join(ENGINES)}")
    problem = SHARD_MINUTES.refusal(shard_minutes)
    if problem:
        raise SoundsceneError(f"--shard-minutes {problem}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SoundsceneError(f"--workers {workers!r}: give a whole number of at least 1")
    if engine == "ray":
        _require_ray()
    out = Path(out)
    settings = Settings(str(model), window_seconds, hop_seconds, silence_dbfs, calibration_db, shard_minutes,
                        levels)
    classifier = load_classifier(settings)
    claim(out, fingerprint(classifier, settings))
    _remove_leftovers(out)
    started = time.monotonic()
    entries = plan_files(gather(inputs), classifier=classifier, shard_minutes=shard_minutes)
    _write_plan(out, entries, classifier.sample_rate)
    finisher = Finisher(out, classifier)
    shards = [s for e in entries for s in e.shards]
    pending = _pending(out, entries)
    result = BatchResult(out, len(entries), shards=len(shards), shards_skipped=len(shards) - len(pending))
    hours = sum(e.duration_seconds for e in entries if e.problem is None) / 3600
    rate = read_json(out / "summary.json").get("audio_hours_per_core_hour") or PLANNING_RATE  # an earlier run's
    for line in _plan_lines(entries, shards, pending, hours, workers, rate, WORKER_STARTUP_SECONDS[engine]):
        report(line)
    by_file = {e.file_id: e for e in entries}
    todo = {s.shard_id for s in pending}
    remaining = {e.file_id: sum(1 for s in e.shards if s.shard_id in todo) for e in entries}
    progress = progress or Progress(enabled=False)
    progress.begin(sum(s.seconds for s in pending))
    run = run_ray if engine == "ray" else run_local
    kwargs = {"address": ray_address} if engine == "ray" else {}
    for done in run([s.to_dict() for s in pending], settings=settings.to_dict(), out=str(out), workers=workers,
                    setup=setup, **kwargs):
        result.shards_run += 1
        result.cpu_seconds += done["cpu_seconds"]
        result.audio_seconds_run += done["seconds"]
        progress.advance(done["seconds"])
        remaining[done["file_id"]] -= 1
        if remaining[done["file_id"]] == 0:
            finisher.finish(by_file[done["file_id"]])
    progress.close()
    for entry in entries:
        if finisher.finished(entry) or (entry.problem is None and finisher.resume(entry)):
            continue
        if entry.problem is not None or remaining[entry.file_id] == 0:
            finisher.finish(entry)
    result.errors = [(e.name, finisher.reasons[e.file_id]) for e in entries if e.file_id in finisher.reasons]
    result.summary = _summary(out, entries, finisher.rows, result, settings, classifier,
                              time.monotonic() - started, engine, workers)
    return result


def _pending(out: Path, entries: Sequence[FileEntry]) -> list:
    """The shards to run: those without a marker that says done.  A file to be finished again needs every
    shard's windows, so the shards of a finished file (their markers keep none) are run again with it."""
    pending = []
    for entry in entries:
        markers = [read_marker(out, s.shard_id) or {} for s in entry.shards]
        todo = [s for s, m in zip(entry.shards, markers) if m.get("status") != "ok"]
        if todo and any(m.get("finished") for m in markers):
            todo = list(entry.shards)
        pending += todo
    return pending


def _require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        from .engines import RAY_INSTALL

        raise SoundsceneError(RAY_INSTALL) from None


# -- the DIR's identity ----------------------------------------------------------------------------------------

def fingerprint(classifier, settings: Settings) -> dict:
    """What must not change within one DIR: the model (its file's SHA-256), its classes, the windowing and the
    other settings that change the numbers."""
    digest = hashlib.sha256(Path(classifier.path).read_bytes()).hexdigest() if classifier.path else None
    return {"model_sha256": digest, "classes": list(classifier.classes),
            "window_seconds": classifier.window_seconds, "hop_seconds": classifier.hop_seconds,
            "silence_dbfs": classifier.silence_dbfs, "calibration_db": settings.calibration_db,
            "shard_minutes": settings.shard_minutes, "levels": settings.levels}


def claim(out: Path, identity: dict) -> None:
    """Record ``identity`` in ``out/batch.json``, or refuse a DIR that holds a run of another model or settings,
    in one line naming each difference (old -> new)."""
    path = out / RUN_FILE
    if path.is_file():
        import json

        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise SoundsceneError(f"{path}: cannot be read; choose another --out") from None
        differs = [f"{key} {_shown(old.get(key))} -> {_shown(identity.get(key))}"
                   for key in sorted(set(old) | set(identity)) if old.get(key) != identity.get(key)]
        if differs:
            raise SoundsceneError(f"{out} holds a batch of another model or settings ({'; '.join(differs)}); "
                                  "rerun with the same ones to resume, or choose another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, identity)


def _shown(value) -> str:
    if isinstance(value, str) and len(value) == 64:
        return value[:12]  # a digest
    return "none" if value is None else str(value)


def _remove_leftovers(out: Path) -> None:
    """Temporary files of writes cut short by a kill (atomic writes leave the old file or none, and these)."""
    for table in (*output.TABLES, STATE):
        folder = out / table
        if folder.is_dir():
            for tmp in folder.rglob(".*.tmp"):
                tmp.unlink(missing_ok=True)


# -- the plan ----------------------------------------------------------------------------------------------------

PLAN_SCHEMA = pa.schema([("file", pa.string()), ("file_id", pa.string()), ("sensor_id", pa.string()),
                         ("start_time", pa.timestamp("ms", tz="UTC")), ("duration_seconds", pa.float64()),
                         ("sample_rate", pa.int32()), ("channels", pa.int32()), ("shard", pa.int32()),
                         ("shard_id", pa.string()), ("first_seconds", pa.float64()),
                         ("stop_seconds", pa.float64()), ("problem", pa.string())])


def _write_plan(out: Path, entries: Sequence[FileEntry], rate: int) -> None:
    table = pa.Table.from_pylist(plan_rows(entries, rate=rate), schema=PLAN_SCHEMA)
    atomic_write(out / "plan.parquet", lambda tmp: pq.write_table(table, tmp))


def _plan_lines(entries, shards, pending, hours: float, workers: int, rate: float, startup: float) -> list[str]:
    bad = sum(e.problem is not None for e in entries)
    todo = sum(s.seconds for s in pending)
    lines = [f"plan: {len(entries)} file(s){f' ({bad} unusable)' if bad else ''}, {hours:.2f} h of audio, "
             f"{len(shards)} shard(s)"]
    if len(pending) < len(shards):
        lines.append(f"resuming: {len(shards) - len(pending)} shard(s) done, {len(pending)} to do")
    if pending:
        lines.append(f"estimated time: about {duration_text(startup + todo / (rate * workers))} on {workers} "
                     f"worker(s) ({startup:.0f} s to start them, then {rate:.0f}x real time each)")
    return lines


# -- finishing files -----------------------------------------------------------------------------------------------

class Finisher:
    """Turns a file's shard results into its ``files/`` row and segments, or its ``errors/`` row, and records
    that in ``state/files/<file>.json``.  Once a file is finished, its shards' markers keep no windows (its
    outputs hold them): the state stays small beside the output."""

    def __init__(self, out: Path, classifier):
        self.out, self.classes = out, list(classifier.classes)
        self.silence_dbfs = classifier.silence_dbfs
        self.schemas = output.schemas(self.classes)
        self.reasons: dict[str, str] = {}
        self.rows: dict[str, dict] = {}
        self._done: set[str] = set()

    def finished(self, entry: FileEntry) -> bool:
        return entry.file_id in self._done

    def finish(self, entry: FileEntry) -> None:
        markers = [read_marker(self.out, s.shard_id) for s in entry.shards]
        failed = next((m for m in markers if m is None or m["status"] != "ok"), None)
        reason = entry.problem or (failed and (failed.get("error") or "a shard was not done"))
        prediction = None if reason else self._prediction(entry, markers)
        if prediction is not None and prediction.error:
            reason = prediction.error
        record = None if reason else prediction.to_record()
        row = self._file_row(entry, record, reason)
        state = self.out / STATE / "files" / f"{entry.file_id}.json"
        written = self._write(entry, row, record, reason)
        old = read_json(state)
        output.remove(self.out, set(old.get("written", [])) - set(written))
        atomic_write_json(state, {"status": row["status"], "written": written, "label": row["label"],
                                  "duration_seconds": row["duration_seconds"], "error": reason})
        if reason:
            self.reasons[entry.file_id] = reason
        else:
            self._slim(entry)
        self.rows[entry.file_id] = row
        self._done.add(entry.file_id)

    def resume(self, entry: FileEntry) -> bool:
        """Take a file that an earlier run finished without error as it is; False when it must be finished."""
        state = read_json(self.out / STATE / "files" / f"{entry.file_id}.json")
        if state.get("status") != "ok":
            return False
        self.rows[entry.file_id] = {"label": state.get("label"), "duration_seconds": state.get("duration_seconds")}
        self._done.add(entry.file_id)
        return True

    def _slim(self, entry: FileEntry) -> None:
        for shard in entry.shards:
            marker = read_marker(self.out, shard.shard_id)
            if marker is not None and marker.get("windows"):
                atomic_write_json(marker_path(self.out, shard.shard_id), {**marker, "windows": [], "finished": True})

    def _prediction(self, entry: FileEntry, markers: list[dict]) -> Prediction:
        """The file's result from its shards, computed as ``predict`` computes it from its windows."""
        if max(m["peak"] for m in markers) == 0.0:
            return Prediction(entry.name, self.classes, None, error=f"{entry.name}: is digital silence (every "
                                                                     "sample is 0)")
        windows = [Window(start, end, None if probs is None else np.array(probs, dtype=np.float32))
                   for m in markers for start, end, probs in m["windows"]]
        heard = [w.probabilities for w in windows if not w.silent]
        energy, count = sum(m["energy"] for m in markers), sum(m["count"] for m in markers)
        level = 10 * math.log10(energy / count) if energy > 0 else float("-inf")
        return Prediction(entry.name, self.classes, np.mean(heard, axis=0) if heard else None, windows,
                          entry.duration_seconds, level, silence_dbfs=self.silence_dbfs)

    def _file_row(self, entry: FileEntry, record: dict | None, reason: str | None) -> dict:
        row = {"file": entry.name, "file_id": entry.file_id, "start_time": entry.start_time,
               "duration_seconds": round(entry.duration_seconds, 3) if entry.sample_rate else None,
               "label": None, "confidence": None, "probabilities": None, "level_dbfs": None, "windows": None,
               "warning": None, "status": "error" if reason else "ok", "error": reason}
        if record is not None:
            row.update({key: record.get(key) for key in ("label", "confidence", "probabilities", "level_dbfs",
                                                           "warning")}, windows=len(record["windows"]))
        return row

    def _write(self, entry: FileEntry, row: dict, record: dict | None, reason: str | None) -> list[str]:
        kw = {"sensor_id": entry.sensor_id}
        written = output.write_rows(self.out, "files", entry.file_id, [row], schema=self.schemas["files"], **kw)
        if reason:
            error = {"file": entry.name, "file_id": entry.file_id, "reason": reason, "start_time": entry.start_time}
            written += output.write_rows(self.out, "errors", entry.file_id, [error], schema=self.schemas["errors"],
                                         **kw)
        if record is not None:
            rows = [output.segment_row(s, file=entry.name, file_id=entry.file_id, start=entry.start_time)
                    for s in record["segments"]]
            written += output.write_rows(self.out, "segments", entry.file_id, rows,
                                         schema=self.schemas["segments"], **kw)
        return written


def read_json(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# -- the summary -------------------------------------------------------------------------------------------------

def _summary(out: Path, entries, rows_by_file: dict, result: BatchResult, settings: Settings, classifier,
             seconds: float, engine: str, workers: int) -> dict:
    """``summary.json``: counts, hours, time, the settings, hours of audio by file label, the errors."""
    rows = [rows_by_file[e.file_id] for e in entries if e.file_id in rows_by_file]
    hours = sum(e.duration_seconds for e in entries if e.problem is None) / 3600
    labels: dict[str, float] = {}
    for r in rows:
        if r["label"]:
            labels[r["label"]] = labels.get(r["label"], 0.0) + (r["duration_seconds"] or 0.0) / 3600
    summary = {"files": len(entries), "failed": result.failed, "audio_hours": round(hours, 4),
               "shards": result.shards, "shards_run": result.shards_run, "shards_skipped": result.shards_skipped,
               "seconds": round(seconds, 3), "engine": engine, "workers": workers,
               "worker_cpu_seconds": round(result.cpu_seconds, 3),
               "audio_hours_per_core_hour": (round(result.audio_seconds_run / result.cpu_seconds, 1)
                                             if result.cpu_seconds else None),  # the shards' own, start excluded
               "model": {"path": str(classifier.path), "classes": list(classifier.classes)},
               "settings": {**settings.to_dict(), "window_seconds": classifier.window_seconds,
                            "hop_seconds": classifier.hop_seconds, "silence_dbfs": classifier.silence_dbfs},
               "hours_by_file_label": {k: round(v, 4) for k, v in sorted(labels.items())},
               "errors": [{"file": name, "reason": reason} for name, reason in result.errors],
               "finished": datetime.now().astimezone().isoformat(timespec="seconds")}
    atomic_write_json(out / "summary.json", summary)
    return summary
