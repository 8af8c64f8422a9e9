"""Batch benchmark: audio hours per core-hour, today's ``predict`` beside ``batch`` (local 1 and 2 workers, Ray 2).

    python benchmarks/bench_batch.py [--hours 1.0] [--quick]

Input: a 48-kHz, 24-bit stereo WAV of --hours (the TAU 2019 format of field recorders).  Model: the paper's CNN
at the default configuration (22,050 Hz, log-mel, 10-s windows every 5 s) with random weights, as in
bench_deploy.py.  Every command runs in a fresh process, one thread per worker (OMP_NUM_THREADS=1), so that a
core-hour is a core-hour.  Figures, each beside its reference:

* audio hours per core-hour (= times real time per core) of ``predict`` (one thread) and of ``batch`` with the
  local engine on 1 and 2 workers, Ray on 2, and 1 worker without levels: with start (wall time x workers:
  process start, model load and plan included) and steady (the shards' CPU time; predict's classify_file in
  process); the issue's target is batch >= 2x predict's per-core rate;
* scaling efficiency from 1 to 2 workers, and Ray's wall time over the local engine's;
* the allocator (glibc malloc as is, SOUNDSCENE_MALLOC_TUNE=0, against soundscene's tuning) for predict and for
  batch, so each entry point's setting is chosen by measurement;
* peak memory of a worker (the largest child process; target < 1 GB whatever the file lengths);
* where a window's time goes: decode, mix, resample, levels, front end, network (plain, as predict runs it, and
  as a batch worker runs it: frozen TorchScript) and writing, in ms per 10-s window and as a share; and the
  largest difference between the two networks' probabilities (they agree to float rounding).

Run it alone on a quiet machine (other work beside it makes every figure slower).  --quick: a 3-minute file,
1-minute shards: a smoke test of the script, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench_deploy import make_model, predict_run, write_long_wav  # noqa: E402

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PEAK = ("import atexit, resource, sys; from soundscene.cli import main; "
        "atexit.register(lambda: sys.stderr.write('PEAK_KB %d CHILD_KB %d\\n' % ("
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        ")); sys.exit(main(sys.argv[1:]))")


def batch_run(model: Path, wav: Path, out: Path, *, engine: str, workers: int, shard_minutes: float,
              tuned: bool = True, levels: bool = True) -> dict:
    """`soundscene batch` in a fresh process: wall time, the largest worker's peak memory, its summary."""
    env = {**os.environ, **ONE_THREAD, "SOUNDSCENE_MALLOC_TUNE": "1" if tuned else "0"}
    command = [sys.executable, "-c", PEAK, "batch", str(model), str(wav), "--out", str(out), "--engine", engine,
               "--workers", str(workers), "--shard-minutes", str(shard_minutes), "--no-progress",
               *([] if levels else ["--no-levels"])]
    t = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    if result.returncode != 0:
        raise SystemExit(f"batch ({engine}, {workers}) failed: {result.stderr.strip()[-2000:]}")
    kb = result.stderr.rsplit("PEAK_KB ", 1)[1].split()
    return {"seconds": seconds, "driver_mb": int(kb[0]) / 1024, "worker_mb": int(kb[2]) / 1024,
            "summary": json.loads((out / "summary.json").read_text())}


def predict_timed(model: Path, wav: Path, *, tuned: bool = True) -> dict:
    old = os.environ.get("SOUNDSCENE_MALLOC_TUNE")
    os.environ["SOUNDSCENE_MALLOC_TUNE"] = "1" if tuned else "0"
    try:
        return predict_run(model, [wav])
    finally:
        if old is None:
            os.environ.pop("SOUNDSCENE_MALLOC_TUNE")
        else:
            os.environ["SOUNDSCENE_MALLOC_TUNE"] = old


