"""Benchmark of the data pipeline on a generated TAU-format data set.

    python benchmarks/bench_cache.py [--clips 200] [--epochs 2]

Writes a TAU Urban Acoustic Scenes 2019-style set (audio/, meta.csv,
evaluation_setup/ TAB-separated) of 10-s, 48-kHz, 24-bit stereo WAV clips, then prints:

* feature-cache build throughput (clips/s) with 1 and with 2 worker processes;
* the time of a training epoch (paper CNN, batch 64, the training loop's DataLoader)
  with the cache (features read from disk) and without it (every clip decoded,
  resampled and featurised again, as an epoch without a cache must);
* the share of an epoch spent waiting for data vs. in the model.

Figures are medians over --epochs epochs.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from soundscene.training.cache import feature_sets, load_or_build
from soundscene.config import Config
from soundscene.training.data import PatchDataset, collate_batch
from soundscene.training.datasets import resolve_dataset
from soundscene.core.models import build_model
from soundscene.runtime import tune_malloc

SCENES = ("airport", "bus", "metro", "park", "street_traffic")


def write_tau(root: Path, clips: int) -> Path:
    rng = np.random.default_rng(0)
    rows, train = [], []
    sr, n = 48000, 480000
    t = np.arange(n) / sr
    for k in range(clips):
        scene = SCENES[k % len(SCENES)]
        name = f"audio/{scene}-city{k % 4}-{k % 7}-{k}-a.wav"
        tone = np.sin(2 * np.pi * (100 + 50 * (k % len(SCENES))) * t)
        stereo = 0.1 * rng.standard_normal((n, 2)) + 0.2 * tone[:, None]
        (root / "audio").mkdir(parents=True, exist_ok=True)
        sf.write(str(root / name), stereo.astype(np.float32), sr, subtype="PCM_24")
        rows.append([name, scene, f"city{k % 4}-{k % 7}", "a"])
        train.append([name, scene])
    setup = root / "evaluation_setup"
    setup.mkdir(parents=True, exist_ok=True)
    for path, header, body in ((root / "meta.csv", ["filename", "scene_label", "identifier", "source_label"], rows),
                               (setup / "fold1_train.csv", ["filename", "scene_label"], train[: clips * 3 // 4]),
                               (setup / "fold1_evaluate.csv", ["filename", "scene_label"], train[clips * 3 // 4:])):
        with open(path, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(header)
            w.writerows(body)
    return root


def train_epoch(features, config: Config, classes) -> tuple[float, float]:
    """One epoch as the training loop runs it; returns (seconds waiting for data, seconds in the model)."""
    torch.manual_seed(0)
    net = build_model(config, n_classes=len(classes))
    net.set_normalisation(features.features)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=5e-3)
    loader = torch.utils.data.DataLoader(
        PatchDataset(features, patch_frames=config.features.patch_frames,
                     hop_frames=config.features.patch_hop_frames),
        batch_size=config.train.batch_size, shuffle=True, collate_fn=collate_batch)
    waiting = model = 0.0
    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            patches, labels, _ = next(it)
        except StopIteration:
            break
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(patches), labels).backward()
        opt.step()
        t2 = time.perf_counter()
        waiting += t1 - t0
        model += t2 - t1
    return waiting, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    tune_malloc()
    config = Config().with_overrides({"audio.clip_seconds": 10.0})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        root = write_tau(tmp / "TAU-2019-dev", args.clips)
        print(f"wrote {args.clips} TAU-format clips (10 s, 48 kHz, 24-bit stereo) in {time.perf_counter() - t:.0f} s")
        manifest = resolve_dataset(f"tau2019:{root}")
        items, classes = manifest.items, manifest.classes

        builds = {}
        for workers in (1, 2):
            t = time.perf_counter()
            store = load_or_build(items, config, cache_dir=tmp / f"cache{workers}", workers=workers, progress=False)
            builds[workers] = time.perf_counter() - t
            print(f"cache build, {workers} worker(s): {builds[workers]:.1f} s = {len(items) / builds[workers]:.1f} clips/s")
        t = time.perf_counter()
        store = load_or_build(items, config, cache_dir=tmp / "cache2", progress=False)
        cached_set, _ = store.feature_set(items, classes)
        load_s = time.perf_counter() - t
        print(f"opening the built cache and reading all features: {load_s:.2f} s")

        with_cache, without_cache = [], []
        for _ in range(args.epochs):
            t = time.perf_counter()
            store = load_or_build(items, config, cache_dir=tmp / "cache2", progress=False)
            features, _ = store.feature_set(items, classes)
            prep = time.perf_counter() - t
            waiting, model = train_epoch(features, config, classes)
            with_cache.append((prep, waiting, model))

            t = time.perf_counter()
            features = feature_sets({"all": items}, config, classes, use_cache=False, progress=False)[0]["all"]
            prep = time.perf_counter() - t
            waiting, model = train_epoch(features, config, classes)
            without_cache.append((prep, waiting, model))

    def summary(runs):
        prep = statistics.median(r[0] for r in runs)
        waiting = statistics.median(r[1] for r in runs)
        model = statistics.median(r[2] for r in runs)
        total = prep + waiting + model
        return total, prep, waiting, model

    print(f"\nepoch over {len(items)} clips (median of {args.epochs}):   total    audio->features  "
          "batches  model    waiting for data")
    for name, runs in (("with the feature cache", with_cache), ("without a cache", without_cache)):
        total, prep, waiting, model = summary(runs)
        print(f"  {name:<38} {total:6.1f} s  {prep:8.1f} s       {waiting:5.2f} s  {model:5.1f} s  "
              f"{(prep + waiting) / total:6.1%}")


if __name__ == "__main__":
    main()
