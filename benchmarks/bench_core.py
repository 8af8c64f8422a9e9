"""Benchmark of the core: front end vs librosa, CNN inference, a training step, malloc tuning.

    python benchmarks/bench_core.py [--clips 16] [--repeats 7]

Input: 10-s clips written as 48 kHz, 24-bit, stereo WAV (the TAU 2019 format),
decoded and resampled to the configured rate (22,050 Hz) once; both front ends
then get the same mono batch.  Every figure is the median of --repeats runs.

Each measurement runs in fresh subprocesses, alternating glibc's default malloc
(SOUNDSCENE_MALLOC_TUNE=0) and soundscene's tuning (the default), two of each,
so the two are compared in the same run on the same machine; within a process
the compared functions (torch vs librosa) are timed in interleaved rounds.
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

from _timing import interleaved_times


def _times(fns: dict, repeats: int, warmup: int = 2) -> dict:
    return interleaved_times(fns, repeats, warmup)


def worker(clips: int, repeats: int) -> dict:
    import librosa
    import numpy as np
    import soundfile as sf
    import torch

    from soundscene.core.audio import load_audio
    from soundscene.config import Config
    from soundscene.core.features import FrontEnd
    from soundscene.core.models import build_model, predict_clips
    from soundscene.runtime import tune_malloc
    from soundscene.training.synth import synthesize_scene

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

        # Timed one after the other with a pause between, not interleaved: on 2 cores the thread
        # pools that numpy's OpenBLAS and torch's OpenMP leave spinning after a call slow
        # whichever library runs next.
        time.sleep(1.0)
        out.update(_times({f"frontend_{kind}_torch_s": lambda: fe(wave)}, repeats))
        time.sleep(1.0)
        out.update(_times({f"frontend_{kind}_librosa_s": librosa_loop}, repeats))

    fe = FrontEnd.from_config(cfg)
    net = build_model(cfg, n_classes=10).eval()
    one = torch.from_numpy(batch[:1])
    feats_one = fe(one)
    feats_all = fe(torch.from_numpy(batch))
    infer = dict(features_config=cfg.features, aggregate="mean")
    patches = torch.randn(64, 1, cfg.features.n_rows, cfg.features.patch_frames)

    def forward64():
        with torch.no_grad():
            net(patches)

    out.update(_times({
        "cnn_one_clip_s": lambda: predict_clips(net, feats_one, **infer),
        "end_to_end_one_clip_s": lambda: predict_clips(net, fe(one), **infer),
        "cnn_batch_s": lambda: predict_clips(net, feats_all, **infer),
        "cnn_batch64_patches_s": forward64,
    }, repeats))
    out["cnn_batch_per_clip_s"] = [t / clips for t in out.pop("cnn_batch_s")]
    net.train()
    labels = torch.randint(0, 10, (64,))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=5e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(patches), labels)
        loss.backward()
        opt.step()

    out.update(_times({"train_step_batch64_s": step}, repeats, warmup=3))
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

    # Two processes of each kind, alternating; each figure is the median over both processes' samples.
    raw = {"default malloc": [], "tuned malloc": []}
    for label, flag in (("default malloc", "0"), ("tuned malloc", "1")) * 2:
        env = {**os.environ, "SOUNDSCENE_MALLOC_TUNE": flag}
        proc = subprocess.run([sys.executable, __file__, "--worker", "--clips", str(args.clips),
                               "--repeats", str(args.repeats)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(proc.stderr)
        raw[label].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    results = {}
    for label, runs in raw.items():
        merged = {k: v for k, v in runs[0].items() if not isinstance(v, list)}
        for key, value in runs[0].items():
            if isinstance(value, list):
                merged[key] = statistics.median([t for run in runs for t in run[key]])
        results[label] = merged

    import torch

    d, t = results["default malloc"], results["tuned malloc"]
    clip_s = 10.0
    print(f"soundscene core benchmark: {args.clips} clips of 10 s (48 kHz 24-bit stereo -> 22050 Hz mono), "
          f"median of 2 processes x {args.repeats} interleaved repeats; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs")
    print(f"decode + resample: {t['decode_resample_per_clip_s'] * 1000:.1f} ms per clip (one pass)")
    print("\nfront end on the batch of clips       torch (default malloc)  torch (tuned)  librosa loop  "
          "tuned vs librosa")
    for kind in ("logmel", "mfcc"):
        a0, a, b = d[f"frontend_{kind}_torch_s"], t[f"frontend_{kind}_torch_s"], t[f"frontend_{kind}_librosa_s"]
        name = "log-mel (40 bands)" if kind == "logmel" else "MFCC 13 + deltas (39)"
        print(f"  {name:<34} {a0 * 1000:10.1f} ms  {a * 1000:12.1f} ms  {b * 1000:9.1f} ms  {b / a:10.2f}x")
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
