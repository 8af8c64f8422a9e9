"""The data layer (soundscene.training.data): manifests from folders and CSVs, splits, features and patches.

What happens to a clip that cannot be used is specified in test_cache.py (the feature-set builder owns it).
"""

import pytest
import torch

from helpers import SHARED, in_memory, two_class_folder, write_labels_csv, write_tone
from soundscene.config import Config
from soundscene.core.audio import load_audio
from soundscene.training.data import (PatchDataset, load_manifest, read_split, split_manifest,
                             write_split)
from soundscene.errors import DataError

ESC10 = SHARED / "esc10" / "labels.csv"


def _folder_dataset(root, classes=("a", "b"), per_class=3):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            write_tone(root / c / f"{i}.wav", sample_rate=8000, seconds=0.5, frequency=200 + 100 * i)
    return root


def test_folder_manifest(tmp_path):
    root = _folder_dataset(tmp_path / "data")
    (root / "notes.txt").write_text("ignored")
    m = load_manifest(root)
    assert m.classes == ["a", "b"] and len(m) == 6 and not m.has_folds


def test_csv_manifest_with_spaces_folds_and_groups(tmp_path):
    (tmp_path / "my clips").mkdir()
    rows = []
    for i in range(4):
        write_tone(tmp_path / "my clips" / f"clip {i}.wav", seconds=0.3)
        rows.append([f"my clips/clip {i}.wav", "x" if i % 2 else "y", i % 2 + 1, f"g{i // 2}"])
    m = load_manifest(write_labels_csv(tmp_path / "labels.csv", rows))
    assert m.has_folds and m.classes == ["x", "y"]
    assert m.items[0].path == (tmp_path / "my clips" / "clip 0.wav").resolve()
    assert m.items[3].group == "g1" and m.items[3].fold == 2


