"""Scene presets: the EQ curve of each acoustic scene, and preset files (TOML/JSON).

Traffic and engine noise mask the low end, speech babble the mids, a quiet room nothing, so each scene
label maps to a curve (:data:`DEFAULT_PRESETS`): ten ISO octave band gains in dB plus a preamp.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ..._io import atomic_write_text
from ...errors import ConfigError

BAND_CENTRES = tuple(1000.0 * 2.0 ** k for k in range(-5, 5))  # 31.25 .. 16000 Hz
BAND_LABELS = ("31.25", "62.5", "125", "250", "500", "1k", "2k", "4k", "8k", "16k")
MAX_GAIN_DB = 15.0          # the limit of every requested band gain and preamp


def _band_index(key: str | float) -> int:
    labels = ", ".join(BAND_LABELS)
    text = str(key).strip().lower().replace(" ", "").removesuffix("hz")
    try:
        hz = float(text[:-1]) * 1000 if text.endswith("k") else float(text)
    except ValueError:
        raise ValueError(f"unknown key {str(key)!r} (expected preamp_db or a band: {labels})") from None
    octaves = np.abs(np.log2(hz / np.array(BAND_CENTRES))) if hz > 0 and math.isfinite(hz) else [1.0]
    if min(octaves) > 0.03:
        raise ValueError(f"unknown band {str(key)!r} (bands: {labels})")
    return int(np.argmin(octaves))


def _checked(name: str, value, limit: float = MAX_GAIN_DB) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name!r}: expected a number of dB, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name!r}: {value} is not a finite number of dB")
    if abs(value) > limit:
        raise ValueError(f"{name!r}: {value:g} dB is beyond ±{limit:g} dB")
    return float(value)


def _gain_vector(gains: Mapping[str | float, float] | Sequence[float], limit: float = MAX_GAIN_DB) -> np.ndarray:
    """Band gains in dB (10,) from a mapping (missing bands 0 dB) or a sequence of 10."""
    out = np.zeros(len(BAND_CENTRES))
    if isinstance(gains, Mapping):
        seen: dict[int, object] = {}
        for key, value in gains.items():
            i = _band_index(key)
            if i in seen:
                raise ValueError(f"{str(key)!r}: band {BAND_LABELS[i]} is already given as {str(seen[i])!r}")
            seen[i], out[i] = key, _checked(str(key), value, limit)
        return out
    values = list(gains)
    if len(values) != len(out):
        raise ValueError(f"expected {len(out)} band gains ({', '.join(BAND_LABELS)}), got {len(values)}")
    return np.array([_checked(label, v, limit) for label, v in zip(BAND_LABELS, values)])


@dataclass(frozen=True)
class Curve:
    """An EQ curve: ``gains_db`` (10,) for :data:`BAND_CENTRES` (a sequence of 10, or a mapping from band
    labels/frequencies such as ``"1k"``, ``1000``, ``"31.5"`` to dB, missing bands 0) plus ``preamp_db``.
    Every value must be finite and within ±``limit_db`` (15 dB for presets and user input; the combined
    curve of :func:`~.curve.combine` allows 24 dB); the message of the ValueError names the band."""

    gains_db: tuple[float, ...] = (0.0,) * 10
    preamp_db: float = 0.0
    limit_db: float = field(default=MAX_GAIN_DB, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "gains_db", tuple(float(g) for g in _gain_vector(self.gains_db, self.limit_db)))
        object.__setattr__(self, "preamp_db", _checked("preamp_db", self.preamp_db, self.limit_db))


Presets = Mapping[str, Curve]
CurveLike = Curve | str  # a curve or a scene label


def _curve(*gains: float) -> Curve:  # bands 31.25 62.5 125 250 500 1k 2k 4k 8k 16k
    return Curve(gains)


# Each curve answers its scene's noise: noise masks music in its own bands, so the curve lifts those
# bands (and the 2-4 kHz presence region that carries clarity), never by more than 6 dB; auto-gain then
# removes the overall boost, so only the balance changes.
DEFAULT_PRESETS: Presets = MappingProxyType({
    "default": _curve(0, 0, 0, 0, 0, 0, 0, 0, 0, 0),            # unknown scene: leave the music as mastered
    "quiet_room": _curve(0, 0, 0, 0, 0, 0, 0, 0, 0, 0),         # nothing masks anything
    "office": _curve(1, 1, 0, 0, 0, 1, 1, 1, 0, 0),             # HVAC hum below 125 Hz, soft distant speech
    "park": _curve(1, 1, 1, 0, 0, 0, 0, 0, 0, 0),               # quiet; wind rumble below 100 Hz only
    "seaside": _curve(3, 4, 3, 1, 0, 0, 1, 2, 1, 0),            # surf roar: pink-like, strongest below 500 Hz
    "rain": _curve(0, 1, 1, 0, 0, 0, 1, 2, 3, 2),               # drop hiss rises from 1 kHz to 8 kHz
    "cafe": _curve(0, 0, 0, -2, -1, 2, 4, 3, 1, 0),             # babble 250 Hz-2 kHz: thin the mud, lift presence
    "shopping_mall": _curve(1, 1, 0, -1, -1, 1, 3, 3, 1, 0),    # reverberant babble + background music, mids
    "airport": _curve(3, 3, 2, 0, -1, 0, 2, 3, 2, 0),           # HVAC/jet rumble, announcements and crowd babble
    "public_square": _curve(2, 3, 2, 0, 0, 0, 2, 2, 2, 1),      # distant traffic, voices, fountain hiss
    "street_pedestrian": _curve(2, 3, 2, 0, -1, 0, 2, 3, 2, 0),  # footsteps, voices, some traffic
    "street_traffic": _curve(4, 5, 4, 2, 0, 0, 2, 3, 2, 0),     # engines/tyres 30-1000 Hz mask bass and body
    "tram": _curve(4, 5, 4, 2, 0, 0, 2, 3, 1, 0),               # motor hum + rail rumble, lighter than metro
    "bus": _curve(5, 6, 4, 2, 0, 0, 1, 2, 1, 0),                # diesel idling 30-200 Hz dominates
    "metro": _curve(5, 6, 5, 3, 0, 0, 2, 3, 2, 1),              # wheel/rail roar 30-500 Hz, squeal at 2-4 kHz
    "metro_station": _curve(3, 4, 3, 1, -1, 0, 2, 3, 2, 0),     # arriving trains (LF), announcements, reverb
})


def curve_for_scene(presets: Presets, label: str) -> Curve:
    """The curve of scene ``label``; the presets' ``default`` (else flat) for a label they lack."""
    return presets.get(label) or presets.get("default") or Curve()