def stage_profile(model: Path, wav: Path, minutes: float) -> dict:
    """Seconds per stage over the first ``minutes`` of ``wav``, one thread, in this process (tuned malloc)."""
    code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_batch; " \
           f"print(json.dumps(bench_batch._stages({str(model)!r}, {str(wav)!r}, {minutes!r})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **ONE_THREAD})
    if result.returncode != 0:
        raise SystemExit(f"profile failed: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _stages(model: str, wav: str, minutes: float) -> dict:
    import numpy as np
    import torch

    from soundscene.apps.batch import output
    from soundscene.apps.batch.shards import speed_up
    from soundscene.core.audio import AudioReader, StreamResampler
    from soundscene.core.inference import SceneClassifier
    from soundscene.core.models import predict_clips
    from soundscene.core.timeline import WINDOW_BATCH, Framer
    from soundscene.runtime import tune_malloc

    tune_malloc()
    torch.set_num_threads(1)
    clf = SceneClassifier.from_file(model)
    fast = SceneClassifier.from_file(model)
    network = speed_up(fast)
    times = dict.fromkeys(("decode", "mix", "resample", "levels", "front end", "network (predict)",
                           "network (batch)", "writing"), 0.0)

    def timed(stage, fn, *args, **kwargs):
        t = time.perf_counter()
        value = fn(*args, **kwargs)
        times[stage] += time.perf_counter() - t
        return value

    t = time.process_time()
    clf.classify_file(wav)  # today's predict, in process: its steady rate (process start excluded)
    predict_cpu = time.process_time() - t
    windows, batches, diff = [], [], 0.0
    with AudioReader(wav) as reader:
        rate = reader.info.sample_rate
        resampler = StreamResampler(rate, clf.sample_rate, reader.info.channels)
        meter = clf.level_meter(rate)
        framer = Framer(clf.window_samples, clf.hop_samples, clf.scorer.channels)
        for _ in range(int(minutes * 60 / 10)):
            block = timed("decode", reader.read, 10 * rate)
            if block.shape[-1] == 0:
                break
            if meter is not None:
                timed("levels", meter.push, np.ascontiguousarray(block).mean(axis=0))  # as the timeline does
            mixed = timed("mix", clf.scorer.mix, timed("resample", resampler.push, block))
            for _, w in framer.push(mixed):
                windows.append(w)
                if len(windows) == WINDOW_BATCH:
                    batches.append(np.stack(windows))
                    windows = []
    for batch in batches:
        feats = timed("front end", clf.scorer.front_end, torch.from_numpy(batch))
        config = dict(features_config=clf.config.features, aggregate=clf.config.model.aggregate)
        plain = timed("network (predict)", predict_clips, clf.scorer.net, feats, **config)
        quick = timed("network (batch)", predict_clips, fast.scorer.net, feats, **config)
        diff = max(diff, float((plain - quick).abs().max()))
    n = len(batches) * WINDOW_BATCH
    rows = [output.window_row({"start": 5.0 * k, "end": 5.0 * k + 10, "label": clf.classes[0], "confidence": 0.5,
                               "probabilities": {c: 0.1 for c in clf.classes}, "level_dbfs": -20.0,
                               "silent": False}, file="f.wav", file_id="0", shard=0, start=None) for k in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        schema = output.schemas(clf.classes)["windows"]
        timed("writing", output.write_rows, Path(tmp), "windows", "s", rows, sensor_id="x", schema=schema)
    return {"windows": n, "seconds": times, "network": network, "max_probability_difference": diff,
            "predict_cpu_seconds": predict_cpu}


def report(args, results: dict) -> None:
    hours = args.hours
    predict = results["predict"]
    base = hours / (predict["seconds"] / 3600)  # audio hours per core-hour (one thread)
    steady = hours * 3600 / results["stages"]["predict_cpu_seconds"]
    print(f"\naudio hours per core-hour ({hours:g} h of 48-kHz 24-bit stereo, 10-s windows every 5 s); "
          "'with start': wall time x workers, process start included; 'steady': the shards' CPU time")
    print(f"  {'':<27} {'with start':>10} {'steady':>8}")
    print(f"  {'predict, 1 thread':<27} {base:10.0f} {steady:8.0f}   reference (today; the issue: about 90)")
    for key, name in (("local1", "batch local, 1 worker"), ("local2", "batch local, 2 workers"),
                      ("ray2", "batch Ray, 2 workers"), ("local1_nolevels", "batch local, 1, --no-levels")):
        if key not in results:
            continue
        r = results[key]
        rate = hours / (r["seconds"] * r["workers"] / 3600)
        own = r["summary"]["audio_hours_per_core_hour"] or 0.0
        memory = "n/a (Ray's workers are not its children)" if key == "ray2" else f"{r['worker_mb']:.0f} MB"
        print(f"  {name:<27} {rate:10.0f} {own:8.0f}   {rate / base:4.2f}x / {own / steady:4.2f}x predict's "
              f"(target >= 2x); wall {r['seconds']:.1f} s; largest worker {memory} (target < 1024 MB)")
    if "local2" in results:
        one, two = results["local1"]["seconds"], results["local2"]["seconds"]
        print(f"  scaling 1 -> 2 workers      {one / (2 * two):8.0%}   of linear (wall {one:.1f} s -> {two:.1f} s)")
    if "ray2" in results:
        print(f"  Ray over local, 2 workers   {results['ray2']['seconds'] / results['local2']['seconds']:8.2f}x  "
              "wall time (Ray start and actors included)")
    print("\nallocator (wall time, s; default glibc malloc vs soundscene's tuning):")
    for key, name in (("predict", "predict"), ("local1", "batch local, 1 worker")):
        plain, tuned = results[f"{key}_untuned"]["seconds"], results[key]["seconds"]
        print(f"  {name:<27} untuned {plain:7.1f}   tuned {tuned:7.1f}   -> {'tuned' if tuned <= plain else 'untuned'} "
              f"is faster by {abs(plain - tuned) / max(plain, tuned):.0%}")
    stages = results["stages"]
    per = {k: 1000 * v / max(1, stages["windows"]) for k, v in stages["seconds"].items()}
    total = sum(v for k, v in per.items() if k != "network (batch)")
    print(f"\nwhere a 10-s window's time goes ({stages['windows']} windows; ms per window, share of predict's):")
    for name, ms in per.items():
        share = f"{ms / total:6.1%}" if name != "network (batch)" else "      "
        print(f"  {name:<20} {ms:8.2f} ms  {share}")
    print(f"  batch network: {stages['network']}; largest probability difference from predict's network "
          f"{stages['max_probability_difference']:.1e} (reference: 1e-6)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=1.0, help="length of the recording (default 1 h)")
    p.add_argument("--shard-minutes", type=float, default=10.0)
    p.add_argument("--no-ray", action="store_true", help="leave out the Ray engine")
    p.add_argument("--quick", action="store_true", help="a 3-minute file and 1-minute shards (smoke test)")
    args = p.parse_args()
    if args.quick:
        args.hours, args.shard_minutes = 0.05, 1.0
    try:
        import ray  # noqa: F401
    except ImportError:
        args.no_ray = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = make_model(folder)
        wav = write_long_wav(folder / "long.wav", args.hours)
        results = {"predict": predict_timed(model, wav), "predict_untuned": predict_timed(model, wav, tuned=False)}
        plan = [("local1", "local", 1, True, True), ("local1_untuned", "local", 1, False, True),
                ("local2", "local", 2, True, True), ("local1_nolevels", "local", 1, True, False)]
        if not args.no_ray:
            plan.append(("ray2", "ray", 2, True, True))
        for key, engine, workers, tuned, levels in plan:
            results[key] = {**batch_run(model, wav, folder / key, engine=engine, workers=workers,
                                        shard_minutes=args.shard_minutes, tuned=tuned, levels=levels),
                            "workers": workers}
            print(f"{key}: {results[key]['seconds']:.1f} s", file=sys.stderr)
        results["stages"] = stage_profile(model, wav, min(10.0, args.hours * 60))
    report(args, results)


if __name__ == "__main__":
    main()
