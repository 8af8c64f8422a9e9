"""Shared fixtures: a tiny configuration, a tiny synthetic data set and one tiny trained run.

Everything is small (8 kHz, 1.5-s clips, narrow network, few epochs) so the
whole suite runs in a few minutes on two CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundscene.config import Config

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY_CLASSES = ("street_traffic", "park", "metro", "rain")

TINY = {
    "audio": {"sample_rate": 8000, "clip_seconds": 1.5, "min_seconds": 0.2},
    "features": {"n_mels": 32, "patch_frames": 32, "patch_hop_frames": 16},
    "model": {"params": {"widths": [8, 16, 32]}},
    "train": {"epochs": 4, "batch_size": 32, "val_fraction": 0.25},
}


@pytest.fixture
def tiny_config() -> Config:
    return Config.from_dict(TINY)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """labels.csv of 4 easy synthetic classes x 10 clips of 1.5 s at 8 kHz (folds 1-5)."""
    from soundscene.training.synth import write_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny_data")
    return write_synthetic_dataset(root, clips_per_class=10, seconds=1.5, sample_rate=8000, seed=3,
                                   difficulty=0.2, classes=TINY_CLASSES, progress=False)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_dataset):
    """One trained tiny run (fold 5 held out), shared by the tests that only read it."""
    from soundscene.training.loop import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    return train(tiny_dataset, run_dir=run_dir, config=Config.from_dict(TINY), test_fold=5, progress=False)


def write_tone(path: Path, *, sample_rate: int = 16000, seconds: float = 1.0, channels: int = 1,
               subtype: str = "PCM_16", frequency: float = 440.0) -> np.ndarray:
    """Write a sine (different phase per channel) and return the float64 samples written, (frames, channels)."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    data = np.stack([0.5 * np.sin(2 * np.pi * frequency * t + k) for k in range(channels)], axis=1)
    sf.write(str(path), data, sample_rate, subtype=subtype)
    return data


@pytest.fixture(autouse=True, scope="session")
def _private_feature_cache(tmp_path_factory):
    """Tests never touch the user's ~/.cache: the default feature cache goes to a temporary folder."""
    import os

    old = os.environ.get("SOUNDSCENE_CACHE")
    os.environ["SOUNDSCENE_CACHE"] = str(tmp_path_factory.mktemp("feature_cache"))
    yield
    if old is None:
        os.environ.pop("SOUNDSCENE_CACHE", None)
    else:
        os.environ["SOUNDSCENE_CACHE"] = old


def two_class_folder(root: Path, per_class: int = 4) -> Path:
    """A class-per-folder data set: park/ and street/ with per_class 1.5-s tones at 8 kHz."""
    for label in ("park", "street"):
        (root / label).mkdir(parents=True)
        for k in range(per_class):
            write_tone(root / label / f"{k}.wav", sample_rate=8000, seconds=1.5, frequency=200 + 300 * k)
    return root


@pytest.fixture(scope="session")
def tau_scene_clips(tmp_path_factory) -> Path:
    """A folder of 10-s, 48-kHz, 24-bit stereo scene WAVs (the TAU 2019 format): the real TUT 2018 clips in
    ../shared/data/tut2018-samples when that folder is there, else three synthetic scenes written in that format,
    so the tests that use it run everywhere."""
    real = SHARED / "tut2018-samples"
    if real.is_dir() and any(real.rglob("*.wav")):
        return real
    from soundscene.training.synth import synthesize_scene

    root = tmp_path_factory.mktemp("tau_format")
    for k, scene in enumerate(("street_traffic", "metro", "park")):
        mono = synthesize_scene(scene, sample_rate=48000, seconds=10.0, seed=70 + k)
        sf.write(str(root / f"{scene}.wav"), np.stack([mono, 0.8 * mono], axis=1), 48000, subtype="PCM_24")
    return root
