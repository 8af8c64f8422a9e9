"""Training throughput of each preset: patches per second and seconds per epoch of a TAU 2019-sized set.

    python benchmarks/bench_train.py [--batches 30] [--presets paper strong tiny]

A TAU Urban Acoustic Scenes 2019 development set has 9,185 clips of 10 s: with 100-frame patches every 50
frames that is 19 patches per clip, 174,515 per epoch.  The benchmark generates log-mel-like features for
256 such clips (speed does not depend on the values), trains each preset's network with its augmentation
through the real loop (soundscene.training.loop.SceneModule in a Lightning Trainer) for --batches batches after
a warm-up, and extrapolates the epoch time from the measured patches per second.  It runs on the CPU, and
also on the GPU where one is present (reported side by side, same run).
"""

from __future__ import annotations

import argparse
import time

TAU_CLIPS, PATCHES_PER_CLIP = 9185, 19


def measure(preset: str, accelerator: str, batches: int, warmup: int = 5) -> dict:
    import lightning as L
    import torch

    from soundscene.config import Config
    from soundscene.training.data import FeatureSet, PatchDataset, collate_batch
    from soundscene.core.models import build_model
    from soundscene.training.loop import SceneModule, _quiet_lightning

    config = Config.preset(preset).with_overrides({"audio.clip_seconds": 10.0, "train.accelerator": accelerator})
    n_clips, classes = 256, 10
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(n_clips, 1, config.features.n_rows, 1001, generator=g) * 10 - 40
    labels = torch.randint(0, classes, (n_clips,), generator=g)
    fs = FeatureSet(feats, labels, [None] * n_clips)
    net = build_model(config, n_classes=classes)
    net.set_normalisation(feats)
    augmenter = None
    if config.augment.any:
        from soundscene.training.augment import Augmenter

        augmenter = Augmenter.from_config(config, n_classes=classes)
    module = SceneModule(net, config, feats[:8], labels[:8], augmenter)
    loader = torch.utils.data.DataLoader(
        PatchDataset(fs, patch_frames=config.features.patch_frames, hop_frames=config.features.patch_hop_frames),
        batch_size=config.train.batch_size, shuffle=True, collate_fn=collate_batch)
    class Clock(L.Callback):
        times: list = []

        def on_train_batch_start(self, *args):
            self.times.append(time.perf_counter())

    clock = Clock()
    with _quiet_lightning():
        trainer = L.Trainer(max_epochs=1, limit_train_batches=warmup + batches + 1, accelerator=accelerator, devices=1,
                        precision=config.train.precision, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[clock],
                            limit_val_batches=0, num_sanity_val_steps=0)
        trainer.fit(module, train_dataloaders=loader)
    t = clock.times
    seconds = t[warmup + batches] - t[warmup]
    per_second = batches * config.train.batch_size / seconds
    return {"patches_per_second": per_second, "epoch_seconds": TAU_CLIPS * PATCHES_PER_CLIP / per_second,
            "batch": config.train.batch_size, "model": config.model.name}


def main() -> None:
    import logging
    import warnings

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--presets", nargs="+", default=["paper", "strong", "tiny"])
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    devices = ["cpu"] + (["gpu"] if torch.cuda.is_available() else [])
    print(f"training throughput, TAU 2019-sized epoch ({TAU_CLIPS} clips x {PATCHES_PER_CLIP} patches); "
          f"CPU threads: {torch.get_num_threads()}; GPU: {torch.cuda.get_device_name(0) if len(devices) > 1 else 'none'}")
    print(f"{'preset':<8} {'model':<10} {'device':<6} {'batch':>5} {'patches/s':>10} {'s/epoch':>9}")
    results = {}
    for preset in args.presets:
        for device in devices:
            r = measure(preset, device, args.batches)
            results[(preset, device)] = r
            print(f"{preset:<8} {r['model']:<10} {device:<6} {r['batch']:>5} {r['patches_per_second']:>10.0f} "
                  f"{r['epoch_seconds']:>9.0f}")
    if len(devices) > 1:
        for preset in args.presets:
            print(f"{preset}: GPU / CPU = {results[(preset, 'gpu')]['patches_per_second'] / results[(preset, 'cpu')]['patches_per_second']:.1f}x"
                  "   (target for paper: >= 15x)")


if __name__ == "__main__":
    main()
