"""The public data sets' layouts (soundscene.training.datasets): miniature copies of TAU 2019/2020, UrbanSound8K
and ESC-50 resolve to manifests with their official folds and groups; `soundscene datasets` checks a data set."""

import csv

import pytest

from helpers import make_esc50, make_tau, make_urbansound8k, write_tone
from soundscene.training.data import split_manifest
from soundscene.training.datasets import check_dataset, resolve_dataset, with_groups_from_names, DEFAULT_GROUP_PATTERN
from soundscene.errors import DataError


@pytest.fixture(scope="module")
def tau2019(tmp_path_factory):
    return make_tau(tmp_path_factory.mktemp("TAU-urban-acoustic-scenes-2019-development"))


@pytest.fixture(scope="module")
def tau2020(tmp_path_factory):
    return make_tau(tmp_path_factory.mktemp("TAU-urban-acoustic-scenes-2020-mobile-development"), mobile=True)


@pytest.fixture(scope="module")
def us8k(tmp_path_factory):
    return make_urbansound8k(tmp_path_factory.mktemp("UrbanSound8K"))


@pytest.fixture(scope="module")
def esc50(tmp_path_factory):
    return make_esc50(tmp_path_factory.mktemp("ESC-50-master"))


def _sides(split):
    sides = {}
    for name, part in split.items():
        for item in part:
            sides.setdefault(item.group, set()).add(name)
    return sides


def test_tau2019_official_fold1_split(tau2019):
    m = resolve_dataset(f"tau2019:{tau2019}")
    assert m.classes == ["airport", "metro", "park"] and len(m) == 24
    assert m.items[0].name == "audio/airport-barcelona-0-0-a.wav" and m.items[0].group == "barcelona-0"
    split = split_manifest(m, val_fraction=0.5)
    assert len(split["test"]) == 12 and all("helsinki" in i.name for i in split["test"])
    assert len(split["train"]) + len(split["val"]) == 12
    # validation is carved from the training list by location, never by segment
    assert all(len(s) == 1 for s in _sides(split).values())
    assert {i.group for i in split["val"]} and not ({i.group for i in split["val"]} & {i.group for i in split["train"]})
    assert resolve_dataset(tau2019).source.startswith("tau2019:")  # recognised from its files


def test_tau2020_devices_stay_together(tau2020):
    m = resolve_dataset(tau2020)
    assert m.source.startswith("tau2020:")
    assert {i.device for i in m.items} == {"a", "b", "s1"}
    split = split_manifest(m, val_fraction=0.5)
    side_of_segment = {}
    for name, part in split.items():
        for item in part:
            segment = item.name.rsplit("-", 1)[0]
            side_of_segment.setdefault(segment, set()).add(name)
    assert all(len(s) == 1 for s in side_of_segment.values())


