"""Bad-input cases found in review: each gets a clear one-line error or the right behaviour."""

import os

import numpy as np
import pytest
import soundfile as sf

from conftest import TINY, write_tone
from soundscene.config import Config
from soundscene.data import load_manifest, split_manifest
from soundscene.errors import AudioError, ConfigError, DataError


def _two_class_folder(root, per_class=4):
    for label in ("park", "street"):
        (root / label).mkdir(parents=True)
        for k in range(per_class):
            write_tone(root / label / f"{k}.wav", sample_rate=8000, seconds=1.5, frequency=200 + 300 * k)
    return root


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
    root = _two_class_folder(tmp_path / "d", per_class=1)
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


def test_a_run_that_failed_before_its_first_epoch_can_be_started_again(tmp_path):
    from soundscene.training import train

    root = _two_class_folder(tmp_path / "d", per_class=6)
    bad = root / "park" / "9.wav"
    bad.write_bytes(b"not audio")
    cfg = Config.from_dict({**TINY, "train": {**TINY["train"], "epochs": 1}})
    with pytest.raises(AudioError, match="9.wav"):
        train(root, run_dir=tmp_path / "run", config=cfg, test_fraction=0.34, progress=False)
    bad.unlink()
    result = train(root, run_dir=tmp_path / "run", config=cfg, test_fraction=0.34, progress=False)
    assert result.model_path.is_file()


def test_skip_bad_also_covers_the_clip_length_from_the_data(tmp_path):
    from soundscene.training import prepare_run

    root = _two_class_folder(tmp_path / "d", per_class=6)
    (root / "park" / "9.wav").write_bytes(b"not audio")
    cfg = Config.from_dict({"audio": {"sample_rate": 8000, "min_seconds": 0.2},
                            "features": {"patch_frames": 32, "patch_hop_frames": 16}})
    from soundscene.data import median_duration

    with pytest.raises(AudioError):
        median_duration(load_manifest(root).items)
    fixed, _, _ = prepare_run(root, tmp_path / "b", config=cfg, test_fraction=0.34, skip_bad=True)
    assert fixed.audio.clip_seconds == 1.5


def test_cache_lists_every_bad_clip_at_once(tmp_path, tiny_dataset, tiny_config):
    from dataclasses import replace

    from soundscene.cache import load_or_build

    items = load_manifest(tiny_dataset).items[:6]
    bad = []
    for k in range(2):
        path = tmp_path / f"broken{k}.wav"
        path.write_bytes(b"junk")
        bad.append(replace(items[k], path=path))
    with pytest.raises(AudioError, match=r"2 unusable clip\(s\): .*broken0.*broken1"):
        load_or_build(bad + items[2:], tiny_config, cache_dir=tmp_path / "c", progress=False)


def test_waveform_layout_and_empty_input_are_refused(tiny_run):
    from soundscene.inference import SceneClassifier

    clf = SceneClassifier.from_file(tiny_run.model_path)
    frames_channels = np.zeros((8000, 2), dtype=np.float32)
    with pytest.raises(AudioError, match=r"\(samples, channels\)"):
        clf.predict_waveform(frames_channels, sample_rate=8000)
    with pytest.raises(AudioError, match="samples > 0"):
        clf.predict_waveform(np.zeros(0, dtype=np.float32), sample_rate=8000)


def test_accelerator_and_precision_are_validated():
    with pytest.raises(ConfigError, match="train.accelerator"):
        Config().with_overrides({"train.accelerator": "tpu9000"})
    with pytest.raises(ConfigError, match="train.precision"):
        Config().with_overrides({"train.precision": "bogus"})


def test_cv_needs_two_folds(tmp_path, tiny_dataset):
    from soundscene.crossval import cross_validate

    with pytest.raises(DataError, match="at least 2 folds"):
        cross_validate(tiny_dataset, out_dir=tmp_path, config=Config.from_dict(TINY), k=1, progress=False)


def test_atomic_writes_have_normal_permissions(tmp_path):
    from soundscene._io import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "x.json", "{}")
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_cache_meta_that_is_valid_json_but_wrong_is_rebuilt(tmp_path, tiny_dataset, tiny_config):
    from soundscene.cache import load_or_build
    from soundscene.errors import SoundsceneWarning

    items = load_manifest(tiny_dataset).items[:4]
    store = load_or_build(items, tiny_config, cache_dir=tmp_path, progress=False)
    (store.folder / "meta.json").write_text("null")
    with pytest.warns(SoundsceneWarning, match="rebuilding"):
        load_or_build(items, tiny_config, cache_dir=tmp_path, progress=False)
