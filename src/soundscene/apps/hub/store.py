"""Reading the hub's database: what the API and the page show.  Every query uses bound parameters.

* :func:`fleet`: every sensor with its status, current scene, confidence, level, last seen and location;
* :func:`sensor_detail`: one sensor as in the fleet, with its latest health record;
* :func:`update_sensor`: name, location and tags (a sensor may be described before it first speaks);
* :func:`timeline`: one sensor's segments over a range, and its level series averaged into at most
  :data:`MAX_POINTS` buckets by the database (a month costs the same as a day);
* :func:`health_list`: one sensor's health records over a range, at most :data:`MAX_HEALTH` of them;
* :func:`summary`: the share of time per scene per hour or day bucket, and the hour-of-day profile, from
  segments only;
* :func:`iter_segments`: segments in a range for the CSV and Parquet exports, streamed in pages;
* :func:`alert_list`, :func:`counts`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterator

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.engine import Engine

from .db import alerts, decisions, health, ingest_errors, levels, segments, sensors
from .timeutil import iso

MAX_POINTS = 2000
MAX_HEALTH = 2000  # health records per response (a day at one a minute is 1,440)
EXPORT_PAGE = 5000


def _sensor(row) -> dict[str, Any]:
    location = {k: row[k] for k in ("latitude", "longitude", "x", "y") if row[k] is not None}
    return {"id": row["id"], "name": row["name"] or row["id"], "status": row["status"],
            "status_since": iso(row["status_since"]), "label": row["label"], "confidence": row["confidence"],
            "level": row["level"], "level_reference": row["level_reference"], "silent": row["silent"], "scene_time": iso(row["scene_t"]),
            "last_seen": iso(row["last_seen"]), "first_seen": iso(row["first_seen"]), "location": location or None,
            "tags": row["tags"] or [], "model": {"name": row["model_name"], "version": row["model_version"],
                                                "classes": row["classes"] or []},
            "received": row["received"], "lost": row["lost"]}


def fleet(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [_sensor(r) for r in conn.execute(select(sensors).order_by(sensors.c.id)).mappings()]


def sensor(engine: Engine, sensor_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(sensors).where(sensors.c.id == sensor_id)).mappings().first()
    return None if row is None else _sensor(row)


def sensor_detail(engine: Engine, sensor_id: str) -> dict[str, Any] | None:
    """One sensor as :func:`sensor` gives it, with ``health``: its latest health record (None before any)."""
    with engine.connect() as conn:
        row = conn.execute(select(sensors).where(sensors.c.id == sensor_id)).mappings().first()
        if row is None:
            return None
        latest = conn.execute(select(health.c.record).where(health.c.sensor_id == sensor_id)
                              .order_by(health.c.t.desc(), health.c.id.desc()).limit(1)).scalar()
    return {**_sensor(row), "health": latest}


def health_list(engine: Engine, sensor_id: str, frm: float, to: float, *, limit: int = MAX_HEALTH) -> dict[str, Any]:
    """The health records of ``sensor_id`` timed in [frm, to), oldest first: the newest ``limit`` when there are
    more (``truncated`` then says so)."""
    with engine.connect() as conn:
        found = conn.execute(select(health.c.record).where(
            health.c.sensor_id == sensor_id, health.c.t >= frm, health.c.t < to)
            .order_by(health.c.t.desc(), health.c.id.desc()).limit(limit + 1)).scalars().all()
    return {"sensor_id": sensor_id, "from": iso(frm), "to": iso(to), "truncated": len(found) > limit,
            "records": list(reversed(found[:limit]))}


def update_sensor(engine: Engine, sensor_id: str, values: dict[str, Any], *, now: float) -> dict[str, Any]:
    """Set name / latitude / longitude / x / y / tags of ``sensor_id`` (created when unknown)."""
    with engine.begin() as conn:
        exists = conn.execute(select(sensors.c.id).where(sensors.c.id == sensor_id)).first() is not None
        if exists:
            if values:
                conn.execute(update(sensors).where(sensors.c.id == sensor_id).values(values))
        else:
            conn.execute(insert(sensors).values(id=sensor_id, status="unknown", lost=0, received=0, **values))
    return sensor(engine, sensor_id)


def _segment(row, frm: float | None = None, to: float | None = None) -> dict[str, Any]:
    start = row["start"] if frm is None else max(row["start"], frm)
    end = row["end"] if to is None else min(row["end"], to)
    return {"sensor_id": row["sensor_id"], "start": iso(start), "end": iso(end), "label": row["label"],
            "confidence": round(row["confidence_sum"] / row["count"], 4) if row["label"] is not None else None,
            "decisions": row["count"], "silent": row["label"] is None}


def _overlapping(frm: float, to: float, sensor_id: str | None = None):
    query = select(segments).where(segments.c.end > frm, segments.c.start < to)
    if sensor_id is not None:
        query = query.where(segments.c.sensor_id == sensor_id)
    return query


def timeline(engine: Engine, sensor_id: str, frm: float, to: float) -> dict[str, Any]:
    """Segments overlapping [frm, to) (clipped to it) and the level series in at most MAX_POINTS points."""
    with engine.connect() as conn:
        segs = [_segment(r, frm, to) for r in conn.execute(
            _overlapping(frm, to, sensor_id).order_by(segments.c.start)).mappings()]
        series = _series(conn, levels, levels.c.end, levels.c.laeq, sensor_id, frm, to)
        source = "levels"
        newest = conn.execute(select(levels.c.levels).where(levels.c.sensor_id == sensor_id, levels.c.end < to)
                              .order_by(levels.c.end.desc()).limit(1)).scalar()
        reference = (newest or {}).get("reference")
        if not series:  # the decisions' levels, those relative to what the newest is relative to (one axis)
            reference = conn.execute(select(decisions.c.level_reference).where(
                decisions.c.sensor_id == sensor_id, decisions.c.t < to, decisions.c.level.is_not(None))
                .order_by(decisions.c.t.desc()).limit(1)).scalar()
            series = _series(conn, decisions, decisions.c.t, decisions.c.level, sensor_id, frm, to,
                             decisions.c.level_reference == reference)
            source = "decisions"
    return {"sensor_id": sensor_id, "from": iso(frm), "to": iso(to), "segments": segs,
            "level": {"source": source, "reference": reference, "points": series}}


def _series(conn, table, time_col, value_col, sensor_id: str, frm: float, to: float, *where) -> list[dict]:
    width = (to - frm) / MAX_POINTS
    bucket = func.floor((time_col - frm) / width).label("bucket")
    query = (select(bucket, func.avg(value_col), func.min(value_col), func.max(value_col), func.count(value_col))
             .where(table.c.sensor_id == sensor_id, time_col >= frm, time_col < to, value_col.is_not(None), *where)
             .group_by(bucket).order_by(bucket))
    out = []
    for k, mean, low, high, n in conn.execute(query):
        k = min(int(k), MAX_POINTS - 1)
        out.append({"t": iso(frm + (k + 0.5) * width), "mean": round(float(mean), 1), "min": round(float(low), 1),
                    "max": round(float(high), 1), "n": int(n)})
    return out


def day_levels(engine: Engine, sensor_id: str, frm: float, to: float, *, periods, zone) -> dict[str, Any]:
    """Lday, Levening, Lnight and Lden with their coverage (:mod:`soundscene.core.daylevels`) per local day, from
    the sensor's interval LAeqs (its levels messages), those relative to what its newest one is relative to;
    ``tz`` echoes the time zone used (its IANA key)."""
    from datetime import datetime, timezone

    from ...core.daylevels import day_levels as compute

    with engine.connect() as conn:
        found = conn.execute(select(levels.c.start, levels.c.end, levels.c.laeq, levels.c.levels).where(
            levels.c.sensor_id == sensor_id, levels.c.end > frm, levels.c.start < to).order_by(levels.c.end)).all()
    reference = (found[-1][3] or {}).get("reference") if found else None
    spans = [(datetime.fromtimestamp(a, timezone.utc), datetime.fromtimestamp(b, timezone.utc), laeq)
             for a, b, laeq, whole in found if (whole or {}).get("reference") == reference]
    hours = periods.hours()
    return {"sensor_id": sensor_id, "from": iso(frm), "to": iso(to), "tz": getattr(zone, "key", None) or str(zone),
            "reference": reference,
            "periods": {name: {"start": getattr(periods, name), "hours": hours[name]} for name in hours},
            "days": [d.to_dict() for d in compute(spans, periods=periods, zone=zone)]}


def summary(engine: Engine, frm: float, to: float, *, sensor_id: str | None = None,
            bucket: str = "hour") -> dict[str, Any]:
    """Share of time per scene per bucket (hour or day, UTC) and the hour-of-day profile, from segments."""
    size = 3600.0 if bucket == "hour" else 86400.0
    per_bucket: dict[float, dict] = defaultdict(lambda: defaultdict(float))
    per_hour: dict[int, dict] = defaultdict(lambda: defaultdict(float))
    with engine.connect() as conn:
        query = select(segments.c.start, segments.c.end, segments.c.label).where(
            segments.c.end > frm, segments.c.start < to)
        if sensor_id is not None:
            query = query.where(segments.c.sensor_id == sensor_id)
        for start, end, label in conn.execute(query):
            _spread(max(start, frm), min(end, to), label or "silence", size, per_bucket, per_hour)
    return {"from": iso(frm), "to": iso(to), "sensor": sensor_id, "bucket": bucket,
            "buckets": [{"start": iso(b), "seconds": round(sum(v.values()), 1), "share": _shares(v)}
                        for b, v in sorted(per_bucket.items())],
            "hour_of_day": [{"hour": h, "seconds": round(sum(per_hour[h].values()), 1), "share": _shares(per_hour[h])}
                            for h in range(24)]}


def _spread(start: float, end: float, label: str, size: float, per_bucket, per_hour) -> None:
    """Add [start, end) of ``label`` to the buckets of ``size`` seconds and the hours of day it covers."""
    t = start
    while t < end:
        hour_end = min((t // 3600.0 + 1) * 3600.0, end)
        per_bucket[(t // size) * size][label] += hour_end - t
        per_hour[int(t // 3600.0) % 24][label] += hour_end - t
        t = hour_end


def _shares(seconds: dict[str, float]) -> dict[str, float]:
    total = sum(seconds.values())
    return {k: round(v / total, 4) for k, v in sorted(seconds.items())} if total > 0 else {}


SEGMENT_COLUMNS = ("sensor_id", "start", "end", "label", "confidence", "decisions", "silent")


def iter_segments(engine: Engine, frm: float, to: float, *, sensor_id: str | None = None) -> Iterator[dict]:
    """Segments overlapping the range (clipped), in (start, id) order, read EXPORT_PAGE at a time."""
    last = (float("-inf"), -1)
    while True:
        with engine.connect() as conn:
            query = _overlapping(frm, to, sensor_id).where(
                (segments.c.start > last[0]) | and_(segments.c.start == last[0], segments.c.id > last[1])
            ).order_by(segments.c.start, segments.c.id).limit(EXPORT_PAGE)
            page = list(conn.execute(query).mappings())
        for row in page:
            yield _segment(row, frm, to)
        if len(page) < EXPORT_PAGE:
            return
        last = (page[-1]["start"], page[-1]["id"])


def alert_list(engine: Engine, frm: float, to: float, *, limit: int = 500) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        query = (select(alerts).where(alerts.c.started < to, (alerts.c.ended.is_(None)) | (alerts.c.ended > frm))
                 .order_by(alerts.c.started.desc()).limit(limit))
        return [{"id": r["id"], "rule": r["rule"], "kind": r["kind"], "sensor_id": r["sensor_id"],
                 "started": iso(r["started"]), "ended": iso(r["ended"]), "detail": r["detail"],
                 "start_notified": iso(r["start_notified"]), "end_notified": iso(r["end_notified"])}
                for r in conn.execute(query).mappings()]


def counts(engine: Engine) -> dict[str, Any]:
    """Sensors per status and ingest errors stored, for /metrics and /healthz."""
    with engine.connect() as conn:
        status = dict(conn.execute(select(sensors.c.status, func.count()).group_by(sensors.c.status)).all())
        errors = conn.execute(select(func.count()).select_from(ingest_errors)).scalar()
    return {"sensors": status, "ingest_errors": errors}