def test_tau_errors_name_file_and_row(tmp_path, tau2019):
    import shutil

    root = tmp_path / "tau"
    shutil.copytree(tau2019, root)
    lines = (root / "evaluation_setup" / "fold1_train.csv").read_text().splitlines()
    name, _ = lines[2].split("\t")
    lines[2] = f"{name}\tpark"  # an airport clip listed as park
    (root / "evaluation_setup" / "fold1_train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"fold1_train\.csv, row 3: label park disagrees with meta\.csv"):
        resolve_dataset(f"tau2019:{root}")
    (root / "meta.csv").write_text("filename,scene_label\n")
    with pytest.raises(DataError, match=r"meta\.csv: missing column\(s\)"):
        resolve_dataset(f"tau2019:{root}")
    (root / "meta.csv").unlink()
    with pytest.raises(DataError, match=r"meta\.csv: does not exist; is this the data set.s root folder"):
        resolve_dataset(f"tau2019:{root}")


def test_urbansound8k_ten_folds_mixed_formats(us8k):
    m = resolve_dataset(f"urbansound8k:{us8k}")
    assert m.classes == ["dog_bark", "jackhammer"] and len(m) == 40
    assert sorted({i.fold for i in m.items}) == list(range(1, 11))
    assert m.items[0].name.startswith("audio/fold1/") and m.items[0].group.startswith("fs")
    split = split_manifest(m, test_fold=10, val_fold=9)
    assert {i.fold for i in split["test"]} == {10} and len(split["test"]) == 4
    report = check_dataset(m, full=True, progress=False)
    assert len(report["sample_rates"]) == 9 and set(report["channels"]) == {1, 2} and not report["unreadable"]


def test_esc50_and_esc10(esc50):
    m = resolve_dataset(esc50)
    assert len(m) == 30 and m.classes == ["dog", "rain", "thunderstorm"]
    ten = resolve_dataset(f"esc10:{esc50}")
    assert len(ten) == 20 and ten.classes == ["dog", "rain"]
    split = split_manifest(ten, test_fold=1)
    assert all(len(s) == 1 for s in _sides(split).values())  # both takes of a source stay together


def test_missing_audio_file_is_named_with_its_row(tmp_path, esc50):
    import shutil

    root = tmp_path / "esc"
    shutil.copytree(esc50, root)
    victim = sorted((root / "audio").iterdir())[0]
    victim.unlink()
    with pytest.raises(DataError, match=rf"esc50\.csv, row \d+: audio file .*{victim.name} does not exist"):
        resolve_dataset(root)


def test_unknown_prefix_is_a_path_and_nonexistent_paths_fail(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        resolve_dataset(f"tau2019:{tmp_path / 'nothing'}")
    with pytest.raises(DataError, match="does not exist"):
        resolve_dataset(tmp_path / "nothing.csv")


def test_groups_from_file_names(tmp_path):
    rows = []
    (tmp_path / "library").mkdir()
    (tmp_path / "cafe").mkdir()
    for rec in ("lib_a", "lib_b"):
        for seg in range(3):
            write_tone(tmp_path / "library" / f"{rec}_seg{seg:03d}.wav", seconds=0.2)
            rows.append([f"library/{rec}_seg{seg:03d}.wav", "library"])
    write_tone(tmp_path / "cafe" / "cafe-1-0.wav", seconds=0.2)
    rows.append(["cafe/cafe-1-0.wav", "cafe"])
    with open(tmp_path / "l.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label"], *rows])
    m = resolve_dataset(tmp_path / "l.csv", group_pattern="default")
    assert [i.group for i in m.items] == ["library/lib_a"] * 3 + ["library/lib_b"] * 3 + ["cafe/cafe-1"]
    with pytest.raises(DataError, match="does not match the group pattern"):
        with_groups_from_names(resolve_dataset(tmp_path / "l.csv"), r"^rec(\d+)$")
    assert DEFAULT_GROUP_PATTERN


def test_check_names_unreadable_files(tmp_path, esc50, capsys):
    import shutil

    from soundscene.cli import main

    root = tmp_path / "esc"
    shutil.copytree(esc50, root)
    victim = sorted((root / "audio").iterdir())[3]
    victim.write_bytes(b"garbage")
    assert main(["datasets", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"refused: {victim}" in out and "esc50.csv, row" in out and "problem: 1 file(s)" in out
    assert main(["datasets"]) == 0
    assert "urbansound8k" in capsys.readouterr().out


def test_data_name():
    from soundscene.training.datasets import data_name

    assert data_name("tau2019:/data/TAU-dev") == "TAU-dev"
    assert data_name("../shared/data/esc10/labels.csv") == "labels"
    assert data_name("/home/me/campus") == "campus"


def test_full_check_names_every_file_training_would_refuse_and_warns_on_near_silence(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    from soundscene.cli import main

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for k in range(3):
        write_tone(tmp_path / "a" / f"{k}.wav", sample_rate=8000, seconds=1.0)
        write_tone(tmp_path / "b" / f"{k}.wav", sample_rate=8000, seconds=1.0, frequency=900)
    write_tone(tmp_path / "a" / "short.wav", sample_rate=8000, seconds=0.1)
    write_tone(tmp_path / "b" / "long.wav", sample_rate=8000, seconds=4.0)
    sf.write(str(tmp_path / "a" / "dither.wav"), np.random.default_rng(0).integers(-1, 2, 8000).astype(np.int16),
             8000, subtype="PCM_16")
    with open(tmp_path / "labels.csv", "w") as f:
        f.write("path,label\n" + "".join(f"{p.relative_to(tmp_path)},{p.parent.name}\n"
                                         for p in sorted(tmp_path.glob("*/*.wav"))))
    assert main(["datasets", str(tmp_path / "labels.csv"), "--full", "--set", "audio.max_seconds=3"]) == 1
    out = capsys.readouterr().out
    assert "short.wav: 0.10 s is shorter than audio.min_seconds (0.5 s) (" in out and "labels.csv, row" in out
    assert "long.wav: 4.0 s is longer than audio.max_seconds (3 s)" in out
    assert "warning: " in out and "dither.wav: near-silent: level -9" in out
