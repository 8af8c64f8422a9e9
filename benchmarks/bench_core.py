"""Benchmark of the core: front end vs librosa, CNN inference, a training step, malloc tuning.

    python benchmarks/bench_core.py [--clips 16] [--repeats 7]

Input: 10-s clips written as 48 kHz, 24-bit, stereo WAV (the TAU 2019 format),
decoded and resampled to the configured rate (22,050 Hz) once; both front ends
then get the same mono batch.  Every figure is the median of --repeats runs.

Each measurement runs in a fresh subprocess twice: with glibc's default malloc
(SOUNDSCENE_MALLOC_TUNE=0) and with soundscene's tuning (the default), so the
two are compared in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def worker(clips: int, repeats: int) -> dict:
    import librosa
    import numpy as np
    import soundfile as sf
    import torch

    from soundscene.audio import load_audio
    from soundscene.config import Config
    from soundscene.features import FrontEnd
    from soundscene.models import build_model, predict_clips
    from soundscene.runtime import tune_malloc
    from soundscene.synth import synthesize_scene

    tuned = tune_malloc()
    torch.manual_seed(0)
    cfg = Config().with_overrides({"audio.clip_seconds": 10.0})
    sr = cfg.audio.sample_rate
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k in range(clips):
            left = synthesize_scene("street_traffic", sample_rate=48000, seconds=10.0, seed=k)
            right = synthesize_scene("street_traffic", sample_rate=48000, seconds=10.0, seed=k + 1000)
            path = Path(tmp) / f"clip{k}.wav"
            sf.write(str(path), np.stack([left, right], 1), 48000, subtype="PCM_24")
            paths.append(path)
        t = time.perf_counter()
        batch = np.stack([load_audio(p, sample_rate=sr) for p in paths])  # (clips, 1, samples)
        decode_s = (time.perf_counter() - t) / clips
    out = {"malloc_tuned": tuned, "clips": clips, "decode_resample_per_clip_s": decode_s}

    for kind, deltas in (("logmel", False), ("mfcc", True)):
        fcfg = cfg.with_overrides({"features.kind": kind, "features.deltas": deltas}).features
        fe = FrontEnd(fcfg, sample_rate=sr)
        wave = torch.from_numpy(batch)

        def librosa_loop():
            for y in batch[:, 0]:
                S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=fe.n_fft, hop_length=fe.hop_length,
                                                   win_length=fe.win_length, n_mels=fcfg.n_mels, center=True,
                                                   pad_mode="constant", power=2.0)
                db = librosa.power_to_db(S, top_db=fcfg.top_db)
                if kind == "mfcc":
                    import scipy.fft

                    m = scipy.fft.dct(db, axis=-2, type=2, norm="ortho")[:fcfg.n_mfcc]
                    np.concatenate([m, librosa.feature.delta(m), librosa.feature.delta(m, order=2)])

        out[f"frontend_{kind}_torch_s"] = _median_time(lambda: fe(wave), repeats)
        out[f"frontend_{kind}_librosa_s"] = _median_time(librosa_loop, repeats)

    fe = FrontEnd(cfg.features, sample_rate=sr)
    net = build_model(cfg.model, in_channels=1, n_rows=cfg.features.n_rows, n_classes=10).eval()
    one = torch.from_numpy(batch[:1])
    feats_one = fe(one)
    feats_all = fe(torch.from_numpy(batch))
    infer = dict(features_config=cfg.features, aggregate="mean")
    out["cnn_one_clip_s"] = _median_time(lambda: predict_clips(net, feats_one, **infer), repeats)
    out["end_to_end_one_clip_s"] = _median_time(lambda: predict_clips(net, fe(one), **infer), repeats)
    out["cnn_batch_per_clip_s"] = _median_time(lambda: predict_clips(net, feats_all, **infer), repeats) / clips

    patches = torch.randn(64, 1, cfg.features.n_rows, cfg.features.patch_frames)
    with torch.no_grad():
        out["cnn_batch64_patches_s"] = _median_time(lambda: net(patches), repeats)
    net.train()
    labels = torch.randint(0, 10, (64,))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=5e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(patches), labels)
        loss.backward()
        opt.step()

    out["train_step_batch64_s"] = _median_time(step, repeats, warmup=2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.clips, args.repeats)))
        return

    results = {}
    for label, flag in (("default malloc", "0"), ("tuned malloc", "1")):
        env = {**os.environ, "SOUNDSCENE_MALLOC_TUNE": flag}
        proc = subprocess.run([sys.executable, __file__, "--worker", "--clips", str(args.clips),
                               "--repeats", str(args.repeats)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(proc.stderr)
        results[label] = json.loads(proc.stdout.strip().splitlines()[-1])

    import torch

    d, t = results["default malloc"], results["tuned malloc"]
    clip_s = 10.0
    print(f"soundscene core benchmark: {args.clips} clips of 10 s (48 kHz 24-bit stereo -> 22050 Hz mono), "
          f"median of {args.repeats}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs")
    print(f"decode + resample: {t['decode_resample_per_clip_s'] * 1000:.1f} ms per clip")
    print("\nfront end on the batch (tuned malloc)            torch      librosa loop   speed-up")
    for kind in ("logmel", "mfcc"):
        a, b = t[f"frontend_{kind}_torch_s"], t[f"frontend_{kind}_librosa_s"]
        name = "log-mel (40 bands)" if kind == "logmel" else "MFCC 13 + deltas (39)"
        print(f"  {name:<44} {a * 1000:8.1f} ms  {b * 1000:8.1f} ms   {b / a:6.2f}x")
    print("\nmodel (paper CNN, 1x40x100 patches)            default malloc  tuned malloc  tuned/default")
    rows = [
        ("CNN, one 10-s clip (19 patches)", "cnn_one_clip_s"),
        ("front end + CNN, one 10-s clip", "end_to_end_one_clip_s"),
        ("CNN per clip, batch of clips", "cnn_batch_per_clip_s"),
        ("CNN forward, batch of 64 patches", "cnn_batch64_patches_s"),
        ("training step, batch of 64 patches", "train_step_batch64_s"),
    ]
    for name, key in rows:
        print(f"  {name:<44} {d[key] * 1000:8.1f} ms  {t[key] * 1000:8.1f} ms   {d[key] / t[key]:6.2f}x faster")
    print("\nreal-time factor of one 10-s clip (tuned): CNN only "
          f"{clip_s / t['cnn_one_clip_s']:.0f}x, front end + CNN {clip_s / t['end_to_end_one_clip_s']:.0f}x, "
          f"batched {clip_s / t['cnn_batch_per_clip_s']:.0f}x")


if __name__ == "__main__":
    main()
