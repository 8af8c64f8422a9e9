"""Listening exposure after ITU-T H.870 (safe listening devices), and the state file that keeps it.

* **Level at the ear.** ``headphone_db_spl_at_fs`` is the playback chain's calibration: the A-weighted
  level (dB SPL) at the ear of a full-scale 1-kHz sine. A signal whose A-weighted mean square is ``ms``
  (full scale = 1) then has ``p^2 = 2 ms p0^2 10^(cal/10)`` Pa^2 at the ear (p0 = 20 uPa).
* **Dose.** H.870 counts sound energy over a rolling 7 days against a weekly allowance: 80 dB(A) for 40 h
  (1.6 Pa^2h, adult mode) or 75 dB(A) for 40 h (0.51 Pa^2h, sensitive mode: children, sensitive
  listeners). Dose in percent = 100 x energy / allowance; every +3 dB halves the time to 100 %
  (:func:`dose_percent` is the arithmetic). Energy is kept per UTC day; the week is the day and the six
  before it.
* **Limiter.** The level the remaining allowance permits over ``limit_hours`` more listening:
  ``L = 10 lg(remaining / (hours p0^2))`` dB(A). Held to it, listening can go on: as the allowance is used
  the permitted level falls (4.3 dB per ``limit_hours`` of listening at it), it never runs out. Once the
  allowance is already spent (by listening without the limiter), the mode's level minus 10 dB (70 or
  65 dB(A)) is permitted: H.870 leaves the reduced level to the device.
* **State file.** One small JSON file (``{"version": 1, "exposure": {"days": {"YYYY-MM-DD": Pa^2h}},
  "preferences": {...}}``) read at start and written atomically (temporary file + rename) at the end of a
  run; a save re-reads the file and replaces only its own section. Two players running at the same time
  share it last-writer-wins per section.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

from ..._io import atomic_write_json
from ...config import Range
from ...errors import ConfigError

P0 = 20e-6                  # Pa, the reference sound pressure
WEEK_HOURS = 40.0           # the allowance's listening time at the mode's level
MODES = {"adult": 80.0, "sensitive": 75.0}  # dB(A) for 40 h a week (ITU-T H.870 modes 1 and 2)
SPENT_FLOOR_DB = 10.0       # below the mode's level: what is permitted once the allowance is spent
DAYS = 7
STATE_VERSION = 1
CALIBRATION = Range(40.0, 150.0, "dB SPL")
LIMIT_HOURS = Range(0.1, 168.0, "h")


def allowance_pa2h(mode: str = "adult") -> float:
    """The weekly allowance in Pa^2h: 1.6 (adult), 0.506 (sensitive)."""
    return WEEK_HOURS * P0 ** 2 * 10 ** (MODES[mode] / 10)


def dose_percent(level_dba: float, hours: float, mode: str = "adult") -> float:
    """The dose (% of the weekly allowance) of ``hours`` at ``level_dba`` at the ear: H.870's arithmetic."""
    return 100.0 * hours * P0 ** 2 * 10 ** (level_dba / 10) / allowance_pa2h(mode)


