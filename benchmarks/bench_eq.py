"""Benchmark of the scene equalizer's block processor: real-time factor on 44.1-kHz stereo music.

    python benchmarks/bench_eq.py [--seconds 30] [--repeats 7] [--blocks 256,1024,4096] [--plot PATH]

Input: generated music (bass line, chords with harmonics, kick, snare, hats), 44.1 kHz, stereo,
float32, peaking at 0 dBFS. Each repeat runs a fresh :class:`soundscene.apps.eq.Equalizer` over the whole
signal in blocks of the given size, in two cases: a steady scene (street_traffic), and a scene change
every 5 s with a 1-s crossfade (20 % of the time runs two filter chains). The processor is single-threaded
(scipy's ``sosfilt`` and numpy element-wise work); the benchmark sets no thread counts. Every figure is
the median of --repeats runs; real-time factor = audio seconds / processing seconds (real time = 1x).

``--plot PATH`` also writes the magnitude responses of three presets (street_traffic, cafe, quiet_room)
to a PNG.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from soundscene.apps import eq

SAMPLE_RATE = 44100


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


def run_once(x: np.ndarray, block: int, changes: bool) -> float:
    """Seconds to equalize x in blocks of ``block`` samples."""
    equalizer = eq.Equalizer(SAMPLE_RATE, x.shape[0], crossfade_seconds=1.0, initial="street_traffic")
    scenes = ["cafe", "metro", "park", "street_traffic"]
    every = 5 * SAMPLE_RATE
    start = time.perf_counter()
    for pos in range(0, x.shape[1], block):
        if changes and pos // every != (pos + block) // every:
            equalizer.set_scene(scenes[(pos + block) // every % len(scenes)])
        equalizer.process(x[:, pos:pos + block])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--blocks", default="256,1024,4096", help="block sizes in samples, comma-separated")
    parser.add_argument("--plot", metavar="PATH", help="also plot three presets' curves to this PNG")
    args = parser.parse_args()

    x = music(args.seconds)
    print(f"soundscene equalizer benchmark: {args.seconds:g} s of 44.1-kHz stereo music, 10 biquads per "
          f"chain, median of {args.repeats} runs; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs (shared machines give indicative figures only)")
    print(f"\n{'block':>8}  {'steady scene':>22}  {'scene change every 5 s':>26}   (real time = 1x)")
    for block in (int(b) for b in args.blocks.split(",")):
        row = []
        for changes in (False, True):
            run_once(x[:, :SAMPLE_RATE], block, changes)  # warm-up
            seconds = statistics.median(run_once(x, block, changes) for _ in range(args.repeats))
            per_block_us = seconds / (x.shape[1] / block) * 1e6
            row.append(f"{args.seconds / seconds:7.0f}x ({per_block_us:6.0f} us/block)")
        budget_us = block / SAMPLE_RATE * 1e6
        print(f"{block:>8}  {row[0]:>22}  {row[1]:>26}   budget {budget_us:.0f} us/block")

    if args.plot:
        curves = {s: eq.DEFAULT_PRESETS[s] for s in ("street_traffic", "cafe", "quiet_room")}
        print(f"\ncurves written to {eq.plot_curves(curves, args.plot, sample_rate=SAMPLE_RATE)}")


if __name__ == "__main__":
    main()
