"""Plain helpers shared by the tests: constants, audio writers and data set builders (no fixtures here).

Fixtures live in conftest.py and are built from these.  Everything is small
(8 kHz, 1.5-s clips, narrow network, few epochs) so the whole suite runs in a
few minutes on two CPU cores.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

# The real recordings (../shared/data next to the checkout); may be absent, e.g. on CI.
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

TINY_CLASSES = ("street_traffic", "park", "metro", "rain")

TINY = {
    "audio": {"sample_rate": 8000, "clip_seconds": 1.5, "min_seconds": 0.2},
    "features": {"n_mels": 32, "patch_frames": 32, "patch_hop_frames": 16},
    "model": {"params": {"widths": [8, 16, 32]}},
    "train": {"epochs": 4, "batch_size": 32, "val_fraction": 0.25},
}


# --- audio files and small data sets ----------------------------------------------------------------------------

def write_tone(path: Path, *, sample_rate: int = 16000, seconds: float = 1.0, channels: int = 1,
               subtype: str = "PCM_16", frequency: float = 440.0) -> np.ndarray:
    """Write a sine (different phase per channel) and return the float64 samples written, (frames, channels)."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    data = np.stack([0.5 * np.sin(2 * np.pi * frequency * t + k) for k in range(channels)], axis=1)
    sf.write(str(path), data, sample_rate, subtype=subtype)
    return data


def two_class_folder(root: Path, per_class: int = 4) -> Path:
    """A class-per-folder data set: park/ and street/ with per_class 1.5-s tones at 8 kHz."""
    for label in ("park", "street"):
        (root / label).mkdir(parents=True)
        for k in range(per_class):
            write_tone(root / label / f"{k}.wav", sample_rate=8000, seconds=1.5, frequency=200 + 300 * k)
    return root


def write_labels_csv(path: Path, rows, header=("path", "label", "fold", "group")) -> Path:
    """A labels CSV with the given header and rows."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def in_memory(items, config, classes, **kwargs):
    """Features of items computed in memory by the one feature-set builder (no cache): (FeatureSet, skipped)."""
    from soundscene.training.cache import feature_sets

    sets, skipped = feature_sets({"all": items}, config, classes, use_cache=False, progress=False, **kwargs)
    return sets["all"], skipped


# --- miniature copies of the public data sets' exact layouts -----------------------------------------------------
# Real file names, separators and columns, with a few short generated WAVs.

TAU_SCENES = ("airport", "metro", "park")


def _clip(path: Path, scene: str, seed: int, *, sample_rate: int, seconds: float, channels: int, subtype: str):
    from soundscene.training.synth import synthesize_scene

    path.parent.mkdir(parents=True, exist_ok=True)
    mono = synthesize_scene({"airport": "cafe", "metro": "metro", "park": "park"}.get(scene, scene),
                            sample_rate=sample_rate, seconds=seconds, seed=seed, difficulty=0.1)
    data = np.stack([mono * (0.9 + 0.1 * k) for k in range(channels)], axis=1)
    sf.write(str(path), data, sample_rate, subtype=subtype)


def _tsv(path: Path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def make_tau(root: Path, *, mobile: bool = False, segments: int = 2, seconds: float = 1.0) -> Path:
    """TAU Urban Acoustic Scenes 2019 (or 2020 Mobile) development layout.

    Cities barcelona (train) and helsinki (evaluate) x 2 locations x `segments`
    segments x 3 scenes; 48 kHz 24-bit stereo like the real files (2020: devices
    a, b, s1 as copies of each segment, mono like the real 2020 set).
    """
    devices = ("a", "b", "s1") if mobile else ("a",)
    meta, train, evaluate, test = [], [], [], []
    seed = 0
    for scene in TAU_SCENES:
        for city in ("barcelona", "helsinki"):
            for loc in (0, 1):
                for seg in range(segments):
                    seed += 1
                    for dev in devices:
                        name = f"audio/{scene}-{city}-{loc}-{seg}-{dev}.wav"
                        _clip(root / name, scene, seed, sample_rate=48000 if not mobile else 44100,
                              seconds=seconds, channels=1 if mobile else 2, subtype="PCM_24")
                        meta.append([name, scene, f"{city}-{loc}", dev])
                        (train if city == "barcelona" else evaluate).append([name, scene])
                        if city == "helsinki":
                            test.append([name])
    _tsv(root / "meta.csv", ["filename", "scene_label", "identifier", "source_label"], meta)
    _tsv(root / "evaluation_setup" / "fold1_train.csv", ["filename", "scene_label"], train)
    _tsv(root / "evaluation_setup" / "fold1_evaluate.csv", ["filename", "scene_label"], evaluate)
    _tsv(root / "evaluation_setup" / "fold1_test.csv", ["filename"], test)
    return root


US8K_FORMATS = [  # (sample rate, channels, subtype): UrbanSound8K mixes them
    (44100, 2, "PCM_16"), (48000, 1, "PCM_24"), (22050, 1, "PCM_U8"), (96000, 2, "FLOAT"), (16000, 1, "PCM_16"),
    (11025, 2, "PCM_16"), (32000, 1, "PCM_32"), (44100, 1, "PCM_24"), (8000, 1, "PCM_16"), (24000, 2, "PCM_16"),
]


def make_urbansound8k(root: Path) -> Path:
    """UrbanSound8K layout: metadata/UrbanSound8K.csv and audio/fold1..fold10, 2 classes, mixed formats."""
    classes = [(3, "dog_bark"), (7, "jackhammer")]
    rows = []
    for fold in range(1, 11):
        rate, channels, subtype = US8K_FORMATS[fold - 1]
        for class_id, name in classes:
            fs_id = 1000 + fold * 10 + class_id
            for take in range(2):
                fname = f"{fs_id}-{class_id}-0-{take}.wav"
                scene = "street_traffic" if class_id == 3 else "metro"
                _clip(root / "audio" / f"fold{fold}" / fname, scene, fs_id * 7 + take, sample_rate=rate,
                      seconds=0.6 + 0.2 * take, channels=channels, subtype=subtype)
                rows.append([fname, fs_id, 0.0, 1.0, 1, fold, class_id, name])
    path = root / "metadata" / "UrbanSound8K.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        w.writerows(rows)
    return root


def make_esc50(root: Path) -> Path:
    """ESC-50 layout: meta/esc50.csv and audio/; 3 categories (2 in ESC-10), 5 folds, 2 takes per source."""
    categories = [(0, "dog", True), (10, "rain", True), (19, "thunderstorm", False)]
    rows = []
    for fold in range(1, 6):
        for target, category, esc10 in categories:
            src = 100000 + fold * 100 + target
            for take in "AB":
                fname = f"{fold}-{src}-{take}-{target}.wav"
                _clip(root / "audio" / fname, {"dog": "park", "rain": "rain"}.get(category, "street_traffic"),
                      src + ord(take), sample_rate=44100, seconds=0.5, channels=1, subtype="PCM_16")
                rows.append([fname, fold, target, category, str(esc10), src, take])
    path = root / "meta" / "esc50.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return root
