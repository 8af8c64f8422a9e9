"""Times in the hub's API: ISO 8601 text (or seconds since 1970) in, ISO 8601 UTC with ms and ``Z`` out."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from ...errors import SoundsceneError
from ..protocol import parse_time as parse_iso, utc_timestamp

MAX_RANGE_DAYS = 400
MAX_SECONDS = 95617584000.0  # 5000-01-01T00:00:00Z: a time from 1970 up to this is one the hub can show


def iso(t: float | None) -> str | None:
    """Seconds since 1970 as ``2026-05-28T12:00:00.123Z`` (None stays None)."""
    if t is None:
        return None
    return utc_timestamp(datetime.fromtimestamp(t, timezone.utc))


def parse_time(text: str | None, name: str) -> float | None:
    """A query parameter's time: ISO 8601 (a zone, or UTC when none) or seconds since 1970; one-line error."""
    if text is None or text == "":
        return None
    if len(text) > 40:
        raise SoundsceneError(f"{name}: too long for a time")
    try:
        value = float(text)
    except ValueError:
        try:
            value = parse_iso(text, assume_utc=True)
        except ValueError as exc:
            if str(exc) == "is out of range":
                raise SoundsceneError(f"{name}: {text!r} is out of range") from None
            raise SoundsceneError(f"{name}: {text!r} is neither an ISO 8601 time nor seconds since 1970") from None
        if not 0 <= value < MAX_SECONDS:
            raise SoundsceneError(f"{name}: {text!r} is out of range (1970 to 5000)")
        return value
    if not math.isfinite(value) or not 0 <= value < MAX_SECONDS:
        raise SoundsceneError(f"{name}: {text!r} is not a time")
    return value


def time_range(start: str | None, end: str | None, now: float, *, default_days: float = 1.0) -> tuple[float, float]:
    """``(from, to)`` from the query (default: the last ``default_days``), checked: from < to, at most 400 days."""
    to = parse_time(end, "to")
    frm = parse_time(start, "from")
    to = now if to is None else to
    frm = to - default_days * 86400.0 if frm is None else frm
    if frm >= to:
        raise SoundsceneError("from must be before to")
    if to - frm > MAX_RANGE_DAYS * 86400.0:
        raise SoundsceneError(f"the range is longer than {MAX_RANGE_DAYS} days")
    return frm, to
