"""Storing a batch of messages in one transaction: each (sensor, boot, seq) once, gaps counted, segments kept.

:func:`store_batch` is the only writer of sensor data.  It takes messages already checked by
:func:`soundscene.apps.hub.messages.parse` (and the refused ones, as :class:`Refused`), stores them in one
transaction and returns the :class:`Event` list of what changed, for the live feed and the alert rules.
Nothing in it knows MQTT, so a later ``hub import`` of batch results can call it too.

Idempotence: decisions, level messages and health records are inserted with ``ON CONFLICT DO NOTHING`` on their unique
(sensor, boot, seq); only a row really inserted counts, extends the segments and moves the sensor's
counters, so a replay, a retained message re-delivered at restart or a message delivered twice changes
nothing.  A message older than the current scene (out of order) is stored and folded into its segment
but does not replace the sensor's current scene.

Lost messages: per (sensor, boot) the lowest and highest ``seq`` and the count stored give
``max - min + 1 - count`` missing in between; the sensor's ``lost`` is their sum, updated by difference.
Scene, levels and health messages share a sensor's numbering, so each of them counts.

Absurd numbers and times are refused (an ``ingest_errors`` row; topic ``soundscene/<id>/<kind>`` and, for a
payload, what identifies the message: the writer does not have its bytes), never stored:

* a ``seq`` more than :data:`MAX_SEQ_JUMP` (10**6) plus :data:`MAX_SEQ_RATE` (100) per second since the sensor
  was last heard ahead of its boot's highest, or more than 10**6 behind its boot's lowest: a sensor cannot
  have sent that many messages, so it is a corrupt or forged number, not a loss (seq 1 then 10**12 would
  count 999,999,999,998 lost, and gaps of 2**62 would overflow the counter).  A real outage of days, its
  spool dropping the oldest messages, is allowed by the per-second term;
* a message more than a day ahead of ``now`` (see :mod:`.messages`, which refuses it already when it
  parses; this guards the other callers, such as ``hub import``).

Several hubs on one PostgreSQL: the sensors of a batch are locked (``SELECT ... FOR UPDATE``, in id order,
so two hubs never deadlock), which serialises the segments of a sensor across hubs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from . import segments as seg
from ..protocol import TOPIC_ROOT
from .db import boots, decisions, health, ingest_errors, levels, sensors
from .messages import MAX_FUTURE_SECONDS, HealthMessage, LevelsMessage, SceneMessage, StatusMessage, excerpt

DEFAULT_KEEP_DAYS = 30.0
MAX_SEQ_JUMP = 1_000_000  # seq numbers beyond a boot's range that are never an absurd jump
MAX_SEQ_RATE = 100.0  # messages per second a sensor may have sent (and lost) since it was last heard
_KINDS = {SceneMessage: "scene", LevelsMessage: "levels", HealthMessage: "health"}


@dataclass(frozen=True)
class Refused:
    """A message that could not be stored, for ``ingest_errors``."""

    topic: str
    payload: bytes
    reason: str


@dataclass
class Event:
    """What a stored message changed: ``kind`` is ``decision``, ``levels``, ``health``, ``status`` or ``error``."""

    kind: str
    sensor_id: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchResult:
    events: list[Event]
    stored: int = 0  # decisions, level messages and health records newly stored
    duplicates: int = 0
    expired: int = 0  # older than the retention period: not stored
    errors: int = 0
    lags: list[float] = field(default_factory=list)  # store time - message time, per stored decision


def _insert_ignore(conn: Connection, table):
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def store_batch(engine: Engine, items: Iterable, *, keep_days: float = DEFAULT_KEEP_DAYS,
                now: float | None = None) -> BatchResult:
    """Store ``items`` (SceneMessage, LevelsMessage, HealthMessage, StatusMessage or Refused) in one transaction."""
    now = time.time() if now is None else now
    items = [_in_time(item, now) for item in items]
    result = BatchResult(events=[])
    with engine.begin() as conn:
        ids = sorted({m.sensor_id for m in items if not isinstance(m, Refused)})
        state = _lock_sensors(conn, ids, now)
        batch = _Batch(conn, state, now, now - keep_days * 86400.0, result)
        for item in items:
            batch.add(item)
        batch.flush()
    return result


def _time_of(m) -> float:
    return m.end if isinstance(m, LevelsMessage) else m.t


def refusal(m, reason: str) -> Refused:
    """``m`` (a Scene, Levels or Health message) as a Refused, with what identifies it for a payload."""
    ident = {"sensor_id": m.sensor_id, "boot": m.boot, "seq": m.seq, "t": _time_of(m)}
    return Refused(f"{TOPIC_ROOT}/{m.sensor_id}/{_KINDS[type(m)]}", json.dumps(ident).encode(), reason)


def _in_time(item, now: float):
    """``item``, or a Refused when its time is more than a day ahead of ``now`` (the API could not show it)."""
    if type(item) in _KINDS and not _time_of(item) <= now + MAX_FUTURE_SECONDS:
        return refusal(item, f"time {_time_of(item):.0f} (seconds since 1970) is more than "
                             f"{MAX_FUTURE_SECONDS / 3600:g} hours ahead of the hub's clock")
    return item


def _lock_sensors(conn: Connection, ids: list[str], now: float) -> dict[str, dict]:
    if not ids:
        return {}
    known = set(conn.execute(select(sensors.c.id).where(sensors.c.id.in_(ids))).scalars())
    new = [{"id": i, "first_seen": now, "status": "unknown", "lost": 0, "received": 0} for i in ids if i not in known]
    if new:  # in id order, ignoring a sensor another hub has just added
        conn.execute(_insert_ignore(conn, sensors), new)
    query = select(sensors).where(sensors.c.id.in_(ids)).order_by(sensors.c.id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return {row["id"]: dict(row) for row in conn.execute(query).mappings()}


class _Batch:
    """The work of one transaction; sensor rows and boots are read once and written back in :meth:`flush`."""

    def __init__(self, conn: Connection, state: dict[str, dict], now: float, oldest: float, result: BatchResult):
        self.conn, self.state, self.now, self.oldest, self.result = conn, state, now, oldest, result
        self.changed: set[str] = set()
        self.boots: dict[tuple[str, str], dict] = {}
        self.new_boots: set[tuple[str, str]] = set()

    def add(self, item) -> None:
        if isinstance(item, Refused):
            self.conn.execute(insert(ingest_errors).values(time=self.now, topic=item.topic[:1000],
                                                           payload=excerpt(item.payload), reason=item.reason))
            self.result.errors += 1
            self.result.events.append(Event("error", "", {"topic": item.topic, "reason": item.reason}))
        elif isinstance(item, StatusMessage):
            self._status(item)
        elif isinstance(item, SceneMessage):
            self._scene(item)
        elif isinstance(item, LevelsMessage):
            self._levels(item)
        elif isinstance(item, HealthMessage):
            self._health(item)

    def _status(self, m: StatusMessage) -> None:
        sensor = self.state[m.sensor_id]
        if sensor["status"] != m.status:
            sensor.update(status=m.status, status_since=self.now)
            self.changed.add(m.sensor_id)
            self.result.events.append(Event("status", m.sensor_id, {"status": m.status, "since": self.now}))

    def _refused(self, m) -> bool:
        """Count ``m`` as expired, or store it as an ingest error (an absurd seq): True when it is not stored."""
        if _time_of(m) < self.oldest:
            self.result.expired += 1
            return True
        reason = self._absurd_seq(m)
        if reason is not None:
            self.add(refusal(m, reason))
        return reason is not None

    def _scene(self, m: SceneMessage) -> None:
        if self._refused(m):
            return
        row = {"sensor_id": m.sensor_id, "boot": m.boot, "seq": m.seq, "t": m.t, "stored": time.time(),
               "hop": m.hop, "label": m.label, "confidence": m.confidence, "level": m.level,
               "level_reference": m.level_reference, "silent": m.silent, "probabilities": m.probabilities}
        if self.conn.execute(_insert_ignore(self.conn, decisions).values(row).returning(decisions.c.id)).first() is None:
            self.result.duplicates += 1
            return
        newest = self._count(m.sensor_id, m.boot, m.seq)
        seg.add(self.conn, m.sensor_id, m.boot, seg.Point(m.seq, m.t, m.hop, m.label, m.confidence), newest=newest)
        self.result.lags.append(row["stored"] - m.t)
        sensor = self.state[m.sensor_id]
        sensor["last_seen"] = max(sensor["last_seen"] or 0.0, m.t)
        if m.model_name is not None:
            sensor.update(model_name=m.model_name, model_version=m.model_version)
        if m.classes and list(m.classes) != (sensor["classes"] or []):
            sensor["classes"] = list(m.classes)
        current = sensor["scene_t"] is None or m.t >= sensor["scene_t"]
        if current:
            sensor.update(label=m.label, confidence=m.confidence, level=m.level, level_reference=m.level_reference,
                          silent=m.silent, scene_t=m.t)
        if sensor["status"] != "online":  # a sensor that speaks is online, whatever its status topic said
            sensor.update(status="online", status_since=self.now)
            self.result.events.append(Event("status", m.sensor_id, {"status": "online", "since": self.now}))
        self.changed.add(m.sensor_id)
        self.result.events.append(Event("decision", m.sensor_id, {
            "seq": m.seq, "boot": m.boot, "t": m.t, "label": m.label, "confidence": m.confidence, "level": m.level,
            "level_reference": m.level_reference, "silent": m.silent, "levels": m.levels, "current": current}))

    def _levels(self, m: LevelsMessage) -> None:
        if self._refused(m):
            return
        row = {"sensor_id": m.sensor_id, "boot": m.boot, "seq": m.seq, "start": m.start, "end": m.end,
               "stored": time.time(), "laeq": m.laeq, "levels": m.levels}
        if self.conn.execute(_insert_ignore(self.conn, levels).values(row).returning(levels.c.id)).first() is None:
            self.result.duplicates += 1
            return
        self._count(m.sensor_id, m.boot, m.seq)
        sensor = self.state[m.sensor_id]
        sensor["last_seen"] = max(sensor["last_seen"] or 0.0, m.end)
        self.changed.add(m.sensor_id)
        self.result.events.append(Event("levels", m.sensor_id, {"seq": m.seq, "start": m.start, "end": m.end,
                                                                "laeq": m.laeq}))

    def _health(self, m: HealthMessage) -> None:
        if self._refused(m):
            return
        row = {"sensor_id": m.sensor_id, "boot": m.boot, "seq": m.seq, "t": m.t, "stored": time.time(),
               "record": m.record}
        if self.conn.execute(_insert_ignore(self.conn, health).values(row).returning(health.c.id)).first() is None:
            self.result.duplicates += 1
            return
        self._count(m.sensor_id, m.boot, m.seq)
        sensor = self.state[m.sensor_id]
        sensor["last_seen"] = max(sensor["last_seen"] or 0.0, m.t)
        self.changed.add(m.sensor_id)
        self.result.events.append(Event("health", m.sensor_id, {"seq": m.seq, "boot": m.boot, "t": m.t,
                                                                "record": m.record}))

    def _boot(self, sensor_id: str, boot: str) -> dict | None:
        """The boot's row (read once per batch), or None for a boot not seen yet."""
        key = (sensor_id, boot)
        if key not in self.boots:
            found = self.conn.execute(select(boots).where(and_(boots.c.sensor_id == sensor_id,
                                                               boots.c.boot == boot))).mappings().first()
            if found is None:
                return None
            self.boots[key] = dict(found)
        return self.boots[key]

    def _absurd_seq(self, m) -> str | None:
        """Why ``m.seq`` is too far from its boot's numbering to be a loss (see the module's docstring), or None."""
        b = self._boot(m.sensor_id, m.boot)
        if b is None or not b["received"]:
            return None
        heard = self.state[m.sensor_id]["last_seen"]
        since = 0.0 if heard is None else max(0.0, _time_of(m) - heard)
        ahead = MAX_SEQ_JUMP + int(MAX_SEQ_RATE * since)
        boot = m.boot or '""'
        if m.seq - b["max_seq"] > ahead:
            return (f"seq {m.seq} is {m.seq - b['max_seq']} ahead of {b['max_seq']}, the highest of boot {boot}: more "
                    f"than the {ahead} a sensor could have sent since it was last heard (a corrupt or forged number)")
        if b["min_seq"] - m.seq > MAX_SEQ_JUMP:
            return (f"seq {m.seq} is {b['min_seq'] - m.seq} behind {b['min_seq']}, the lowest of boot {boot}: more "
                    f"than {MAX_SEQ_JUMP} (a corrupt or forged number)")
        return None

    def _count(self, sensor_id: str, boot: str, seq: int) -> bool:
        """Count a newly stored message of the boot; True when its seq is the highest of the boot so far."""
        key = (sensor_id, boot)
        b = self._boot(sensor_id, boot)
        if b is None:
            b = {"sensor_id": sensor_id, "boot": boot, "min_seq": seq, "max_seq": seq, "received": 0,
                 "first_seen": self.now}
            self.new_boots.add(key)
            self.boots[key] = b
        newest = b["received"] == 0 or seq > b["max_seq"]
        lost_before = b["max_seq"] - b["min_seq"] + 1 - b["received"] if b["received"] else 0
        b.update(min_seq=min(b["min_seq"], seq), max_seq=max(b["max_seq"], seq), received=b["received"] + 1)
        lost_after = b["max_seq"] - b["min_seq"] + 1 - b["received"]
        sensor = self.state[sensor_id]
        sensor["lost"] += lost_after - lost_before
        sensor["received"] += 1
        self.result.stored += 1
        return newest

    def flush(self) -> None:
        for key, b in self.boots.items():
            if key in self.new_boots:
                self.conn.execute(insert(boots).values(b))
            else:
                self.conn.execute(update(boots).where(boots.c.sensor_id == key[0], boots.c.boot == key[1])
                                  .values(min_seq=b["min_seq"], max_seq=b["max_seq"], received=b["received"]))
        columns = [c.name for c in sensors.columns if c.name not in ("id", "name", "latitude", "longitude", "x", "y",
                                                                     "tags", "first_seen")]
        for sensor_id in sorted(self.changed):
            sensor = self.state[sensor_id]
            self.conn.execute(update(sensors).where(sensors.c.id == sensor_id)
                              .values({c: sensor[c] for c in columns}))


def prune(engine: Engine, *, keep_days: float = DEFAULT_KEEP_DAYS, now: float | None = None) -> int:
    """Delete decisions, level messages and health records older than ``keep_days`` (segments and alerts stay);
    rows deleted."""
    oldest = (time.time() if now is None else now) - keep_days * 86400.0
    with engine.begin() as conn:
        gone = conn.execute(delete(decisions).where(decisions.c.t < oldest)).rowcount
        gone += conn.execute(delete(levels).where(levels.c.end < oldest)).rowcount
        gone += conn.execute(delete(health).where(health.c.t < oldest)).rowcount
        conn.execute(delete(ingest_errors).where(ingest_errors.c.time < oldest))
    return gone