def test_manifest_errors_name_the_file_and_row(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_manifest(tmp_path / "nothing")
    bad = write_labels_csv(tmp_path / "bad.csv", [["a.wav"]], header=("path",))
    with pytest.raises(DataError, match=r"missing column\(s\) \['label'\]"):
        load_manifest(bad)
    write_tone(tmp_path / "a.wav")
    missing = write_labels_csv(tmp_path / "m.csv", [["a.wav", "x", "", ""], ["gone.wav", "y", "", ""]])
    with pytest.raises(DataError, match=r"m\.csv, row 3: audio file .*gone\.wav does not exist"):
        load_manifest(missing)
    badfold = write_labels_csv(tmp_path / "f.csv", [["a.wav", "x", "one", ""], ["a.wav", "y", "2", ""]])
    with pytest.raises(DataError, match="row 2: fold 'one'"):
        load_manifest(badfold)
    one_class = write_labels_csv(tmp_path / "o.csv", [["a.wav", "x", "", ""]])
    with pytest.raises(DataError, match="only one label"):
        load_manifest(one_class)


def test_fold_split_uses_folds_as_they_are(tiny_dataset):
    m = load_manifest(tiny_dataset)
    s = split_manifest(m, test_fold=5, val_fold=4)
    assert {i.fold for i in s["test"]} == {5} and {i.fold for i in s["val"]} == {4}
    assert {i.fold for i in s["train"]} == {1, 2, 3}
    default = split_manifest(m)
    assert {i.fold for i in default["test"]} == {5}
    with pytest.raises(DataError, match="fold 9 is not in"):
        split_manifest(m, test_fold=9)


def test_fraction_split_never_puts_a_group_on_two_sides(tmp_path):
    rows = []
    for g in range(12):
        for seg in range(3):
            name = f"rec{g}_{seg}.wav"
            write_tone(tmp_path / name, seconds=0.2)
            rows.append([name, "ab"[g % 2], "", f"rec{g}"])
    m = load_manifest(write_labels_csv(tmp_path / "l.csv", rows))
    for seed in range(5):
        s = split_manifest(m, test_fraction=0.25, val_fraction=0.2, seed=seed)
        sides = {}
        for name, part in s.items():
            for item in part:
                sides.setdefault(item.group, set()).add(name)
        assert all(len(v) == 1 for v in sides.values())
        assert sum(len(p) for p in s.values()) == len(m)
        assert {i.label for i in s["test"]} == {"a", "b"}


def test_split_round_trip(tmp_path, tiny_dataset):
    s = split_manifest(load_manifest(tiny_dataset), test_fold=5)
    write_split(s, tmp_path / "split.csv")
    back = read_split(tmp_path / "split.csv")
    assert {k: [i.path for i in v] for k, v in back.items()} == {k: [i.path for i in v] for k, v in s.items()}


def test_features_and_patches(tiny_dataset, tiny_config):
    m = load_manifest(tiny_dataset)
    fs, skipped = in_memory(m.items[:5], tiny_config, m.classes)
    assert not skipped
    frames = 1 + tiny_config.audio.clip_samples // tiny_config.features.hop_length(8000)
    assert fs.features.shape == (5, 1, 32, frames)
    ds = PatchDataset(fs, patch_frames=32, hop_frames=16)
    patches, labels, clips = ds.__getitems__([0, 1, len(ds) - 1])
    assert patches.shape == (3, 1, 32, 32)
    torch.testing.assert_close(patches[1], fs.features[0, ..., 16:48])
    assert clips.tolist()[-1] == 4 and labels[0] == fs.labels[0]


def test_unknown_label_is_refused(tiny_dataset, tiny_config):
    m = load_manifest(tiny_dataset)
    with pytest.raises(DataError, match="not one of the"):
        in_memory(m.items[:1], tiny_config, ["cafe", "office"])


def test_auto_clip_length_is_fixed_at_training(tmp_path, tiny_dataset):
    from soundscene.training.loop import prepare_run

    config = Config.from_dict({"audio": {"sample_rate": 8000, "min_seconds": 0.2},
                               "features": {"patch_frames": 32, "patch_hop_frames": 16}})
    assert config.audio.clip_seconds is None
    fixed, _, _ = prepare_run(tiny_dataset, tmp_path / "run", config=config)
    assert fixed.audio.clip_seconds == 1.5


def test_csv_row_with_extra_fields_names_its_line(tmp_path):
    write_tone(tmp_path / "a.wav")
    (tmp_path / "l.csv").write_text("path,label\n\na.wav,x\na.wav,y,\n")
    with pytest.raises(DataError, match=r"l\.csv, row 4: more fields than the header"):
        load_manifest(tmp_path / "l.csv")


def test_manifest_that_is_not_utf8(tmp_path):
    (tmp_path / "l.csv").write_bytes("path,label\ncaf\xe9.wav,x\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_manifest(tmp_path / "l.csv")


def test_macos_leftovers_are_ignored(tmp_path):
    root = two_class_folder(tmp_path / "d", per_class=1)
    (root / "__MACOSX" / "park").mkdir(parents=True)
    (root / "__MACOSX" / "park" / "._0.wav").write_bytes(b"\x00\x05\x16\x07")
    (root / "park" / "._0.wav").write_bytes(b"\x00\x05\x16\x07")
    m = load_manifest(root)
    assert m.classes == ["park", "street"] and len(m) == 2


def test_default_test_fold_avoids_the_validation_fold(tiny_dataset):
    s = split_manifest(load_manifest(tiny_dataset), val_fold=5)
    assert {i.fold for i in s["val"]} == {5} and {i.fold for i in s["test"]} == {4}
    with pytest.raises(DataError, match="not both"):
        split_manifest(load_manifest(tiny_dataset), test_fold=5, test_fraction=0.2)


@pytest.mark.skipif(not ESC10.is_file(), reason="../shared/data/esc10 is absent")
def test_esc10_manifest_folds_groups_and_ogg_with_spaces():
    m = load_manifest(ESC10)
    assert len(m) == 400 and len(m.classes) == 10
    assert set(m.class_counts().values()) == {40}
    assert {i.fold for i in m.items} == {1, 2, 3, 4, 5}
    assert all(i.group for i in m.items)  # from source_id
    assert " " in str(m.items[0].path)
    split = split_manifest(m, test_fold=5)
    assert len(split["test"]) == 80
    groups = {name: {i.group for i in part} for name, part in split.items()}
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    x = load_audio(m.items[0].path, sample_rate=22050)
    assert x.shape[0] == 1 and 3.0 < x.shape[1] / 22050 < 7.5
