"""Deployment benchmark, on one CPU thread: long recordings, streaming, ONNX Runtime, the HTTP service.

    python benchmarks/bench_deploy.py [--hours 1.0] [--repeats 7] [--requests 200] [--concurrency 8]

Model: the paper's CNN at the default configuration (22,050 Hz, log-mel, 10-s clips) with random
weights (speed does not depend on the weights).  Figures, each beside its reference:

* ``predict`` on a 1-h 48-kHz 24-bit stereo WAV (10-s windows every 5 s): real-time factor and the
  process's peak resident memory (target < 1 GB), and the same for two such files in one call (target: no
  more than one); with --hours H, also an H-hour file beside the 1-h one (target: within 50 MB of it);
* streaming: the time from a hop's last block to its decision (median, p99);
* one 10-s clip at batch 1: the torch model against the exported ONNX graph in ONNX Runtime;
* the HTTP service on loopback: N requests of a 10-s WAV, C at a time, bounded in time: throughput,
  p50/p99 latency and failed requests (target zero).

Run it alone on a quiet machine: other work beside it makes every figure slower.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def make_model(folder: Path) -> Path:
    import torch

    from soundscene.config import Config
    from soundscene.core.modelfile import save_model_file
    from soundscene.core.models import build_model

    torch.manual_seed(0)
    config = Config().with_overrides({"audio.clip_seconds": 10.0})
    classes = ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
               "street_pedestrian", "street_traffic", "tram"]
    net = build_model(config, n_classes=len(classes)).eval()
    return save_model_file(folder / "model.safetensors", net, config, classes)


def write_long_wav(path: Path, hours: float, rate: int = 48000) -> Path:
    """A long 48-kHz 24-bit stereo recording, written block by block (noise bed + tones); RF64 past 4 GB."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    block = rate * 60
    # Over 4 GB a RIFF WAV's 32-bit sizes overflow: long recordings are RF64 (the WAV of broadcast and sensors).
    fmt = "RF64" if hours * 3600 * rate * 2 * 3 > 2**32 - 2**20 else "WAV"
    with sf.SoundFile(str(path), "w", rate, 2, subtype="PCM_24", format=fmt) as f:
        for k in range(int(round(hours * 60))):
            t = (np.arange(block) + k * block) / rate
            x = 0.05 * rng.standard_normal((block, 2)) + 0.2 * np.sin(2 * np.pi * (200 + 50 * (k % 7)) * t)[:, None]
            f.write(x.astype(np.float32))
    return path