def curve_for_probabilities(presets: Presets, probabilities: Mapping[str, float]) -> Curve:
    """The probability-weighted average (in dB) of the scenes' curves, gains and preamp alike.

    Weights are normalised by their sum; labels the presets lack count as ``default``.
    """
    weights = np.array([float(p) for p in probabilities.values()])
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("probabilities must be finite, >= 0 and not all 0")
    curves = [curve_for_scene(presets, label) for label in probabilities]
    w = weights / weights.sum()
    gains = w @ np.array([c.gains_db for c in curves])
    return Curve(tuple(gains), float(w @ np.array([c.preamp_db for c in curves])))


# -- presets files -------------------------------------------------------------------------------------

def load_presets(path: str | Path, *, base: Presets = DEFAULT_PRESETS) -> Presets:
    """Read user presets from a ``.toml`` or ``.json`` file: one table per scene label with ``preamp_db``
    and band gains in dB (keys as in :data:`BAND_LABELS`; ``"1000"``, ``"31.5"``, ``"1 kHz"`` also work).

    A scene in the file replaces that scene whole (bands it omits are 0 dB); scenes it does not name
    keep the ``base`` curves, so a file may hold just the scenes a user wants to change. Any problem
    raises :class:`ConfigError` in one line naming the file and the key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the presets file ({_one_line(exc)})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        elif path.suffix.lower() == ".toml":
            import tomllib  # Python >= 3.11

            data = tomllib.loads(text)
        else:
            raise ConfigError(f"{path}: presets must be a .toml or .json file")
    except ImportError:
        raise ConfigError(f"{path}: reading TOML needs Python >= 3.11; use a .json file") from None
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {_one_line(exc)}") from None
    except RecursionError:  # [[[[... 100,000 deep: no presets file nests like that
        raise ConfigError(f"{path}: nested too deeply to be a presets file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of scenes at the top level")
    presets = dict(base)
    for scene, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{scene}] must be a table of band gains")
        table = dict(table)
        try:
            presets[scene] = Curve(table, table.pop("preamp_db", 0.0))
        except ValueError as exc:
            raise ConfigError(f"{path}: [{scene}] {exc}") from None
    return MappingProxyType(presets)


def presets_text(presets: Presets, *, fmt: str = "toml") -> str:
    """``presets`` as a TOML or JSON starting file that :func:`load_presets` reads back."""
    tables = {scene: {"preamp_db": c.preamp_db, **dict(zip(BAND_LABELS, c.gains_db))}
              for scene, c in presets.items()}
    if fmt == "json":
        return json.dumps(tables, indent=2) + "\n"
    if fmt != "toml":
        raise ValueError(f"fmt must be 'toml' or 'json', not {fmt!r}")
    lines = ["# soundscene equalizer presets: one table per scene label; preamp_db and band gains in dB",
             "# (within ±15). Bands left out are 0 dB; scenes left out keep the built-in curves;",
             "# [default] is used for labels with no table."]
    for scene, table in tables.items():
        name = scene if re.fullmatch(r"[A-Za-z0-9_-]+", scene) else json.dumps(scene)
        lines += ["", f"[{name}]", *(f"{k if k == 'preamp_db' else json.dumps(k)} = {float(v)!r}"
                                     for k, v in table.items())]
    return "\n".join(lines) + "\n"


def save_presets(presets: Presets, path: str | Path) -> Path:
    """Write :func:`presets_text` atomically, as JSON for a ``.json`` path and TOML otherwise."""
    fmt = "json" if Path(path).suffix.lower() == ".json" else "toml"
    return atomic_write_text(path, presets_text(presets, fmt=fmt))


def format_presets(presets: Presets) -> str:
    """A table of the presets (one scene a line, gains in dB) for ``--list-presets``."""
    width = max(len("scene"), *(len(s) for s in presets))
    head = f"{'scene':<{width}}  {'preamp':>6}" + "".join(f"{b:>7}" for b in BAND_LABELS) + "  (dB)"
    rows = [f"{s:<{width}}  {c.preamp_db:>+6.1f}" + "".join(f"{g:>+7.1f}" for g in c.gains_db)
            for s, c in sorted(presets.items())]
    return "\n".join([head, *rows])



def _as_curve(presets: Presets, curve: CurveLike) -> Curve:
    return curve_for_scene(presets, curve) if isinstance(curve, str) else curve


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
