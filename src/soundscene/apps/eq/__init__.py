"""The scene-aware equalizer: a music player that adapts to the listener's surroundings.

It picks an EQ curve from the acoustic scene (:mod:`.presets`), realises it with one filter cascade
(:mod:`.curve`, :mod:`.chain`), raises the music with the ambient level (:mod:`.gain`), keeps bass and
treble in balance at low listening levels (:mod:`.loudness`, ISO 226:2023), counts the listener's weekly
sound dose and can limit it (:mod:`.exposure`, ITU-T H.870), and remembers the listener's adjustments per
scene (:mod:`.prefs`). :class:`Equalizer` (:mod:`.engine`) does all of it block by block;
:func:`equalize_file` and :func:`equalize_live` (:mod:`.playback`) run it over a file or a live stream,
:mod:`.plot` draws it. The ``eq`` and ``eq-live`` commands are thin layers over these.
"""

from .chain import WARMUP_SECONDS
from .curve import (BAND_Q, COMBINED_LIMIT_DB, EQ_RATES, NYQUIST_FRACTION, band_centres, combine, curve_sos,
                    design_sos, peak_gain_db)
from .engine import MAX_CROSSFADE_SECONDS, Equalizer
from .exposure import MODES, Exposure, allowance_pa2h, dose_percent, load_state, save_state
from .gain import FollowSettings, LevelFollower, ambient_levels
from .loudness import REFERENCE_PHON, band_targets, compensation_db, contour_spl, loudness_level
from .playback import ambient_from_prediction, equalize_file, equalize_live, schedule_from_prediction
from .plot import plot_curves, plot_timeline
from .prefs import Preferences, parse_adjustments
from .trace import Trace
from .presets import (BAND_CENTRES, BAND_LABELS, DEFAULT_PRESETS, MAX_GAIN_DB, Curve, CurveLike, Presets,
                      curve_for_probabilities, curve_for_scene, format_presets, load_presets, presets_text,
                      save_presets)

__all__ = [
    "BAND_CENTRES", "BAND_LABELS", "BAND_Q", "COMBINED_LIMIT_DB", "DEFAULT_PRESETS", "EQ_RATES",
    "MAX_CROSSFADE_SECONDS", "MAX_GAIN_DB", "MODES", "NYQUIST_FRACTION", "REFERENCE_PHON", "WARMUP_SECONDS",
    "Curve", "CurveLike",
    "Equalizer", "Exposure", "FollowSettings", "LevelFollower", "Preferences", "Presets", "Trace",
    "allowance_pa2h", "ambient_from_prediction", "ambient_levels", "band_centres", "band_targets", "combine",
    "compensation_db", "contour_spl", "curve_for_probabilities", "curve_for_scene", "curve_sos", "design_sos",
    "dose_percent", "equalize_file", "equalize_live", "format_presets", "load_presets", "load_state",
    "loudness_level", "parse_adjustments", "peak_gain_db", "plot_curves", "plot_timeline", "presets_text",
    "save_presets", "save_state", "schedule_from_prediction",
]
