"""Benchmark of the scene equalizer's block processor: real-time factor on 44.1-kHz stereo music.

    python benchmarks/bench_eq.py [--seconds 30] [--repeats 7] [--blocks 256,1024,4096] [--plot PATH] [--quick]

Input: generated music (bass line, chords with harmonics, kick, snare, hats), 44.1 kHz, stereo,
float32, peaking at 0 dBFS. Each repeat runs a fresh :class:`soundscene.apps.eq.Equalizer` over the whole
signal in blocks of the given size, in two cases: a steady scene (street_traffic), and a scene change
every 5 s with a 1-s crossfade (20 % of the time runs two filter chains). A third case turns everything
on (issue 17): scene changes as above, level following (an ambient record every 0.5 s, a quiet room that
turns into street traffic halfway, with a 2-s bus), loudness compensation (ISO 226:2023; the listening level
moves with the boost, so the compensation is re-designed and crossfaded as it goes), exposure metering
with the H.870 limiter, volume -15 dB: the gain stage's 20-ms frames with look-ahead peak control. The
target for that case is 100x real time. The processor is single-threaded (scipy's ``sosfilt`` and numpy
element-wise work); the benchmark sets no thread counts. Every figure is the median of --repeats runs;
real-time factor = audio seconds / processing seconds (real time = 1x). Each case is first run once over
the whole signal: curve designs are cached, as in a player that has been on for a while; the cost of a
design met for the first time (a new listening level) is printed separately. ``--quick`` (5 s, 2 repeats,
one block size) only checks that the script runs.

``--plot PATH`` also writes the magnitude responses of three presets (street_traffic, cafe, quiet_room)
to a PNG.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import numpy as np

from soundscene.apps import eq

SAMPLE_RATE = 44100
TARGET_ALL_ON = 100.0  # x real time, with everything on (issue 17)


def music(seconds: float, seed: int = 0) -> np.ndarray:
    """Music-like test signal (2, samples) float32, peaking at 1.0 (a loud master)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    bass = sum(np.sin(2 * np.pi * 55 * k * t * (1 + 0.5 * (np.floor(t * 2) % 2))) / k for k in range(1, 6))
    chords = sum(np.sin(2 * np.pi * f * k * t + rng.uniform(0, 6)) / k ** 1.5
                 for f in (220.0, 277.2, 330.0) for k in range(1, 8))
    beat = t % 0.5
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-40 * beat)) * beat) * np.exp(-25 * beat)
    snare = rng.standard_normal(t.size) * np.exp(-20 * ((t + 0.25) % 0.5))
    hats = np.diff(np.r_[0.0, rng.standard_normal(t.size)]) * np.exp(-60 * (t % 0.125))
    mono = 0.3 * bass + 0.15 * chords + 0.8 * kick + 0.3 * snare
    left, right = np.tanh(2 * (mono + 0.2 * hats)), np.tanh(2 * (mono + 0.2 * np.roll(hats, 441)))
    stereo = np.stack([left, right])
    return (stereo / np.abs(stereo).max()).astype(np.float32)


def everything_on(channels: int) -> eq.Equalizer:
    """An equalizer with every feature of issue 17 on (the limiter engages: a tenth of the week is left)."""
    exposure = eq.Exposure(headphone_db_spl_at_fs=100.0, days={"2026-01-01": 0.9 * eq.allowance_pa2h()},
                           today=datetime.date(2026, 1, 1))
    return eq.Equalizer(SAMPLE_RATE, channels, crossfade_seconds=1.0, initial="street_traffic",
                        follow=eq.FollowSettings(), loudness=True, exposure=exposure, limiter=True, volume_db=-15.0)


def ambient_db(seconds: float, duration: float) -> float:
    """The ambient LAeq (dB SPL) of the benchmark: a quiet room, then street traffic with a 2-s bus."""
    if seconds < duration / 2:
        return 45.0
    return 85.0 if duration * 0.75 <= seconds < duration * 0.75 + 2 else 70.0


def cold_design_ms() -> float:
    """Milliseconds to design the loudness compensation and the cascade for a level not met before."""
    from soundscene.apps.eq.chain import _Chain

    start = time.perf_counter()
    targets = eq.band_targets(47.3, sample_rate=SAMPLE_RATE)
    curve = eq.combine(eq.DEFAULT_PRESETS["cafe"], targets)
    _Chain(curve, SAMPLE_RATE, 2, headroom=eq.DEFAULT_PRESETS["cafe"])
    return (time.perf_counter() - start) * 1e3


def run_once(x: np.ndarray, block: int, changes: bool, all_on: bool = False) -> float:
    """Seconds to equalize x in blocks of ``block`` samples."""
    equalizer = everything_on(x.shape[0]) if all_on else \
        eq.Equalizer(SAMPLE_RATE, x.shape[0], crossfade_seconds=1.0, initial="street_traffic")
    scenes = ["cafe", "metro", "park", "street_traffic"]
    every, record = 5 * SAMPLE_RATE, SAMPLE_RATE // 2
    duration = x.shape[1] / SAMPLE_RATE
    start = time.perf_counter()
    for pos in range(0, x.shape[1], block):
        if changes and pos // every != (pos + block) // every:
            equalizer.set_scene(scenes[(pos + block) // every % len(scenes)])
        if all_on and pos // record != (pos + block) // record:
            level = ambient_db(pos / SAMPLE_RATE, duration)
            equalizer.set_ambient({"levels": {"LAeq": level, "calibrated": True}})
        equalizer.process(x[:, pos:pos + block])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--blocks", default="256,1024,4096", help="block sizes in samples, comma-separated")
    parser.add_argument("--plot", metavar="PATH", help="also plot three presets' curves to this PNG")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 s, 2 repeats, blocks of 1024")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats, args.blocks = 5.0, 2, "1024"

    x = music(args.seconds)
    print(f"soundscene equalizer benchmark: {args.seconds:g} s of 44.1-kHz stereo music, 10 biquads per "
          f"chain, median of {args.repeats} runs; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs (shared machines give indicative figures only)")
    print(f"\n{'block':>8}  {'steady scene':>22}  {'scene change every 5 s':>26}  {'everything on':>26}"
          "   (real time = 1x)")
    worst = float("inf")
    for block in (int(b) for b in args.blocks.split(",")):
        row = []
        for changes, all_on in ((False, False), (True, False), (True, True)):
            run_once(x, block, changes, all_on)  # warm-up (designs are cached, as in a player that has been on)
            seconds = statistics.median(run_once(x, block, changes, all_on) for _ in range(args.repeats))
            per_block_us = seconds / (x.shape[1] / block) * 1e6
            row.append(f"{args.seconds / seconds:7.0f}x ({per_block_us:6.0f} us/block)")
            worst = min(worst, args.seconds / seconds) if all_on else worst
        budget_us = block / SAMPLE_RATE * 1e6
        print(f"{block:>8}  {row[0]:>22}  {row[1]:>26}  {row[2]:>26}   budget {budget_us:.0f} us/block")
    print(f"\na loudness design met for the first time costs {cold_design_ms():.1f} ms (then cached)")
    print(f"everything on (follow, loudness, exposure + limiter, scene changes): slowest {worst:.0f}x real time; "
          f"target > {TARGET_ALL_ON:.0f}x: {'met' if worst > TARGET_ALL_ON else 'NOT met'}")

    if args.plot:
        curves = {s: eq.DEFAULT_PRESETS[s] for s in ("street_traffic", "cafe", "quiet_room")}
        print(f"\ncurves written to {eq.plot_curves(curves, args.plot, sample_rate=SAMPLE_RATE)}")


if __name__ == "__main__":
    main()
