"""Segments: runs of one scene per sensor and boot, kept up to date as each decision is stored.

A decision at time ``t`` covers ``[t - hop, t]``.  Consecutive decisions (in ``seq`` order) belong to one
segment while their label (None for silence) stays the same and they are no more than :func:`gap_seconds`
apart; a longer silence of the sensor (it was off, or its messages were lost) starts a new segment, so a
timeline never paints an outage as a scene.

The common case, a decision newer than every other of its boot, extends or closes the boot's last segment
in two indexed queries and one write.  A decision that arrives late (out of order, or a replay of one never
stored) re-cuts the segments on either side of it from the stored decisions of that range, so the result is
the same whatever the order of arrival.  A month's timeline therefore reads segments, never raw decisions.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.engine import Connection

from .db import decisions, segments


def gap_seconds(hop: float) -> float:
    """Two decisions further apart than this are in different segments (an outage, not a scene)."""
    return max(3.0 * hop, 30.0)


@dataclass
class Point:
    seq: int
    t: float
    hop: float
    label: str | None
    confidence: float | None


def add(conn: Connection, sensor_id: str, boot: str, p: Point, *, newest: bool = False) -> None:
    """Fold one newly stored decision into the segments of ``(sensor_id, boot)``.

    ``newest``: no message of the boot has a higher seq (the caller knows it from the boot's counters), so no
    segment can follow: one query fewer in the usual case."""
    same = and_(segments.c.sensor_id == sensor_id, segments.c.boot == boot)
    before = conn.execute(select(segments).where(same, segments.c.first_seq <= p.seq)
                          .order_by(segments.c.first_seq.desc()).limit(1)).mappings().first()
    after = None if newest else conn.execute(select(segments).where(same, segments.c.first_seq > p.seq)
                                             .order_by(segments.c.first_seq).limit(1)).mappings().first()
    if before is not None and p.seq <= before["last_seq"]:  # a hole inside a run
        if before["label"] == p.label:
            conn.execute(update(segments).where(segments.c.id == before["id"]).values(
                count=segments.c.count + 1, confidence_sum=segments.c.confidence_sum + (p.confidence or 0.0)))
        else:
            _recut(conn, sensor_id, boot, [before], before["first_seq"], before["last_seq"])
        return
    if after is None:  # the newest decision of its boot: the usual case
        if before is not None and _continues(before, p):
            conn.execute(update(segments).where(segments.c.id == before["id"]).values(
                end=max(before["end"], p.t), last_seq=p.seq, count=segments.c.count + 1,
                confidence_sum=segments.c.confidence_sum + (p.confidence or 0.0)))
        else:
            conn.execute(insert(segments).values(_new(sensor_id, boot, p, before["end"] if before else None)))
        return
    touching = [s for s in (before, after) if s is not None]
    _recut(conn, sensor_id, boot, touching, touching[0]["first_seq"] if before else p.seq, after["last_seq"])


def _continues(segment, p: Point) -> bool:
    return segment["label"] == p.label and p.t - segment["end"] <= gap_seconds(p.hop)


def _new(sensor_id: str, boot: str, p: Point, previous_end: float | None) -> dict:
    start = p.t - p.hop
    if previous_end is not None and previous_end > start:
        start = min(previous_end, p.t)
    return {"sensor_id": sensor_id, "boot": boot, "start": start, "end": p.t, "label": p.label,
            "confidence_sum": p.confidence or 0.0, "count": 1, "first_seq": p.seq, "last_seq": p.seq}


def _recut(conn: Connection, sensor_id: str, boot: str, old, first_seq: int, last_seq: int) -> None:
    """Replace the segments ``old`` by the runs of the stored decisions with seq in [first_seq, last_seq]."""
    conn.execute(delete(segments).where(segments.c.id.in_([s["id"] for s in old])))
    rows = conn.execute(select(decisions.c.seq, decisions.c.t, decisions.c.hop, decisions.c.label,
                               decisions.c.confidence)
                        .where(decisions.c.sensor_id == sensor_id, decisions.c.boot == boot,
                               decisions.c.seq.between(first_seq, last_seq))
                        .order_by(decisions.c.seq))
    previous = conn.execute(select(segments.c.end).where(
        segments.c.sensor_id == sensor_id, segments.c.boot == boot, segments.c.last_seq < first_seq)
        .order_by(segments.c.last_seq.desc()).limit(1)).scalar()
    runs: list[dict] = []
    for seq, t, hop, label, confidence in rows:
        p = Point(seq, t, hop or 0.0, label, confidence)
        last = runs[-1] if runs else None
        if last is not None and _continues(last, p):
            last.update(end=max(last["end"], p.t), last_seq=p.seq, count=last["count"] + 1,
                        confidence_sum=last["confidence_sum"] + (p.confidence or 0.0))
        else:
            runs.append(_new(sensor_id, boot, p, last["end"] if last else previous))
    if runs:
        conn.execute(insert(segments), runs)
