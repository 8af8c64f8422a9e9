"""Per-scene user preferences: the volume and band adjustments a listener made while a scene was active.

They are remembered for that scene (in the state file's ``preferences`` section, see :mod:`.exposure`)
and applied the next time the scene is detected: ``{"street_traffic": {"volume_db": 4.0,
"bands": {"62.5": 2.0, ...}}}``. The volume is a gain after the equalizer; the bands are added to the
scene's preset (one curve, :func:`~.curve.combine`). Volumes are within -60..+15 dB, band gains within ±15 dB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


from ...config import Range
from ...errors import ConfigError
from .presets import BAND_LABELS, Curve

VOLUME = Range(-60.0, 15.0, "dB")  # a volume (--volume-db, a scene's remembered volume)


def checked_volume(value, name: str = "--volume-db") -> float:
    """``value`` as a volume in dB; ConfigError in one line when it is not a number within :data:`VOLUME`."""
    why = VOLUME.refusal(value)
    if why:
        raise ConfigError(f"{name}: {why}")
    return float(value)


class Preferences:
    """Scene label -> (volume_db, band adjustments as a :class:`Curve` with preamp 0)."""

    def __init__(self, scenes: dict[str, tuple[float, Curve]] | None = None):
        self._scenes: dict[str, tuple[float, Curve]] = dict(scenes or {})

    def __contains__(self, scene: str) -> bool:
        return scene in self._scenes

    def __len__(self) -> int:
        return len(self._scenes)

    def get(self, scene: str | None) -> tuple[float, Curve]:
        """The scene's (volume_db, bands); (0, flat) when none is remembered."""
        return self._scenes.get(scene, (0.0, Curve())) if scene is not None else (0.0, Curve())

    def remember(self, scene: str, *, volume_db: float | None = None, bands: Curve | None = None) -> None:
        """Remember a volume and/or band adjustments for ``scene`` (what is not given is kept)."""
        volume, curve = self.get(scene)
        volume = volume if volume_db is None else checked_volume(volume_db, f"{scene}: volume_db")
        self._scenes[scene] = (volume, curve if bands is None else bands)

    def reset(self) -> None:
        self._scenes.clear()

    def to_state(self) -> dict[str, Any]:
        return {scene: {"volume_db": volume, "bands": {k: g for k, g in zip(BAND_LABELS, curve.gains_db) if g}}
                for scene, (volume, curve) in sorted(self._scenes.items())}

    @classmethod
    def from_state(cls, state: dict[str, Any], path: str | Path = "state") -> Preferences:
        """From the state file's content; ConfigError naming the file and the scene when malformed."""
        scenes = {}
        for scene, entry in state.get("preferences", {}).items():
            try:
                if not isinstance(entry, dict) or not isinstance(entry.get("bands", {}), dict):
                    raise ValueError("expected {volume_db, bands}")
                scenes[scene] = (checked_volume(entry.get("volume_db", 0.0), "volume_db"),
                                 Curve(entry.get("bands", {})))
            except (ValueError, ConfigError) as exc:
                raise ConfigError(f"{path}: preferences[{scene!r}]: {exc}") from None
        return cls(scenes)


def parse_adjustments(items: list[str] | None) -> Curve | None:
    """``["62.5=+2", "1k=-1"]`` (``--adjust``) as a band curve; None for none; ValueError naming the item."""
    if not items:
        return None
    bands = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError("expected BAND=DB")
            bands[key.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--adjust {item!r}: expected BAND=DB, e.g. 62.5=+2 or 1k=-1.5") from None
    try:
        return Curve(bands)
    except ValueError as exc:
        raise ConfigError(f"--adjust: {exc}") from None
