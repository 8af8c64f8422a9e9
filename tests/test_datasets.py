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
    assert "short.wav: 0.1 s is shorter than audio.min_seconds (0.5 s) (" in out and "labels.csv, row" in out
    assert "long.wav: 4.0 s is longer than audio.max_seconds (3 s)" in out
    assert "warning: " in out and "dither.wav: near-silent: level -9" in out


def test_urbansound8k_short_slices_are_accepted_and_padded_other_data_keeps_min_seconds(tmp_path, us8k):
    """Issue 13: real UrbanSound8K has slices shorter than audio.min_seconds (0.5 s), and its 10-fold protocol
    scores all 8,732; they are padded to the clip length by audio.pad_mode, like any short clip."""
    import shutil

    import numpy as np
    import soundfile as sf
    import torch

    from helpers import in_memory, write_labels_csv
    from soundscene.config import Config
    from soundscene.core.audio import fix_length, load_audio
    from soundscene.core.features import FrontEnd
    from soundscene.training.data import read_split, write_split

    root = tmp_path / "UrbanSound8K"
    shutil.copytree(us8k, root)
    short = root / "audio" / "fold3" / "1033-3-0-0.wav"
    data, rate = sf.read(str(short), dtype="int16")
    sf.write(str(short), data[: int(0.32 * rate)], rate, subtype=sf.info(str(short)).subtype)
    m = resolve_dataset(f"urbansound8k:{root}")
    item = next(i for i in m.items if i.path == short)

    report = check_dataset(m, full=True, progress=False)
    assert report["unreadable"] == [] and report["errors"] == [] and report["duration_seconds"]["min"] < 0.33
    for pad_mode in ("repeat", "zeros"):
        config = Config.from_dict({"audio": {"sample_rate": 16000, "clip_seconds": 1.0, "pad_mode": pad_mode},
                                   "features": {"patch_frames": 32, "patch_hop_frames": 16}})
        assert config.audio.min_seconds == 0.5
        fs, skipped = in_memory(m.items, config, m.classes)
        assert skipped == [] and len(fs.items) == len(m)
        wave = fix_length(load_audio(short, sample_rate=16000), length=16000, pad_mode=pad_mode)
        expected = FrontEnd.from_config(config)(torch.from_numpy(wave[None])).numpy()[0]
        np.testing.assert_allclose(fs.features[fs.items.index(next(i for i in fs.items if i.path == short))].numpy(),
                                   expected, rtol=1e-5, atol=1e-5)

    # A resumed run reads its split back with the data set's own minimum.
    write_split({"train": [item], "val": [], "test": []}, tmp_path / "split.csv")
    assert read_split(tmp_path / "split.csv")["train"][0].min_seconds == item.min_seconds

    # The same file in an own CSV is held to audio.min_seconds, and named with its row.
    other = next(i for i in m.items if i.label != item.label)
    csv_manifest = resolve_dataset(write_labels_csv(tmp_path / "own.csv", [[str(short), item.label, "", ""],
                                                                           [str(other.path), other.label, "", ""]]))
    fs, skipped = in_memory(csv_manifest.items, config, csv_manifest.classes, skip_bad=True)
    assert len(skipped) == 1 and "shorter than the minimum of 0.5 s" in skipped[0][1]
    assert "own.csv, row 2" in skipped[0][1]
    report = check_dataset(csv_manifest, progress=False)
    assert len(report["errors"]) == 1 and "shorter than audio.min_seconds" in report["errors"][0]


def test_check_returns_an_error_line_per_refused_file_naming_its_row(tmp_path, esc50):
    """Issue 13: `soundscene datasets` exits 1 when files would be refused; the report gives each as one line
    (reason, manifest row) for the CLI's `error:` lines on stderr."""
    import shutil

    root = tmp_path / "esc"
    shutil.copytree(esc50, root)
    victims = sorted((root / "audio").iterdir())[3:5]
    for victim in victims:
        victim.write_bytes(b"garbage")
    report = check_dataset(resolve_dataset(root), progress=False)
    assert len(report["errors"]) == 2
    for victim in victims:
        line, = [e for e in report["errors"] if e.startswith(f"{victim}: not a readable audio file")]
        assert "\n" not in line and "esc50.csv, row" in line
