"""What a run did, over time: rows for the ``--plot`` picture and for reports (only kept when asked for)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

TRACE_SECONDS = 0.1  # one row per this many seconds (36,000 rows an hour)


@dataclass
class Trace:
    """Rows over time, one per ~0.1 s of music (:meth:`~.engine.Equalizer.trace`)."""

    time: list[float] = field(default_factory=list)
    scene: list[str | None] = field(default_factory=list)
    ambient_db: list[float | None] = field(default_factory=list)     # the latest record's LAeq
    followed_db: list[float | None] = field(default_factory=list)    # the follower's smoothed level
    gain_db: list[float] = field(default_factory=list)               # the frame gain (volume, boost, exposure)
    peak_reduction_db: list[float] = field(default_factory=list)     # the peak limiter's deepest cut since the
    #                                                                  last row (dB >= 0, off the frame gain)
    boost_db: list[float] = field(default_factory=list)              # the follower's share
    level_db: list[float | None] = field(default_factory=list)       # music out, 3-s average (dB SPL(A) or dBFS)
    dose: list[float | None] = field(default_factory=list)           # % of the weekly allowance
    limited: list[bool] = field(default_factory=list)                # the exposure limiter held the gain
    permitted_db: list[float | None] = field(default_factory=list)   # the limiter's level (dB(A) at the ear)
    phon: list[float | None] = field(default_factory=list)           # the loudness compensation's level

    def add(self, **row) -> None:
        """One row: a value for every field."""
        for f in fields(self):
            getattr(self, f.name).append(row[f.name])
