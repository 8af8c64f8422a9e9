"""Equalizing a music file for an ambient recording (offline) or while listening (live)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...core.audio import AudioReader, check_length, write_audio_like
from ...errors import AudioError, SoundsceneError, warn
from .curve import EQ_RATES
from .engine import Equalizer
from .gain import ambient_levels
from .presets import DEFAULT_PRESETS, CurveLike, Presets, curve_for_probabilities, curve_for_scene


MIN_MUSIC_SECONDS = 1.0  # shorter music is equalized, with a warning


def _open_music(path: str | Path) -> AudioReader:
    """The music, opened for reading; AudioError naming it when it is truncated or its rate is outside what the
    bands serve; a warning when it is too short for the equalizer's fades and level following."""
    reader = AudioReader(path)
    try:
        check_length(reader.info)
    except AudioError:
        reader.close()
        raise
    if reader.info.duration_seconds < MIN_MUSIC_SECONDS:
        warn(f"{reader.info.path}: the music lasts only {reader.info.duration_seconds:.3g} s; the equalizer's "
             f"fades and level following need a few seconds")
    rate = reader.info.sample_rate
    if not EQ_RATES[0] <= rate <= EQ_RATES[1]:
        reader.close()
        raise AudioError(f"{path}: sample rate {rate} Hz is outside {EQ_RATES[0]}..{EQ_RATES[1]} Hz, the rates the "
                         "equalizer's bands are designed for")
    return reader


