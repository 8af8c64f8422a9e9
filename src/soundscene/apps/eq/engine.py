"""The block-by-block equalizer: scene presets, level following, loudness compensation, exposure.

:class:`Equalizer` takes blocks of music and, between blocks, what is known about the listener's
surroundings: the scene (:meth:`~Equalizer.set_scene`), the ambient level (:meth:`~Equalizer.set_ambient`,
from the stream classifier's records) and the listener's adjustments (:meth:`~Equalizer.adjust`). Inside:

1. one filter cascade (:mod:`.chain`) for one curve: the scene's preset + the listener's band adjustments
   for the scene + the loudness compensation for the current listening level (:mod:`.loudness`), changes
   crossfaded;
2. a gain stage (:mod:`.stage`, active only when one of the features below is on; it adds 25 ms of
   latency, :attr:`~Equalizer.latency`): the volume (``volume_db`` plus the scene's remembered
   adjustment), the level follower's boost (:mod:`.gain`) and the loudness make-up, with ``limiter``
   held within the level the remaining weekly allowance permits (:mod:`.exposure`), then a look-ahead
   peak limiter (:mod:`.limiter`) that keeps every sample within full scale by turning down the peaks
   only, by what they need;
3. metering: the output's A-weighted level at the ear counts towards the listener's dose.

**Listening level** (for loudness compensation). Calibrated (``headphone_db_spl_at_fs``): the A-weighted
level at the ear of the output (3-s average: after the gain and the peak limiter, so what the limiter takes
off the peaks counts). Otherwise it is taken as
``loudness_reference_phon + volume + boost``: the music at 0 dB volume is assumed to be played at the
reference level, and the volume knob lowers it. The compensation is re-designed when the level has moved by
1 phon or more since the last design (at 0.5-phon resolution), crossfaded like a preset change.

Without any of the features, the equalizer is the scene equalizer alone: no latency, the flat curve is
bit-transparent, a final clip at full scale.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...errors import ConfigError
from .chain import FadingCascade
from .curve import band_centres, combine
from .exposure import Exposure
from .gain import FollowSettings, LevelFollower, ambient_levels
from .loudness import REFERENCE_PHON, ListeningLevel, band_targets
from .prefs import Preferences, checked_volume
from .presets import DEFAULT_PRESETS, Curve, CurveLike, Presets, curve_for_scene
from .stage import GainStage
from .trace import TRACE_SECONDS, Trace

MAX_CROSSFADE_SECONDS = 60.0  # a crossfade between presets is at most a minute
LIMITER_MARGIN_DB = 1.0       # the limiter holds the 3-s music level this far under the permitted level
LIMITER_QUIET_SECONDS = 10.0  # the limiter's message again only after it has been idle this long
MUSIC_SECONDS = 3.0           # the time constant of the music level (before the gain) estimate


class Equalizer:
    """A stateful equalizer for blocks of ``channels`` x samples at ``sample_rate`` (8 kHz .. 192 kHz).

    ``initial`` is the starting curve or scene label. :meth:`set_curve` / :meth:`set_scene` take effect at
    the start of the next :meth:`process` call and crossfade over ``crossfade_seconds`` (0 switches at
    once). Processing a signal in blocks of any sizes gives the same output as processing it whole (to
    float32 rounding), as long as changes (scenes, ambient records, adjustments) come at the same samples.

    Options (all off by default): ``follow`` (:class:`~.gain.FollowSettings`), ``loudness`` with
    ``loudness_reference_phon``, ``headphone_db_spl_at_fs`` (the level a full-scale 1-kHz sine gives at the
    ear), ``exposure`` (:class:`~.exposure.Exposure`: metering) with ``limiter``, ``preferences``
    (:class:`~.prefs.Preferences`), ``volume_db``; ``trace`` keeps :class:`Trace` rows for plots.
    """

    def __init__(self, sample_rate: int, channels: int, presets: Presets = DEFAULT_PRESETS, *,
                 crossfade_seconds: float = 1.0, initial: CurveLike = "default",
                 follow: FollowSettings | None = None, loudness: bool = False,
                 loudness_reference_phon: float = REFERENCE_PHON, headphone_db_spl_at_fs: float | None = None,
                 exposure: Exposure | None = None, limiter: bool = False, preferences: Preferences | None = None,
                 volume_db: float = 0.0, trace: bool = False):
        _check(sample_rate, channels, crossfade_seconds, limiter and exposure is None, loudness_reference_phon)
        self.sample_rate, self.channels, self.presets = int(sample_rate), int(channels), presets
        self.crossfade_samples = int(round(crossfade_seconds * sample_rate))
        self.loudness, self.reference_phon, self.limiter = loudness, float(loudness_reference_phon), limiter
        self.exposure, self.preferences, self.volume_db = exposure, preferences, checked_volume(volume_db)
        self.calibration_db = headphone_db_spl_at_fs if exposure is None else exposure.calibration_db
        self.follower = None if follow is None else LevelFollower(follow)
        self.scene: str | None = initial if isinstance(initial, str) else None
        self._preset = curve_for_scene(presets, initial) if isinstance(initial, str) else initial
        self._adjust_db, self._bands = self.preferences.get(self.scene) if self.preferences else (0.0, Curve())
        self._listening = ListeningLevel(self.reference_phon, measured=self.calibration_db is not None)
        self.messages: list[str] = []
        self._trace = Trace() if trace else None
        self._stage: GainStage | None = None
        if follow or loudness or exposure or preferences is not None or volume_db or trace:
            self._stage = GainStage(self.sample_rate, self.channels)
        self._samples = self._frames = 0
        self._music_ms: float | None = None
        self._out_ms = [0.0, 0.0]  # the output's mean square, 3-s average, and its weight (the first frames')
        self._peak_reduction = 0.0  # the peak limiter's largest reduction since the last trace row (dB)
        self._ambient_warned = self._flushing = False
        self._last_limited = -math.inf
        self.ambient_db: float | None = None  # the latest record's LAeq
        curve, headroom = self._wanted()
        self._cascade = FadingCascade(curve, self.sample_rate, self.channels, self.crossfade_samples, headroom)

    # -- what the caller tells it --------------------------------------------------------------------------

    @property
    def curve(self) -> Curve:
        """The latest curve asked for (in force, fading in, or waiting for a fade to end)."""
        return self._cascade.requested[0]

    @property
    def auto_gain_db(self) -> float:
        """The auto-gain (dB, <= 0) of the chain in force."""
        return self._cascade.auto_gain_db

    @property
    def sos(self) -> np.ndarray:
        """The second-order sections (n_bands, 6) of the cascade in force: one cascade for the whole curve."""
        return self._cascade.sos

    @property
    def latency(self) -> int:
        """Samples by which the output lags the input (the gain stage's frame and look-ahead when the stage
        is on, else 0)."""
        return 0 if self._stage is None else self._stage.latency

    @property
    def time(self) -> float:
        """Seconds of music taken in so far."""
        return self._samples / self.sample_rate

    def set_scene(self, label: str) -> None:
        """Fade to the preset of scene ``label`` (``default`` for an unknown label), with the listener's
        remembered adjustments for it."""
        self.scene, self._preset = label, curve_for_scene(self.presets, label)
        if self.preferences is not None:
            self._adjust_db, self._bands = self.preferences.get(label)
        self._request()

    def set_curve(self, curve: Curve) -> None:
        """Fade to ``curve`` (no scene: no remembered adjustments apply)."""
        self.scene, self._preset = None, curve
        self._request()

    def adjust(self, *, volume_db: float | None = None, bands: Curve | None = None) -> None:
        """The listener's adjustment while the current scene is active: the scene's volume (dB, added to
        ``volume_db``) and/or band gains (added to the preset); remembered for the scene."""
        if volume_db is not None:
            self._adjust_db = checked_volume(volume_db, "volume_db")
        if bands is not None:
            self._bands = bands
        if self.preferences is not None and self.scene is not None:
            self.preferences.remember(self.scene, volume_db=volume_db, bands=bands)
        self._request()

    def set_ambient(self, source: Any) -> bool:
        """The ambient level of a stream decision (a record dict, a Decision with ``levels``, or a levels
        dict) at the current time. False (and one message, once) when it carries no levels."""
        found = ambient_levels(source)
        if found is None:
            if self.follower is not None and not self._ambient_warned:
                self._ambient_warned = True
                self.messages.append("warning: the ambient records carry no levels: level following is off")
            return False
        laeq, calibrated = found
        self.ambient_db = laeq if laeq is not None else self.ambient_db
        if self.follower is not None:
            if self.follower.reference is None and laeq is not None:
                why = self.follower.start(calibrated=calibrated, playback_known=self.calibration_db is not None)
                self.messages.extend([why] if why else [])
            self.follower.add(self.time, laeq)
        return True

    def pop_messages(self) -> list[str]:
        """Messages since the last call (limiter engaged, levels missing ...), for the caller to show."""
        out, self.messages = self.messages, []
        return out

    def trace(self) -> Trace | None:
        return self._trace

    # -- processing -------------------------------------------------------------------------------------------

    def process(self, block: np.ndarray) -> np.ndarray:
        """Equalize ``block`` (channels, samples), float in [-1, 1]; returns float32 (channels, samples),
        :attr:`latency` samples behind the input."""
        x = np.asarray(block, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise ValueError(f"block must have shape ({self.channels}, samples), not {x.shape}")
        if self._stage is None:
            out = self._cascade.process(x)
            self._samples += x.shape[1]
            return np.clip(out, -1.0, 1.0, out=out).astype(np.float32)
        pos = 0
        while pos < x.shape[1]:
            pos += self._segment(x[:, pos:])
        return self._stage.take(x.shape[1]).astype(np.float32)

    def _segment(self, x: np.ndarray) -> int:
        """Run ``x`` through the cascade in one go and feed its frames to the gain stage, until a frame asks
        for a new curve (loudness): then the cascade is taken back to that frame's end (its state kept before,
        the samples up to there run again) so that the change starts there, whatever the block sizes.
        Returns the samples consumed."""
        stage, cascade = self._stage, self._cascade
        kept = cascade.snapshot() if self.loudness and x.shape[1] >= stage.room else None
        y = cascade.process(x)
        k = 0
        while k < x.shape[1]:
            take = min(x.shape[1] - k, stage.room)
            stage.put(y[:, k:k + take])
            k += take
            self._samples += take
            if stage.room == 0:
                asked = cascade.requests
                self._frame()
                if cascade.requests != asked and k < x.shape[1]:
                    wanted = cascade.requested
                    cascade.restore(kept)
                    cascade.process(x[:, :k])
                    cascade.request(*wanted)
                    return k
        return k

    def flush(self) -> np.ndarray:
        """The last :attr:`latency` samples still inside (silence is pushed through to get them out)."""
        self._flushing = True
        return self.process(np.zeros((self.channels, self.latency)))

    def _frame(self) -> None:
        stage = self._stage
        ms = stage.measure()
        a = 1.0 - math.exp(-stage.seconds / MUSIC_SECONDS)
        self._music_ms = ms if self._music_ms is None else self._music_ms + a * (ms - self._music_ms)
        base_db = self.volume_db + self._adjust_db
        music_db = _level_db(self._music_ms, self.calibration_db)
        boost = 0.0
        if self.follower is not None:
            boost = self.follower.boost_db(self.time, None if music_db is None else music_db + base_db)
        target_db, ceiling, held = base_db + boost, None, False
        if self.limiter:  # soft: the 3-s level 1 dB under the permitted one; hard: every second within it
            ceiling = self.exposure.allowed_mean_square()
            if music_db is not None and music_db + target_db > self.exposure.allowed_level_db() - LIMITER_MARGIN_DB:
                target_db, held = self.exposure.allowed_level_db() - LIMITER_MARGIN_DB - music_db, True
        done = stage.apply(10 ** (target_db / 20), ceiling)
        limited = done.limited or held
        gain_db = 20 * math.log10(max(done.gain, 1e-10))
        self._out_ms = [m + a * (now - m) for m, now in zip(self._out_ms, (done.mean_square, 1.0))]
        out_db = _level_db(self._out_ms[0] / self._out_ms[1], self.calibration_db)  # the weight: no start bias
        self._peak_reduction = max(self._peak_reduction, done.peak_reduction_db)
        if self.exposure is not None:
            self.exposure.add(done.mean_square, done.seconds)
        if limited and self.time - self._last_limited > LIMITER_QUIET_SECONDS:  # a new episode: say so once
            self.messages.append(f"{self.time:8.2f} s  exposure limiter: level held at "
                                 f"{self.exposure.allowed_level_db():.1f} dB(A) (dose {self.exposure.dose:.1f} % "
                                 f"of the weekly allowance, {self.exposure.mode} mode)")
        self._last_limited = self.time if limited else self._last_limited
        if self.loudness and self._listening.update(level_db=out_db, volume_db=base_db + boost):
            self._request()
        if self._trace is not None and not self._flushing and \
                self._frames % max(1, round(TRACE_SECONDS / stage.seconds)) == 0:
            self._add_row(gain_db=gain_db, boost=boost, level_db=out_db, limited=limited)
        self._frames += 1

    def _add_row(self, *, gain_db: float, boost: float, level_db: float | None, limited: bool) -> None:
        f = self.follower
        self._trace.add(time=self.time, scene=self.scene, ambient_db=self.ambient_db, gain_db=gain_db,
                        peak_reduction_db=self._peak_reduction, followed_db=None if f is None else
                        f.estimate(self.time), boost_db=boost, level_db=level_db, limited=limited,
                        dose=None if self.exposure is None else self.exposure.dose, phon=self._listening.phon,
                        permitted_db=self.exposure.allowed_level_db() if self.limiter else None)
        self._peak_reduction = 0.0

    # -- helpers ----------------------------------------------------------------------------------------------

    def _wanted(self) -> tuple[Curve, Curve | None]:
        """The curve to realise (preset + adjustments + loudness) and, with loudness, its headroom curve."""
        base = self._preset if self._bands == Curve() else combine(self._preset, self._bands)
        phon = self._listening.phon
        if phon is None or phon >= self.reference_phon:
            return base, None
        targets = band_targets(phon, sample_rate=self.sample_rate, reference_phon=self.reference_phon)
        return combine(base, targets), base

    def _request(self) -> None:
        self._cascade.request(*self._wanted())


def _check(sample_rate, channels, crossfade_seconds, limiter_without_exposure: bool, reference_phon) -> None:
    band_centres(sample_rate)  # checks the rate
    if not (isinstance(channels, (int, np.integer)) and channels >= 1):
        raise ValueError(f"channels must be a positive integer, not {channels!r}")
    if not 0 <= crossfade_seconds <= MAX_CROSSFADE_SECONDS:  # also refuses nan
        raise ConfigError(f"--crossfade {crossfade_seconds} s is outside 0..{MAX_CROSSFADE_SECONDS:g} s")
    if limiter_without_exposure:
        raise ConfigError("the exposure limiter needs the playback calibration (--headphone-db-spl-at-fs)")
    if not 40.0 <= reference_phon <= 90.0:
        raise ConfigError(f"--loudness-reference {reference_phon} phon is outside 40..90 phon")


def _level_db(mean_square: float | None, calibration_db: float | None) -> float | None:
    """A-weighted level of a mean square: dB SPL at the ear when calibrated, else dB re a full-scale sine."""
    if mean_square is None or mean_square <= 1e-20:
        return None
    return 10 * math.log10(2 * mean_square) + (calibration_db or 0.0)
