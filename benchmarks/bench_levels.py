"""Sound level benchmark, on one CPU thread: what the level meter costs, and that its memory stays flat.

    python benchmarks/bench_levels.py [--hours 1.0] [--hops 40]

Figures, each beside its reference:

* levels on an H-hour 48-kHz 24-bit stereo WAV (decoded block by block, mixed to mono, metered):
  real-time factor, and the peak memory of metering H hours against 1/6 of that (target: flat in length);
* the third-octave bands both ways: PyOctaveBand's block-wise (stateful) filter bank at the full rate, and the
  tick spectra soundscene uses (same filter designs), in ms per second of audio;
* ``listen`` at 48 kHz with the default model (22,050 Hz, 10-s windows every 5 s): the time per hop with levels
  and without (target: levels add at most 10 %), median over interleaved rounds;
* the live meter alone, as a sensor drives it (``--live`` prints only this): per 5 s of 48-kHz mono, 50 pushes of
  0.1 s, the levels of a 10-s window and a twelfth of a 60-s interval's (target: at most 2.5 ms, a tenth of an
  ONNX sensor's 25-ms hop), median over hops.  ``--before FILE`` times an earlier levels.py beside it, in
  interleaved hops (``git show REV:src/soundscene/core/levels.py > FILE``).

Run it alone on a quiet machine: other work beside it makes every figure slower.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

from _timing import stream_hop_times  # noqa: E402
from bench_deploy import make_model, write_long_wav  # noqa: E402


def meter_file(path: str) -> None:
    """Child process: meter the whole file; print seconds and peak RSS (MB)."""
    import resource

    from soundscene.core.audio import audio_info, read_blocks
    from soundscene.core.levels import LevelMeter

    info = audio_info(path)
    start = time.perf_counter()
    meter = LevelMeter(info.sample_rate)
    for block in read_blocks(info):
        meter.push(block.mean(axis=0))
    meter.finish()
    seconds = time.perf_counter() - start
    total = meter.total()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{seconds} {peak} {info.frames / info.sample_rate} {total.LAeq}")


def file_figures(folder: Path, hours: float) -> None:
    lengths = {"short": hours / 6, "long": hours}
    results = {}
    for name, h in lengths.items():
        path = write_long_wav(folder / f"{name}.wav", h)
        out = subprocess.run([sys.executable, __file__, "--meter", str(path)], capture_output=True, text=True,
                             check=True).stdout.split()
        results[name] = [float(v) for v in out]
        path.unlink()
    seconds, peak, audio, laeq = results["long"]
    print(f"levels of a {hours:g}-h 48-kHz stereo file: {seconds:.1f} s, {audio / seconds:.0f}x real time "
          f"(LAeq {laeq:.1f} dBFS)")
    print(f"  peak memory: {results['short'][1]:.0f} MB for {lengths['short'] * 60:.0f} min, {peak:.0f} MB for "
          f"{hours:g} h  (reference: flat in length; difference {peak - results['short'][1]:+.0f} MB)")


def band_figures() -> None:
    import numpy as np
    from pyoctaveband import OctaveFilterBank

    from soundscene.core.levels import LevelMeter

    rate, seconds = 48000, 20
    x = np.random.default_rng(0).standard_normal(rate * seconds) * 0.1
    bank = OctaveFilterBank(rate, fraction=3, limits=[25, 20000], stateful=True, resample=False)
    timings = {"stateful filter bank (full rate)": lambda: [bank.filter(x[k:k + rate], detrend=False)
                                                              for k in range(0, x.size, rate)],
               "whole meter (A, C, F, tick bands)": lambda: _meter(LevelMeter, x, rate)}
    for name, fn in timings.items():
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        print(f"  {name:<36} {statistics.median(times) / seconds * 1000:6.2f} ms per second of 48-kHz audio")


def _meter(cls, x, rate):
    meter = cls(rate)
    for k in range(0, x.size, rate // 10):
        meter.push(x[k:k + rate // 10])
    meter.finish()


def hop_figures(folder: Path, hops: int) -> None:
    import torch

    from soundscene.core.inference import SceneClassifier

    torch.set_num_threads(1)
    model = make_model(folder)
    rate = 48000
    clfs = {"without levels": SceneClassifier.from_file(model, levels=False),
            "with levels": SceneClassifier.from_file(model)}
    hop = int(clfs["with levels"].hop_seconds * rate)
    per_hop = stream_hop_times(clfs, rate=rate, hop=hop, hops=hops)
    base, levels = (statistics.median(per_hop[n]) for n in clfs)
    print(f"listen at 48 kHz stereo in 0.1-s blocks, 10-s windows every 5 s ({len(per_hop['with levels'])} hops):")
    print(f"  time per hop without levels {base * 1000:.1f} ms, with levels {levels * 1000:.1f} ms: "
          f"+{(levels / base - 1) * 100:.1f} %  (target: at most +10 %)")
    meter_ms = _meter_ms(rate, hop)
    print(f"  the meter alone: {meter_ms:.1f} ms per 5-s hop of stereo input")


def _meter_ms(rate, hop):
    import numpy as np

    from soundscene.core.levels import LevelMeter

    x = np.random.default_rng(2).standard_normal(hop * 6) * 0.05
    meter = LevelMeter(rate)
    t = time.perf_counter()
    for k in range(0, x.size, rate // 10):
        meter.push(x[k:k + rate // 10])
    return (time.perf_counter() - t) / 6 * 1000


LIVE_TARGET_MS = 2.5
# before the batched spectra (levels.py of 8872f92), measured beside it on 2026-12-08 with
# `git show 8872f92:src/soundscene/core/levels.py > /tmp/levels_8872f92.py;
#  python benchmarks/bench_levels.py --live --before /tmp/levels_8872f92.py` (2 shared cores: median of 120 hops)
LIVE_BEFORE_MS = 12.6


def live_figures(hops: int, before: str | None = None) -> None:
    """The live meter's cost per 5 s of 48-kHz mono (see the module docstring), median over ``hops`` hops after
    four; with ``before``, an earlier levels.py's in the same hops, interleaved (alternating which goes first)."""
    import importlib.util

    import numpy as np

    from soundscene.core import levels

    modules = {"now": levels}
    if before:
        spec = importlib.util.spec_from_file_location("soundscene.core._levels_before", before)
        modules["before"] = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = modules["before"]
        spec.loader.exec_module(modules["before"])
    rate, block, hop = 48000, 4800, 5.0
    keep = 10.0 + 4 * hop + 0.1 + 2.0  # what SceneClassifier.level_meter keeps for 10-s windows every 5 s
    meters = {name: module.LevelMeter(rate, keep_seconds=keep) for name, module in modules.items()}
    audio = (np.random.default_rng(3).standard_normal((1, int(rate * hop) * (hops + 4))) * 0.05).astype(np.float32)
    blocks = np.split(audio, audio.shape[1] // block, axis=1)
    per_hop = int(hop * rate) // block
    spent = {name: [] for name in meters}
    for k in range(hops + 4):
        for name in (list(meters) if k % 2 else list(meters)[::-1]):
            meter, t = meters[name], time.perf_counter()
            for b in blocks[k * per_hop:(k + 1) * per_hop]:
                meter.push_channels(b)
            meter.levels_between(max(0.0, (k + 1) * hop - 10.0), (k + 1) * hop)
            if (k + 1) % 12 == 0:  # a 60-s level interval
                meter.take_interval().to_record()
            if k >= 4:
                spent[name].append(time.perf_counter() - t)
    now = statistics.median(spent["now"]) * 1000
    measured = f"{statistics.median(spent['before']) * 1000:.1f} ms, in these hops" if before else \
        f"{LIVE_BEFORE_MS:.1f} ms, measured 2026-12-08"
    print(f"live meter per 5 s at 48 kHz: {now:.2f} ms (target \u2264 {LIVE_TARGET_MS} ms; before: {measured})  "
          f"[{len(spent['now'])} hops; fastest {min(spent['now']) * 1000:.2f} ms]")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hours", type=float, default=1.0)
    p.add_argument("--hops", type=int, default=40)
    p.add_argument("--live", action="store_true", help="only the live meter's figure")
    p.add_argument("--live-hops", type=int, default=120)
    p.add_argument("--before", help="an earlier levels.py to time beside the live meter")
    p.add_argument("--meter", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.meter:
        return meter_file(args.meter)
    live_figures(args.live_hops, args.before)
    if args.live:
        return
    with tempfile.TemporaryDirectory() as tmp:
        file_figures(Path(tmp), args.hours)
        print("third-octave bands, both ways:")
        band_figures()
        hop_figures(Path(tmp), args.hops)


if __name__ == "__main__":
    main()
