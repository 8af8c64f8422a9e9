"""Day-evening-night levels (ISO 1996-1; the EU Environmental Noise Directive 2002/49/EC, Annex I).

From interval LAeqs (a sensor's ``levels`` messages, a batch run's windows), :func:`day_levels` computes for each
day Lday, Levening, Lnight and

    Lden = 10 lg[(Td 10^(Lday/10) + Te 10^((Levening + 5)/10) + Tn 10^((Lnight + 10)/10)) / 24]

with the periods' lengths Td, Te, Tn in hours (default 12, 4 and 8: day 07-19, evening 19-23, night 23-07, as
the Directive sets them; a member state may shift them, so they are :class:`Periods`).  The night that starts on
a date belongs to that date.  An interval that spans a period boundary is shared by its overlap.  Each period
states its *coverage*, the share of its time that had a level: an interval without one (a dead or muted
microphone: digital silence) is a gap, not quiet.  Lden needs all three periods; with any of them empty it is
``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Iterable

PENALTY_DB = {"day": 0.0, "evening": 5.0, "night": 10.0}


@dataclass(frozen=True)
class Periods:
    """Start hours (local time, whole hours 0..23) of the day, evening and night periods; they follow each other
    round the clock, so the three starts define the three lengths."""

    day: int = 7
    evening: int = 19
    night: int = 23

    def __post_init__(self):
        starts = (self.day, self.evening, self.night)
        if any(isinstance(h, bool) or not isinstance(h, int) or not 0 <= h <= 23 for h in starts):
            raise ValueError(f"period start hours must be whole hours 0..23, got {starts}")
        lengths = self.hours()
        if min(lengths.values()) <= 0 or sum(lengths.values()) != 24:
            raise ValueError(f"day {self.day}:00, evening {self.evening}:00 and night {self.night}:00 must follow "
                             "each other round the clock, each at least an hour long")

    def hours(self) -> dict[str, int]:
        """Each period's length in hours."""
        return {"day": (self.evening - self.day) % 24, "evening": (self.night - self.evening) % 24,
                "night": (self.day - self.night) % 24}

    def starts(self, day: date, zone: tzinfo) -> list[tuple[datetime, str, date]]:
        """The three periods that belong to ``day``: (start, name, day) in time order."""
        out, offset = [], 0
        for name in ("day", "evening", "night"):
            hour = getattr(self, name)
            if name != "day" and hour < self.day:
                offset = 1  # this period (and any after it) starts after midnight
            start = datetime.combine(day + timedelta(days=offset), time(hour), tzinfo=zone)
            out.append((start, name, day))
        return out


@dataclass
class DayLevels:
    """One day's levels (dB, None where a period had no data) and each period's coverage (0..1)."""

    date: date
    Lday: float | None = None
    Levening: float | None = None
    Lnight: float | None = None
    Lden: float | None = None
    coverage: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The ``day_levels`` record (:mod:`soundscene.core.records`: levels to 0.1 dB, coverage to 4 decimals)."""
        from .records import make

        return make("day_levels", date=self.date.isoformat(), Lday=self.Lday, Levening=self.Levening,
                    Lnight=self.Lnight, Lden=self.Lden,
                    coverage={k: round(v, 4) for k, v in self.coverage.items()})


def day_levels(intervals: Iterable[tuple[datetime, datetime, float | None]], *, periods: Periods = Periods(),
               zone: tzinfo | None = None) -> list[DayLevels]:
    """Lday, Levening, Lnight, Lden and coverage for every day that has data, in date order.

    intervals: ``(start, end, LAeq)`` with aware datetimes (LAeq None: no level, a gap).  zone: the local time
    zone the periods are in (default: that of the first interval's start)."""
    energy: dict[tuple[date, str], float] = {}
    covered: dict[tuple[date, str], float] = {}
    for start, end, laeq in intervals:
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("intervals need time-zone aware start and end times")
        zone = zone or start.tzinfo
        if laeq is None or not math.isfinite(laeq) or end <= start:
            continue
        for key, seconds in _split(start.astimezone(zone), end.astimezone(zone), periods, zone):
            energy[key] = energy.get(key, 0.0) + seconds * 10 ** (laeq / 10)
            covered[key] = covered.get(key, 0.0) + seconds
    hours = periods.hours()
    out = []
    for day in sorted({d for d, _ in covered}):
        result = DayLevels(day)
        for name in ("day", "evening", "night"):
            seconds = covered.get((day, name), 0.0)
            result.coverage[name] = min(1.0, seconds / (hours[name] * 3600))
            if seconds > 0:
                setattr(result, "L" + name, 10 * math.log10(energy[(day, name)] / seconds))
        parts = [(result.Lday, "day"), (result.Levening, "evening"), (result.Lnight, "night")]
        if all(level is not None for level, _ in parts):
            total = sum(hours[n] * 10 ** ((level + PENALTY_DB[n]) / 10) for level, n in parts)
            result.Lden = 10 * math.log10(total / 24)
        out.append(result)
    return out


def _split(start: datetime, end: datetime, periods: Periods, zone: tzinfo):
    """((date, period), seconds) for each period the span ``start``..``end`` overlaps."""
    bounds = []
    for day in _days(start.date() - timedelta(days=1), end.date()):
        bounds += periods.starts(day, zone)
    bounds.sort()
    for (a, name, day), (b, _, _) in zip(bounds, bounds[1:]):
        overlap = (min(b, end) - max(a, start)).total_seconds()
        if overlap > 0:
            yield (day, name), overlap


def _days(first: date, last: date):
    day = first
    while day <= last + timedelta(days=1):
        yield day
        day += timedelta(days=1)