class Exposure:
    """The listener's exposure: the stored days plus this session, and the limiter's permitted level.

    days: ``{"YYYY-MM-DD": Pa^2h}`` from the state file; today: the session's UTC day (default: now).
    """

    def __init__(self, *, headphone_db_spl_at_fs: float, mode: str = "adult", limit_hours: float = 2.0,
                 days: dict[str, float] | None = None, today: dt.date | None = None):
        for name, value, rng in (("--headphone-db-spl-at-fs", headphone_db_spl_at_fs, CALIBRATION),
                                 ("--limiter-hours", limit_hours, LIMIT_HOURS)):
            if rng.refusal(value):
                raise ConfigError(f"{name}: {rng.refusal(value)}")
        if mode not in MODES:
            raise ConfigError(f"--exposure-mode: {mode!r} is not one of {', '.join(MODES)}")
        self.calibration_db, self.mode, self.limit_hours = float(headphone_db_spl_at_fs), mode, float(limit_hours)
        self.today = today or dt.datetime.now(dt.timezone.utc).date()
        self.days = {k: float(v) for k, v in (days or {}).items()}
        week = {str(self.today - dt.timedelta(days=k)) for k in range(DAYS)}
        self.before_pa2h = sum(v for k, v in self.days.items() if k in week)  # this week, before this session
        self.session_pa2h = 0.0
        self._pa2_per_ms = 2 * P0 ** 2 * 10 ** (self.calibration_db / 10)

    def level_db(self, mean_square: float) -> float:
        """The A-weighted level at the ear (dB SPL) of an A-weighted mean square (full scale = 1)."""
        return 10 * math.log10(max(mean_square * self._pa2_per_ms, 1e-30) / P0 ** 2)

    def add(self, mean_square: float, seconds: float) -> None:
        """Count ``seconds`` of playback whose A-weighted mean square at the output is ``mean_square``."""
        self.session_pa2h += mean_square * self._pa2_per_ms * seconds / 3600.0

    @property
    def dose(self) -> float:
        """The week's dose so far, in % of the mode's allowance (this session included)."""
        return 100.0 * (self.before_pa2h + self.session_pa2h) / allowance_pa2h(self.mode)

    @property
    def session_dose(self) -> float:
        return 100.0 * self.session_pa2h / allowance_pa2h(self.mode)

    def allowed_level_db(self) -> float:
        """The limiter's ceiling (dB(A) at the ear), module docstring."""
        remaining = allowance_pa2h(self.mode) - self.before_pa2h - self.session_pa2h
        if remaining <= 0:
            return MODES[self.mode] - SPENT_FLOOR_DB
        return 10 * math.log10(remaining / (self.limit_hours * P0 ** 2))

    def allowed_mean_square(self) -> float:
        """The ceiling as an A-weighted mean square at the output (full scale = 1)."""
        return P0 ** 2 * 10 ** (self.allowed_level_db() / 10) / self._pa2_per_ms

    def to_state(self) -> dict[str, Any]:
        """The days to store: today's total with this session, the week's days only."""
        days = dict(self.days)
        key = str(self.today)
        days[key] = days.get(key, 0.0) + self.session_pa2h
        keep = {str(self.today - dt.timedelta(days=k)) for k in range(DAYS)}
        return {"days": {k: v for k, v in sorted(days.items()) if k in keep}}


def exposure_days(state: dict[str, Any], path: str | Path) -> dict[str, float]:
    """The stored ``{"YYYY-MM-DD": Pa^2h}`` of a state (ConfigError naming the file when malformed)."""
    days = state.get("exposure", {}).get("days", {})
    if not isinstance(days, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and v >= 0 for k, v in days.items()):
        raise ConfigError(f"{path}: exposure.days must map dates to energies (Pa^2h >= 0)")
    return {k: float(v) for k, v in days.items()}


def load_state(path: str | Path) -> dict[str, Any]:
    """The state file's content (a fresh state when the file does not exist); ConfigError in one line naming
    the file when it cannot be read or is not a soundscene state."""
    path = Path(path)
    if not path.exists():
        return {"version": STATE_VERSION, "exposure": {"days": {}}, "preferences": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the equalizer state ({' '.join(str(exc).split())})") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION or \
            not isinstance(state.get("exposure", {}), dict) or not isinstance(state.get("preferences", {}), dict):
        raise ConfigError(f"{path}: not a soundscene equalizer state (version {STATE_VERSION})")
    return state


def save_state(path: str | Path, **sections: dict[str, Any]) -> Path:
    """Replace ``sections`` (e.g. ``exposure=..., preferences=...``) in the state file, atomically, keeping the
    others as they are in the file now."""
    state = load_state(path)
    state.update(sections)
    state["version"] = STATE_VERSION
    return atomic_write_json(path, state)