def predict_run(model: Path, files: list[Path]) -> dict:
    """Run `soundscene predict` in a fresh process on one thread; its wall time and peak RSS."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = ("import atexit, resource, sys, torch; torch.set_num_threads(1); from soundscene.cli import main; "
            "atexit.register(lambda: sys.stderr.write('PEAK_KB %d\\n' % "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)); sys.exit(main(sys.argv[1:]))")
    t = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, "predict", str(model), *map(str, files), "--format", "json"],
                            capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    if result.returncode != 0:
        raise SystemExit(f"predict failed: {result.stderr.strip()}")
    peak_kb = int(result.stderr.rsplit("PEAK_KB ", 1)[1].split()[0])
    records = json.loads(result.stdout)
    return {"seconds": seconds, "peak_mb": peak_kb / 1024, "windows": sum(len(r["windows"]) for r in records)}


def streaming_latency(model: Path, repeats: int) -> dict:
    import numpy as np
    import torch

    from soundscene.core.inference import SceneClassifier
    from soundscene.training.synth import synthesize_scene

    torch.set_num_threads(1)
    clf = SceneClassifier.from_file(model)
    stream = clf.stream(input_rate=48000, channels=1)
    block = np.ascontiguousarray(synthesize_scene("street_traffic", sample_rate=48000, seconds=1.0, seed=1)[:4800])
    latencies = []
    while len(latencies) < 20 * repeats:
        t = time.perf_counter()
        made = stream.push(block)  # 0.1-s blocks: a decision every 5 s
        if made:
            latencies.append(time.perf_counter() - t)
        if len(latencies) >= 40:
            break
    latencies.sort()
    return {"median_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
            "hop_seconds": clf.hop_seconds}


def onnx_vs_torch(model: Path, folder: Path, repeats: int) -> dict:
    import numpy as np
    import torch

    from soundscene.core.inference import SceneClassifier
    from soundscene.training.synth import synthesize_scene

    torch.set_num_threads(1)
    clf = SceneClassifier.from_file(model)
    clip = synthesize_scene("park", sample_rate=clf.sample_rate, seconds=10.0, seed=2).astype(np.float32)
    try:
        import onnxruntime as ort

        from soundscene.apps.export import export_onnx
    except ImportError as exc:
        return {"error": f"ONNX export unavailable: {exc}"}
    onnx_path = folder / "model.onnx"
    export_onnx(model, onnx_path, verify_with=[clip])
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    x = clip[None]

    def run_torch():
        clf.classify_clips([clip])

    def run_ort():
        session.run(["probabilities"], {"waveform": x})

    times = {"torch": [], "onnxruntime": []}
    for fn in (run_torch, run_ort):
        fn()
    for _ in range(repeats):
        for name, fn in (("torch", run_torch), ("onnxruntime", run_ort)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    diff = float(np.abs(session.run(["probabilities"], {"waveform": x})[0][0] - clf.classify_clips([clip])[0]).max())
    return {**{k: 1000 * statistics.median(v) for k, v in times.items()}, "max_abs_diff": diff}


def service_load(model: Path, folder: Path, requests: int, concurrency: int, limit_seconds: float = 120) -> dict:
    import socket

    import httpx
    import numpy as np
    import soundfile as sf

    from soundscene.training.synth import synthesize_scene

    clip = folder / "clip.wav"
    sf.write(str(clip), synthesize_scene("cafe", sample_rate=48000, seconds=10.0, seed=3), 48000, subtype="PCM_16")
    data = clip.read_bytes()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = ("import sys, torch; torch.set_num_threads(1); from soundscene.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    server = subprocess.Popen([sys.executable, "-c", code, "serve", str(model), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"the service did not start: {server.stderr.read().decode()[-500:]}")
            time.sleep(0.2)
        latencies, failures, lock = [], [], threading.Lock()
        todo = iter(range(requests))
        stop_at = time.monotonic() + limit_seconds

        def client():
            with httpx.Client(timeout=60) as c:
                while time.monotonic() < stop_at:
                    with lock:
                        k = next(todo, None)
                    if k is None:
                        return
                    t = time.perf_counter()
                    try:
                        r = c.post(f"{url}/v1/classify", files={"file": (f"clip{k}.wav", data, "audio/wav")})
                        ok = r.status_code == 200 and "label" in r.json()
                    except httpx.HTTPError:
                        ok = False
                    with lock:
                        (latencies if ok else failures).append(time.perf_counter() - t)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(concurrency)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies.sort()
    done = len(latencies)
    return {"requests": requests, "completed": done, "failed": len(failures), "not_sent": requests - done - len(failures),
            "seconds": wall, "per_second": done / wall if wall else 0.0,
            "p50_ms": 1000 * latencies[done // 2] if done else None,
            "p99_ms": 1000 * latencies[int(0.99 * (done - 1))] if done else None}


def long_report(model: Path, folder: Path, hours: float) -> None:
    """Real-time factor and peak memory of `predict` on 1-h files (one, and two in one call) and, with
    --hours other than 1, on a file that long beside the 1-h figure: memory must not grow with length."""
    long_a = write_long_wav(folder / "long_a.wav", 1.0)
    long_b = write_long_wav(folder / "long_b.wav", 1.0)
    one = predict_run(model, [long_a])
    two = predict_run(model, [long_a, long_b])
    print(f"\npredict on a 1-h 48-kHz 24-bit stereo WAV ({long_a.stat().st_size / 1e6:.0f} MB):")
    print(f"  real-time factor       {3600 / one['seconds']:8.0f}x real time "
          f"({one['seconds']:.1f} s, {one['windows']} windows)   reference: 1x = real time")
    print(f"  peak memory, 1 file    {one['peak_mb']:8.0f} MB   target < 1024 MB "
          f"(release 1: 5,800 MB for a 1-h 16-kHz mono file)")
    print(f"  peak memory, 2 files   {two['peak_mb']:8.0f} MB   target: no more than one file "
          f"(release 1: 9,800 MB)")
    if hours != 1.0:
        long_path = write_long_wav(folder / "long_n.wav", hours)
        long_a.unlink(), long_b.unlink()
        n = predict_run(model, [long_path])
        print(f"\npredict on a {hours:g}-h file ({long_path.stat().st_size / 1e9:.1f} GB), beside the 1-h file:")
        print(f"  peak memory            {one['peak_mb']:8.0f} MB (1 h)   {n['peak_mb']:.0f} MB ({hours:g} h)   "
              f"difference {n['peak_mb'] - one['peak_mb']:+.0f} MB   target: within 50 MB, and < 1024 MB "
              "(release 2: 571 MB at 1 h, 1,792 MB at 3 h)")
        print(f"  real-time factor       {hours * 3600 / n['seconds']:8.0f}x real time ({n['seconds']:.0f} s, "
              f"{n['windows']} windows)")
        expected = int(hours * 3600 / 5) - 1  # 10-s windows every 5 s
        if abs(n["windows"] - expected) > 2:
            raise SystemExit(f"the {hours:g}-h file gave {n['windows']} windows, not about {expected}: it was not "
                             "read whole")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0,
                        help="also measure a recording this long beside the 1-h one (e.g. 6)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--skip", nargs="*", default=[], choices=["long", "stream", "onnx", "service"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = make_model(folder)
        print(f"model: paper_cnn, 22,050 Hz log-mel, 10-s windows every 5 s; one CPU thread; {os.cpu_count()} cores here")
        if "long" not in args.skip:
            long_report(model, folder, args.hours)
        if "stream" not in args.skip:
            s = streaming_latency(model, args.repeats)
            print(f"\nstreaming (48-kHz input in 0.1-s blocks, a decision every {s['hop_seconds']:g} s):")
            print(f"  decision latency       {s['median_ms']:8.1f} ms median, {s['p99_ms']:.1f} ms p99   "
                  f"reference: the hop, {1000 * s['hop_seconds']:.0f} ms")
        if "onnx" not in args.skip:
            o = onnx_vs_torch(model, folder, args.repeats)
            print("\none 10-s clip at batch 1 (waveform -> probabilities):")
            if "error" in o:
                print(f"  {o['error']}")
            else:
                print(f"  torch                  {o['torch']:8.1f} ms")
                print(f"  ONNX Runtime           {o['onnxruntime']:8.1f} ms   ({o['torch'] / o['onnxruntime']:.2f}x torch; "
                      f"max |diff| {o['max_abs_diff']:.1e})")
        if "service" not in args.skip:
            r = service_load(model, folder, args.requests, args.concurrency)
            print(f"\nHTTP service on loopback: {r['requests']} uploads of a 10-s 48-kHz WAV, {args.concurrency} at a time:")
            print(f"  throughput             {r['per_second']:8.1f} requests/s ({r['completed']} in {r['seconds']:.1f} s)")
            print(f"  latency                {r['p50_ms']:8.0f} ms p50, {r['p99_ms']:.0f} ms p99")
            print(f"  failed                 {r['failed']:8d}   target 0 (not sent within the time bound: {r['not_sent']})")


if __name__ == "__main__":
    main()
