"""One run of the equalizer with the listener's state: what the ``eq`` and ``eq-live`` commands share.

A :class:`Session` reads the state file (the week's exposure and the per-scene preferences), turns plain
option values into the :class:`~.engine.Equalizer`'s options, and at the end writes the state back
(atomically, only what changed) and says what happened in a few lines.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...core.records import printable
from ...errors import ConfigError
from .engine import Equalizer
from .exposure import MODES, Exposure, exposure_days, load_state, save_state
from .gain import FollowSettings
from .plot import plot_timeline
from .prefs import Preferences, checked_volume, parse_adjustments


def default_state_path() -> Path:
    """``$XDG_STATE_HOME/soundscene/eq.json`` (``~/.local/state/soundscene/eq.json``)."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "soundscene" / "eq.json"


class Session:
    """The options of a run (keyword-only, as the command line gives them) and the state they touch."""

    def __init__(self, *, state_path: str | Path, follow_level: bool = False, margin_db: float = 10.0,
                 max_boost_db: float = 12.0, max_level_db: float | None = None, attack: float = 8.0,
                 release: float = 16.0, dead_band_db: float = 3.0, loudness: bool = False,
                 loudness_reference: float = 80.0, headphone_db_spl_at_fs: float | None = None,
                 exposure_mode: str = "adult", limiter: bool = False, limiter_hours: float = 2.0,
                 volume_db: float = 0.0, adjust: list[str] | None = None, reset_preferences: bool = False,
                 record_dose: bool = True):
        self.state_path = Path(state_path)
        state = load_state(self.state_path)
        self.preferences = Preferences() if reset_preferences else Preferences.from_state(state, self.state_path)
        self._prefs_changed = reset_preferences
        self.bands = parse_adjustments(adjust)
        self.volume_db = checked_volume(volume_db)
        self.follow = FollowSettings(margin_db=margin_db, max_boost_db=max_boost_db, max_level_db=max_level_db,
                                     attack_seconds=attack, release_seconds=release,
                                     dead_band_db=dead_band_db) if follow_level else None
        if limiter and headphone_db_spl_at_fs is None:
            raise ConfigError("--limiter needs --headphone-db-spl-at-fs (the level a full-scale sine gives at the ear)")
        if exposure_mode not in MODES:
            raise ConfigError(f"--exposure-mode {exposure_mode!r}: one of {', '.join(MODES)}")
        self.exposure = None if headphone_db_spl_at_fs is None else Exposure(
            headphone_db_spl_at_fs=headphone_db_spl_at_fs, mode=exposure_mode, limit_hours=limiter_hours,
            days=exposure_days(state, self.state_path))
        self.loudness, self.loudness_reference, self.limiter = loudness, loudness_reference, limiter
        self.record_dose = record_dose

    def options(self, *, trace: bool = False) -> dict[str, Any]:
        """Keyword options for :class:`Equalizer` (and :func:`~.playback.equalize_file` / ``equalize_live``)."""
        return dict(follow=self.follow, loudness=self.loudness, loudness_reference_phon=self.loudness_reference,
                    exposure=self.exposure, limiter=self.limiter, volume_db=self.volume_db, trace=trace,
                    preferences=self.preferences if (len(self.preferences) or self.bands) else None)

    def remember(self, scene: str) -> None:
        """The run's ``--adjust`` bands (and a non-zero ``--volume-db``) become ``scene``'s preference."""
        if self.bands is not None or self.volume_db:
            self.preferences.remember(scene, volume_db=self.volume_db or None, bands=self.bands)
            self.volume_db, self._prefs_changed = 0.0, True

    def finish(self, eq: Equalizer) -> list[str]:
        """Write the state back (dose when recorded, preferences when changed); lines for the listener."""
        lines, sections = [], {}
        if self.exposure is not None:
            ex = self.exposure
            lines.append(f"exposure: this run {ex.session_dose:.3g} % of the weekly allowance ({ex.mode}: "
                         f"{MODES[ex.mode]:g} dB(A) x 40 h, ITU-T H.870); the week so far "
                         f"{ex.dose if self.record_dose else ex.dose - ex.session_dose:.3g} %"
                         + ("" if self.record_dose else " (this run not counted: rendering a file is not listening; "
                            "--record-dose counts it)"))
            if self.record_dose:
                sections["exposure"] = ex.to_state()
        if self._prefs_changed or eq.preferences is not None and eq.preferences is self.preferences and \
                self.preferences.to_state() != load_state(self.state_path).get("preferences", {}):
            sections["preferences"] = self.preferences.to_state()
        if sections:
            save_state(self.state_path, **sections)
            lines.append(f"state: {printable(str(self.state_path))}")
        return lines

    @staticmethod
    def plot(eq: Equalizer, path: str | Path, *, title: str, calibrated: bool) -> Path:
        return plot_timeline(eq.trace(), path, title=title, calibrated=calibrated)
