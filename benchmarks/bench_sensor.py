"""The city sensor: an exported model under ONNX Runtime in a sensor-only environment, beside torch ``listen``.

    python benchmarks/bench_sensor.py [--hops 30] [--seconds 120] [--sensor-venv DIR]

For the paper and tiny presets (random weights: speed does not depend on them), at 48 kHz stereo input in
0.1-s blocks, 10-s windows every 5 s, levels on, one thread:

* time per hop (median over interleaved hops, in process) for torch and for ONNX, with the level meter's share
  (target: ONNX <= 25 ms per hop for the paper model, the meter <= 10 % of it; issue 14 measured torch at
  61.5 ms);
* a whole ``soundscene listen --stdin`` process over ``--seconds`` of audio: CPU time (user + system) and peak
  resident memory, torch (this environment, .safetensors) against ONNX (the sensor environment, .onnx)
  (targets: ONNX <= 0.6x torch's CPU time, <= 200 MB peak), and the time from start to the first decision
  (target <= 2 s);
* the size on disk of the sensor environment (target <= 450 MB) beside this one's.

The sensor environment is made with ``pip install ".[sensor]"`` in a temporary folder unless ``--sensor-venv``
names one.  Run it alone on a quiet machine: other work beside it makes every figure slower.
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

ROOT = Path(__file__).resolve().parent.parent
RATE = 48000
CLASSES = ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
           "street_pedestrian", "street_traffic", "tram"]


def make_models(folder: Path, preset: str) -> tuple[Path, Path]:
    """A model file of ``preset`` with 10-s clips, and its ONNX export."""
    import torch

    from soundscene.apps.export import export_onnx
    from soundscene.config import Config
    from soundscene.core.modelfile import save_model_file
    from soundscene.core.models import build_model

    torch.manual_seed(0)
    config = Config.preset(preset).with_overrides({"audio.clip_seconds": 10.0})
    net = build_model(config, n_classes=len(CLASSES)).eval()
    model = save_model_file(folder / f"{preset}.safetensors", net, config, CLASSES)
    export_onnx(model, folder / f"{preset}.onnx")
    return model, folder / f"{preset}.onnx"


def hop_times(paths: dict[str, Path], hops: int) -> dict[str, float]:
    """Median seconds per hop of each (name -> model path) with levels, and of the level meter alone."""
    import torch

    from soundscene.core.inference import SceneClassifier

    torch.set_num_threads(1)
    clfs = {name: SceneClassifier.from_file(path) for name, path in paths.items()}
    hop = int(5.0 * RATE)
    out = {name: statistics.median(times) for name, times in
           stream_hop_times(clfs, rate=RATE, hop=hop, hops=hops).items()}
    out["meter"] = meter_time(hop, hops)
    return out


def meter_time(hop: int, hops: int) -> float:
    """Median seconds of the level meter per 5-s hop of stereo input, as the stream drives it (the mono mix,
    0.1-s blocks, the window's levels at each decision)."""
    import numpy as np

    from soundscene.core.levels import LevelMeter

    x = (np.random.default_rng(2).standard_normal((2, hop * (hops + 3))) * 0.05).astype(np.float32)
    meter = LevelMeter(RATE, keep_seconds=40.0)
    times, step = [], RATE // 10
    for h in range(hops + 3):
        t = time.perf_counter()
        for k in range(h * hop, (h + 1) * hop, step):
            meter.push_channels(x[:, k:k + step])
        if h >= 2:
            meter.levels_between((h + 1) * 5.0 - 10.0, (h + 1) * 5.0)
        times.append(time.perf_counter() - t)
    return statistics.median(times[3:])


def write_pcm(path: Path, seconds: float) -> Path:
    """``seconds`` of 48-kHz stereo s16le: real TUT clips when ../shared has them, else noise and tones."""
    import numpy as np

    clips = sorted((ROOT.parent / "shared/data/tut2018-samples/audio").glob("*.wav"))
    n = int(seconds * RATE)
    if clips:
        import soundfile as sf

        audio = np.concatenate([sf.read(str(c), dtype="int16")[0] for c in clips])
        audio = np.resize(audio, (n, 2)) if audio.shape[0] < n else audio[:n]
    else:
        t = np.arange(n) / RATE
        mono = 0.1 * np.random.default_rng(0).standard_normal(n) + 0.1 * np.sin(2 * np.pi * 440 * t)
        audio = (np.stack([mono, mono], 1) * 32767).astype(np.int16)
    path.write_bytes(np.ascontiguousarray(audio, dtype="<i2").tobytes())
    return path


# The child reports its own peak (VmHWM) at exit: a forked child's ru_maxrss starts at its parent's size.
_LISTEN = ("import atexit, re, sys\n"
           "atexit.register(lambda: sys.stderr.write('peak_kb=' + re.search(r'VmHWM:\\s+(\\d+)', "
           "open('/proc/self/status').read()).group(1) + '\\n'))\n"
           "from soundscene.cli import main\nsys.exit(main(sys.argv[1:]))")


def run_listen(python: Path, model: Path, pcm: Path) -> dict[str, float]:
    """One ``listen --stdin`` process: CPU seconds, peak RSS (MB), seconds to the first decision, decisions."""
    argv = [str(python), "-c", _LISTEN, "listen", str(model), "--stdin", "--rate", str(RATE), "--channels", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    with open(pcm, "rb") as stdin:
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        first = proc.stdout.readline()
        first_at = time.perf_counter() - start
        lines = 1 + sum(1 for _ in proc.stdout) if first else 0
        err = proc.stderr.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
    if status != 0 or "peak_kb=" not in err:
        raise SystemExit(f"listen {model} failed with status {status}: {err[-500:]}")
    peak = int(err.rsplit("peak_kb=", 1)[1].split()[0]) / 1024
    return {"cpu": usage.ru_utime + usage.ru_stime, "peak_mb": peak, "first": first_at, "decisions": lines}


def sensor_venv(given: str | None, scratch: Path) -> Path:
    if given:
        return Path(given)
    venv = scratch / "sensor-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "-q", f"{ROOT}[sensor]"], check=True)
    return venv


def du_mb(path: Path) -> float:
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True).stdout.split()[0]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hops", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--sensor-venv", help="a sensor environment (pip install '.[sensor]'); default: made here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        venv = sensor_venv(args.sensor_venv, scratch)
        pcm = write_pcm(scratch / "input.s16le", args.seconds)
        print(f"environments: sensor {du_mb(venv):.0f} MB (target <= 450 MB), this one (torch, training) "
              f"{du_mb(Path(sys.prefix)):.0f} MB")
        for preset in ("paper", "tiny"):
            model, onnx_model = make_models(scratch, preset)
            per_hop = hop_times({"torch": model, "onnx": onnx_model}, args.hops)
            target = "  (target <= 25 ms for the paper model)" if preset == "paper" else ""
            print(f"{preset}: time per 5-s hop at 48 kHz stereo with levels, one thread ({args.hops} hops): "
                  f"torch {per_hop['torch'] * 1000:.1f} ms, ONNX {per_hop['onnx'] * 1000:.1f} ms{target}")
            print(f"  share of one core: torch {per_hop['torch'] / 5 * 100:.2f} %, ONNX "
                  f"{per_hop['onnx'] / 5 * 100:.2f} %; the level meter {per_hop['meter'] * 1000:.2f} ms per hop = "
                  f"{per_hop['meter'] / per_hop['onnx'] * 100:.0f} % of the ONNX hop (target <= 10 %)")
            runs = {"torch": run_listen(Path(sys.executable), model, pcm),
                    "onnx": run_listen(venv / "bin/python", onnx_model, pcm)}
            t, o = runs["torch"], runs["onnx"]
            print(f"  listen --stdin over {args.seconds:g} s ({o['decisions']} decisions): CPU torch {t['cpu']:.2f} s, "
                  f"ONNX {o['cpu']:.2f} s = {o['cpu'] / t['cpu']:.2f}x (target <= 0.6x); peak memory torch "
                  f"{t['peak_mb']:.0f} MB, ONNX {o['peak_mb']:.0f} MB (target <= 200 MB); first decision after "
                  f"torch {t['first']:.2f} s, ONNX {o['first']:.2f} s (target <= 2 s)")


if __name__ == "__main__":
    main()