def _same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (through links and relative parts); a file that is not there yet is
    no other file."""
    try:
        return Path(a).resolve() == Path(b).resolve() or (Path(b).exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _in_time(eq: Equalizer, blocks: Iterable[np.ndarray], *, flush: bool = True) -> Iterator[np.ndarray]:
    """The equalizer's output blocks (channels, n) aligned with its input: the first :attr:`latency` samples
    (silence) dropped and, with ``flush``, the last ones fetched at the end."""
    skip = eq.latency
    for y in blocks:
        if skip:
            cut, skip = min(skip, y.shape[1]), skip - min(skip, y.shape[1])
            y = y[:, cut:]
        if y.shape[1]:
            yield y
    if flush and eq.latency:
        yield eq.flush()[:, skip:]


def equalize_file(in_path: str | Path, out_path: str | Path, *, schedule: Sequence[tuple[float, CurveLike]],
                  presets: Presets = DEFAULT_PRESETS, crossfade_seconds: float = 1.0, block_seconds: float = 1.0,
                  ambient: Sequence[tuple[float, Any]] = (), on_done: Callable[[Equalizer], None] | None = None,
                  **options: Any) -> Path:
    """Equalize a whole file block by block (memory independent of its length) and write it atomically.

    schedule: ``(start_seconds, curve_or_label)`` changes, each in force from its time on and crossfaded
    in (a label also brings the listener's remembered adjustments for that scene); an entry at 0 s sets the
    starting curve without a fade, before the first entry ``default`` applies. ambient: ``(seconds,
    record_or_levels)`` for :meth:`Equalizer.set_ambient`. options: the :class:`Equalizer`'s (``follow``,
    ``loudness``, ``exposure`` ...); ``on_done(equalizer)`` is called at the end (trace, dose, messages).
    The output keeps the length, rate, channels and subtype (format from ``out_path``'s suffix, else the
    input's). A missing or unreadable input raises :class:`AudioError` naming the file.
    """
    if any(not (math.isfinite(t) and t >= 0) for t, _ in [*schedule, *ambient]):
        raise ValueError("schedule times must be finite and >= 0 seconds")
    if _same_file(in_path, out_path):
        raise SoundsceneError(f"{out_path}: is the music itself; write the equalized copy to another file")
    peak = 0.0
    with _open_music(in_path) as src:
        sr, channels = src.info.sample_rate, src.info.channels
        changes = sorted(((int(round(t * sr)), 0, c) for t, c in schedule), key=lambda change: change[0])
        first = changes.pop(0)[2] if changes and changes[0][0] == 0 else "default"
        changes = sorted([*changes, *((int(round(t * sr)), 1, a) for t, a in ambient)], key=lambda c: c[:2])
        eq = Equalizer(sr, channels, presets, crossfade_seconds=crossfade_seconds, initial=first, **options)

        def equalized():
            done = 0
            nonlocal peak
            for x in src.blocks(max(1, int(block_seconds * sr))):
                peak = max(peak, float(np.abs(x).max(initial=0.0)))
                start = 0
                while changes and changes[0][0] < done + x.shape[1]:
                    at, kind, value = changes.pop(0)
                    yield eq.process(x[:, start:max(start, at - done)])
                    start = max(start, at - done)
                    _apply(eq, kind, value, presets)
                yield eq.process(x[:, start:])
                done += x.shape[1]

        path = write_audio_like(out_path, (y.T for y in _in_time(eq, equalized())), like=src.info)
    if peak == 0.0:
        warn(f"{src.info.path}: the music is digital silence (every sample is 0); so is the output")
    if on_done is not None:
        on_done(eq)
    return path


def _apply(eq: Equalizer, kind: int, value: Any, presets: Presets) -> None:
    if kind == 1:
        eq.set_ambient(value)
    elif isinstance(value, str):
        eq.set_scene(value)
    else:
        eq.set_curve(value)


def schedule_from_prediction(prediction, presets: Presets = DEFAULT_PRESETS, *, blend: bool = False,
                             labels: bool = False) -> list[tuple[float, CurveLike]]:
    """The curve schedule for a classified ambient recording (a :class:`soundscene.core.records.Prediction`).

    Without blend: one preset per scene segment (the merged runs of the timeline), each from the segment's
    start (with ``labels``, the scene label instead of its curve, so the listener's remembered adjustments
    for the scene apply too). With blend: one probability-weighted curve per analysis window, from the
    point halfway between its centre and the previous window's. Silent stretches change nothing (the curve
    in force holds). Times are the ambient recording's; the music is aligned with it from 0 s, and the last
    curve holds after the ambient recording ends.
    """
    if not blend:  # silence is no scene: the curve in force holds ("default" when the recording starts silent)
        scene = (lambda s: s) if labels else (lambda s: curve_for_scene(presets, s))  # noqa: E731
        return [(seg.start, scene("default" if seg.silent else seg.label))
                for k, seg in enumerate(prediction.segments()) if not seg.silent or k == 0]
    out, classes = [], prediction.classes
    for k, w in enumerate(prediction.windows):
        if w.silent and k > 0:
            continue
        start = 0.0 if k == 0 else ((prediction.windows[k - 1].start + prediction.windows[k - 1].end) / 2
                                    + (w.start + w.end) / 2) / 2
        curve = curve_for_scene(presets, "default") if w.silent else \
            curve_for_probabilities(presets, dict(zip(classes, map(float, w.probabilities))))
        out.append((start, curve))
    return out


def ambient_from_prediction(prediction) -> list[tuple[float, Any]]:
    """``(seconds, levels)`` for each analysis window of a classified ambient recording that carries levels,
    at the window's centre (offline, the whole recording is known: no need to wait for the window's end)."""
    return [((w.start + w.end) / 2, w.levels) for w in prediction.windows
            if (found := ambient_levels(w)) is not None and found[0] is not None]


def equalize_live(music_path: str | Path, out_path: str | Path | None, *, ambient_blocks, stream,
                  presets: Presets = DEFAULT_PRESETS, ambient_rate: int, crossfade_seconds: float = 1.0,
                  on_decision=None, play=None, on_message: Callable[[str], None] | None = None,
                  on_done: Callable[[Equalizer], None] | None = None, **options: Any) -> Path | None:
    """Equalize music while listening: each ambient block (``(channels, n)`` at ambient_rate) moves the music
    on by the same duration; the EQ changes preset only on the stream classifier's scene-change decisions
    (hysteresis and smoothing are the stream's), crossfaded, and every decision's ambient level (its
    ``levels``) goes to the level follower. Stops at the end of the music or of the ambient input. With
    out_path, writes the equalized music so far atomically (same rate, channels and subtype as the input)
    and returns the path; with out_path None, hands each equalized ``(samples, channels)`` block to
    ``play(block, sample_rate)`` (e.g. a sound card's output stream) and returns None.

    stream: a :class:`soundscene.core.stream.StreamClassifier` (anything whose ``push(block)`` returns
    decisions with ``changed`` and ``label``). on_decision: called with each decision; on_message: with each
    message of the equalizer (limiter engaged, levels missing); options and on_done as for
    :func:`equalize_file` (on_done is called even when the session is interrupted).
    """
    with _open_music(music_path) as src:
        sr, channels = src.info.sample_rate, src.info.channels
        eq = Equalizer(sr, channels, presets, crossfade_seconds=crossfade_seconds, **options)

        def equalized():
            heard = played = 0  # ambient samples heard, music frames played
            for block in ambient_blocks:
                for decision in stream.push(block):
                    if on_decision is not None:
                        on_decision(decision)
                    if decision.changed and decision.label is not None:
                        eq.set_scene(decision.label)
                    eq.set_ambient(decision)
                heard += block.shape[-1]
                target = int(round(heard * sr / ambient_rate))
                music = src.read(target - played)
                if music.shape[1]:
                    yield eq.process(music)
                    played += music.shape[1]
                for message in eq.pop_messages():
                    if on_message is not None:
                        on_message(message)
                if played < target:  # the music has ended
                    return

        blocks = (y.T for y in _in_time(eq, equalized(), flush=out_path is not None))
        try:
            if out_path is None:
                for block in blocks:
                    play(block, sr)
                return None
            return write_audio_like(out_path, blocks, like=src.info)
        finally:  # also when interrupted (Ctrl-C ends a live session): the dose so far must still be kept
            if on_done is not None:
                on_done(eq)



def ambient_text(source: Any) -> str:
    """``"ambient LAeq 62.3 dB SPL"`` (or ``dBFS``) for a decision, window or levels; ``""`` without levels."""
    found = ambient_levels(source)
    if found is None or found[0] is None:
        return ""
    return f"ambient LAeq {found[0]:.1f} {'dB SPL' if found[1] else 'dBFS'}"


def describe_ambient(prediction) -> str:
    """The scenes of a classified ambient recording with each segment's ambient LAeq (the energy mean of its
    windows' LAeq), e.g. ``quiet_room from 0.0 s (ambient LAeq 38.2 dB SPL) -> street_traffic from 9.5 s
    (ambient LAeq 71.0 dB SPL)``."""
    parts = []
    for seg in prediction.segments():
        found = [ambient_levels(w) for w in prediction.windows if seg.start <= (w.start + w.end) / 2 < seg.end]
        found = [f for f in found if f is not None and f[0] is not None]
        text = f"{seg.label or 'silence'} from {seg.start:.1f} s"
        if found:
            laeq = 10 * math.log10(sum(10 ** (f[0] / 10) for f in found) / len(found))
            text += f" ({ambient_text({'LAeq': laeq, 'calibrated': found[0][1]})})"
        parts.append(text)
    return " -> ".join(parts)
