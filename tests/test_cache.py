import json

import numpy as np
import pytest
import torch

import soundscene.training.cache as cache_mod
from soundscene.training.cache import cache_key, load_or_build
from soundscene.training.data import PatchDataset, load_manifest
from soundscene.errors import AudioError, SoundsceneWarning


@pytest.fixture
def items(tiny_dataset):
    return load_manifest(tiny_dataset).items[:12]


def in_memory(items, config, classes, **kwargs):
    """Features of items computed in memory by the one feature-set builder (no cache)."""
    from soundscene.training.cache import feature_sets

    sets, skipped = feature_sets({"all": items}, config, classes, use_cache=False, progress=False, **kwargs)
    return sets["all"], skipped


def _no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("audio was decoded although the cache is valid")

    monkeypatch.setattr(cache_mod, "load_clip", refuse)


def test_cache_matches_in_memory_features_and_is_reused(tmp_path, items, tiny_config, monkeypatch):
    classes = sorted({i.label for i in items})
    store = load_or_build(items, tiny_config, cache_dir=tmp_path, progress=False)
    cached, _ = store.feature_set(items, classes)
    direct, _ = in_memory(items, tiny_config, classes)
    torch.testing.assert_close(cached.features, direct.features)
    assert cached.labels.tolist() == direct.labels.tolist()
    _no_decoding(monkeypatch)  # second run: no decoding, no resampling
    again = load_or_build(items, tiny_config, cache_dir=tmp_path, progress=False)
    torch.testing.assert_close(again.feature_set(items, classes)[0].features, direct.features)
    assert len(list(tmp_path.iterdir())) == 1


def test_two_workers_build_the_same_cache(tmp_path, items, tiny_config):
    one = load_or_build(items, tiny_config, cache_dir=tmp_path / "one", workers=1, progress=False)
    two = load_or_build(items, tiny_config, cache_dir=tmp_path / "two", workers=2, progress=False)
    np.testing.assert_array_equal(np.asarray(one.features), np.asarray(two.features))


def test_changed_configuration_or_file_gets_a_new_cache(tmp_path, items, tiny_config):
    paths = [i.path for i in items]
    key = cache_key(paths, tiny_config)
    assert cache_key(paths, tiny_config.with_overrides({"features.n_mels": 24})) != key
    assert cache_key(paths, tiny_config.with_overrides({"train.epochs": 9})) == key  # training is not in the key
    assert cache_key(paths[:-1], tiny_config) != key


@pytest.mark.parametrize("library", ["soundscene", "soxr", "librosa", "torch", "libsndfile"])
def test_a_new_version_of_the_code_that_shapes_features_gets_a_new_cache(items, tiny_config, monkeypatch, library):
    paths = [i.path for i in items]
    key = cache_key(paths, tiny_config)
    real = cache_mod.code_versions
    monkeypatch.setattr(cache_mod, "code_versions", lambda: {**real(), library: "999.0"})
    assert cache_key(paths, tiny_config) != key


@pytest.mark.parametrize("damage", ["flip", "truncate", "meta", "no_meta"])
def test_damaged_cache_is_detected_and_rebuilt(tmp_path, items, tiny_config, damage):
    classes = sorted({i.label for i in items})
    store = load_or_build(items, tiny_config, cache_dir=tmp_path, progress=False)
    good = store.feature_set(items, classes)[0].features.clone()
    data, meta = store.folder / "data.npy", store.folder / "meta.json"
    del store
    if damage == "flip":
        raw = bytearray(data.read_bytes())
        raw[-100] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif damage == "truncate":
        data.write_bytes(data.read_bytes()[:-1000])
    elif damage == "meta":
        meta.write_text("{ half written")
    else:
        meta.unlink()
    with pytest.warns(SoundsceneWarning, match="unusable.*rebuilding"):
        rebuilt = load_or_build(items, tiny_config, cache_dir=tmp_path, progress=False)
    torch.testing.assert_close(rebuilt.feature_set(items, classes)[0].features, good)


def test_leftover_partial_folder_is_ignored(tmp_path, items, tiny_config):
    key = cache_key(sorted({i.path for i in items}), tiny_config)
    (tmp_path / f"features-{key}.partial-99999").mkdir(parents=True)
    store = load_or_build(items, tiny_config, cache_dir=tmp_path, progress=False)
    assert store.folder.name == f"features-{key}"


def test_bad_clip_stops_naming_its_row_or_is_skipped(tmp_path, items, tiny_config):
    import shutil
    from dataclasses import replace

    bad_path = tmp_path / "broken.wav"
    bad_path.write_bytes(b"RIFF\x00\x00")
    bad = replace(items[0], path=bad_path, where="labels.csv, row 99")
    with pytest.raises(AudioError, match=r"broken\.wav.*labels\.csv, row 99.*--skip-bad"):
        load_or_build([bad, *items[1:]], tiny_config, cache_dir=tmp_path / "c", progress=False)
    store = load_or_build([bad, *items[1:]], tiny_config, cache_dir=tmp_path / "c", skip_bad=True, progress=False)
    fs, skipped = store.feature_set([bad, *items[1:]], sorted({i.label for i in items}))
    assert len(fs.items) == len(items) - 1 and skipped[0][0].path == bad_path
    meta = json.loads((store.folder / "meta.json").read_text())
    assert list(meta["bad"].values())[0].startswith(str(bad_path))
    shutil.rmtree(tmp_path / "c")


def test_augment_hook_sees_every_batch(items, tiny_config):
    fs, _ = in_memory(items, tiny_config, sorted({i.label for i in items}))
    calls = []

    def roll(patches, labels):
        calls.append(patches.shape[0])
        return torch.roll(patches, 3, dims=-1), labels

    plain = PatchDataset(fs, patch_frames=32, hop_frames=16)
    augmented = PatchDataset(fs, patch_frames=32, hop_frames=16, augment=roll)
    a, _, _ = augmented.__getitems__([0, 5])
    p, _, _ = plain.__getitems__([0, 5])
    torch.testing.assert_close(a, torch.roll(p, 3, dims=-1))
    assert calls == [2]


def test_cache_lists_every_bad_clip_at_once(tmp_path, tiny_dataset, tiny_config):
    from dataclasses import replace

    from soundscene.training.cache import load_or_build

    items = load_manifest(tiny_dataset).items[:6]
    bad = []
    for k in range(2):
        path = tmp_path / f"broken{k}.wav"
        path.write_bytes(b"junk")
        bad.append(replace(items[k], path=path))
    with pytest.raises(AudioError, match=r"2 unusable clip\(s\): .*broken0.*broken1"):
        load_or_build(bad + items[2:], tiny_config, cache_dir=tmp_path / "c", progress=False)


def test_cache_meta_that_is_valid_json_but_wrong_is_rebuilt(tmp_path, tiny_dataset, tiny_config):
    from soundscene.training.cache import load_or_build
    from soundscene.errors import SoundsceneWarning

    items = load_manifest(tiny_dataset).items[:4]
    store = load_or_build(items, tiny_config, cache_dir=tmp_path, progress=False)
    (store.folder / "meta.json").write_text("null")
    with pytest.warns(SoundsceneWarning, match="rebuilding"):
        load_or_build(items, tiny_config, cache_dir=tmp_path, progress=False)
