"""The level follower: the music's gain tracks the ambient LAeq so that the music stays audible.

Input: the ambient A-weighted level of each stream decision (``record["levels"]["LAeq"]`` of the stream
classifier's records, with ``levels["calibrated"]``), as it arrives. Output: a boost in dB at any time.

* **Robust ambient level.** The follower takes the median of the records of the last
  ``0.75 * min(attack, release)`` seconds, so a burst (a passing bus, a door) shorter than half that window
  does not count at all; a lasting change shows after half the window.
* **Dead band.** The level the gain is computed from moves to that median only when the median has left
  it by more than ``dead_band_db``: small drifts of the surroundings change nothing.
* **Attack and release.** The gain then approaches its new value exponentially, faster for a louder
  surrounding (``attack_seconds``) than for a quieter one (``release_seconds``). Both are *settling times*:
  a lasting step of the ambient level is followed to within 2 % of the step (0.4 dB of a 20-dB step)
  ``attack_seconds`` after it (``release_seconds`` for a fall), the median's delay included; the time
  constant is ``(T - 0.375 * min(attack, release)) / 4``.
* **Target.** Calibrated (the ambient in dB SPL and the playback chain's level known): the boost that puts
  the music ``margin_db`` above the surroundings. Otherwise (levels relative to full scale, or no
  headphone calibration): relative changes only: the boost is how much louder the surroundings are than
  when following began (the level at which the listener set the volume). Either way the boost stays
  within ``0 .. max_boost_db`` and the music's level within ``max_level_db`` (same reference as the music
  level, dB SPL when calibrated).

Everything is a closed-form function of time between records, so the gain at a sample does not depend on
how the music was cut into blocks.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from ...config import Range
from ...errors import ConfigError

RANGES = {"margin_db": Range(-20.0, 40.0, "dB"), "max_boost_db": Range(0.0, 30.0, "dB"),
          "max_level_db": Range(-100.0, 130.0, "dB"), "attack_seconds": Range(0.1, 600.0, "s"),
          "release_seconds": Range(0.1, 600.0, "s"), "dead_band_db": Range(0.0, 20.0, "dB")}
SETTLE = 4.0  # time constants in a settling time: e^-4 = 1.8 % of the step left


@dataclass(frozen=True)
class FollowSettings:
    """How the music follows the ambient level (module docstring). Values outside :data:`RANGES` raise
    :class:`ConfigError` naming the option."""

    margin_db: float = 10.0
    max_boost_db: float = 12.0
    max_level_db: float | None = None
    attack_seconds: float = 8.0
    release_seconds: float = 16.0
    dead_band_db: float = 3.0

    def __post_init__(self):
        for name, rng in RANGES.items():
            value = getattr(self, name)
            if value is None and name == "max_level_db":
                continue
            why = rng.refusal(value)
            if why:
                raise ConfigError(f"--{name.removesuffix('_seconds').replace('_', '-')}: {why}")

    @property
    def window_seconds(self) -> float:
        """The median's window: bursts shorter than half of it are ignored."""
        return 0.75 * min(self.attack_seconds, self.release_seconds)

    def time_constant(self, rising: bool) -> float:
        settle = self.attack_seconds if rising else self.release_seconds
        return max(settle - self.window_seconds / 2, 1e-3) / SETTLE


def ambient_levels(source: Any) -> tuple[float | None, bool] | None:
    """(LAeq dB or None for digital silence, calibrated) from a decision or window record (dict), an object
    with a ``levels`` attribute (:class:`~soundscene.core.records.Decision`, ``Window``), or the levels
    themselves (a ``levels`` dict or :class:`~soundscene.core.levels.Levels`); None when there are none
    (records made without levels)."""
    levels = source.get("levels", source if "LAeq" in source else None) if isinstance(source, dict) \
        else getattr(source, "levels", source)
    if isinstance(levels, dict):
        if "LAeq" not in levels:
            return None
        laeq, calibrated = levels.get("LAeq"), levels.get("calibrated", False)
    elif hasattr(levels, "LAeq") and hasattr(levels, "calibrated"):
        laeq, calibrated = levels.LAeq, levels.calibrated
    else:
        return None
    ok = isinstance(laeq, (int, float)) and not isinstance(laeq, bool) and math.isfinite(laeq)
    return (float(laeq) if ok else None), bool(calibrated)


class LevelFollower:
    """The follower's state: records in, boost (dB) out; times in seconds on the music's clock."""

    def __init__(self, settings: FollowSettings = FollowSettings(), *, absolute: bool = False):
        self.settings = settings
        self.absolute = absolute        # margin above a calibrated ambient, else relative changes
        self._recent: deque[tuple[float, float]] = deque()
        self.reference: float | None = None  # the ambient level after the median and dead band
        self.baseline: float | None = None   # relative mode: the level when following began
        self._estimate: float | None = None  # the smoothed ambient level at _time
        self._time = 0.0
        self.last: float | None = None       # the latest record's level

    def start(self, *, calibrated: bool, playback_known: bool) -> str | None:
        """Choose the mode from the first record: absolute when the ambient is calibrated and the playback
        level known, else relative; returns the message that says why it is relative (None when absolute)."""
        self.absolute = calibrated and playback_known
        if self.absolute:
            return None
        why = "the ambient levels are relative to full scale" if not calibrated else \
            "the playback level is unknown (no --headphone-db-spl-at-fs)"
        return (f"level following works on relative changes: {why}; the music is raised by as much as the "
                "surroundings get louder than when it started (--margin-db needs calibrated levels)")

    def add(self, time: float, laeq: float | None) -> None:
        """A record's ambient LAeq at ``time`` s (None: silence, ignored)."""
        if laeq is None:
            return
        self._advance(time)
        self.last = laeq
        window = self.settings.window_seconds
        self._recent.append((time, laeq))
        while self._recent and self._recent[0][0] < time - window:
            self._recent.popleft()
        levels = sorted(level for _, level in self._recent)
        median = levels[(len(levels) - 1) // 2] if len(levels) % 2 else \
            (levels[len(levels) // 2 - 1] + levels[len(levels) // 2]) / 2
        if self.reference is None:
            self.reference = self.baseline = self._estimate = median
        elif abs(median - self.reference) > self.settings.dead_band_db:
            self.reference = median

    def estimate(self, time: float) -> float | None:
        """The smoothed ambient level (dB) at ``time`` (>= the last record's time), None before any record."""
        self._advance(time)
        return self._estimate

    def boost_db(self, time: float, music_level_db: float | None) -> float:
        """The boost (dB, within 0..max_boost_db) at ``time`` for music at ``music_level_db`` (its level before
        the boost, at the ear in dB SPL when calibrated; None when unknown: no max-level limit, and in
        absolute mode no boost)."""
        s, ambient = self.settings, self.estimate(time)
        if ambient is None:
            return 0.0
        if self.absolute:
            want = ambient + s.margin_db - music_level_db if music_level_db is not None else 0.0
        else:
            want = ambient - self.baseline
        if s.max_level_db is not None and music_level_db is not None:
            want = min(want, s.max_level_db - music_level_db)
        return float(min(max(want, 0.0), s.max_boost_db))

    def _advance(self, time: float) -> None:
        if self._estimate is not None and time > self._time:
            rising = self.reference > self._estimate
            tau = self.settings.time_constant(rising)
            self._estimate = self.reference + (self._estimate - self.reference) * math.exp(-(time - self._time) / tau)
        self._time = max(self._time, time)
