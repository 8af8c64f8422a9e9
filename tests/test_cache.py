"""The feature-set builder and its cache (soundscene.training.cache): the same features as in memory, reused
while valid, rebuilt when anything that shapes them changes or the cache is damaged; and what happens to a clip
that cannot be used: the run stops naming every such clip (file, row, reason: one line) or, with --skip-bad,
the clip is left out and listed."""

import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

import soundscene.training.cache as cache_mod
from helpers import TINY, in_memory, write_tone
from soundscene.training.cache import cache_key, load_or_build
from soundscene.training.data import PatchDataset, load_manifest
from soundscene.errors import AudioError, SoundsceneWarning


@pytest.fixture
def items(tiny_dataset):
    return load_manifest(tiny_dataset).items[:12]


def _no_decoding(monkeypatch):
    """Every decode goes through soundfile's read or SoundFile (core.audio, the one decoder): refuse both."""
    import soundfile

    def refuse(*args, **kwargs):
        raise AssertionError("audio was decoded although the cache is valid")

    monkeypatch.setattr(soundfile, "read", refuse)
    monkeypatch.setattr(soundfile, "SoundFile", refuse)


def test_the_no_decoding_guard_catches_a_build(tmp_path, items, tiny_config, monkeypatch):
    """The guard the reuse tests rely on does fire when features are really computed."""
    _no_decoding(monkeypatch)
    with pytest.raises(AssertionError, match="audio was decoded"):
        load_or_build(items, tiny_config, cache_dir=tmp_path, progress=False, workers=1)


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


def test_cache_meta_that_is_valid_json_but_wrong_is_rebuilt(tmp_path, tiny_dataset, tiny_config):
    from soundscene.training.cache import load_or_build
    from soundscene.errors import SoundsceneWarning

    items = load_manifest(tiny_dataset).items[:4]
    store = load_or_build(items, tiny_config, cache_dir=tmp_path, progress=False)
    (store.folder / "meta.json").write_text("null")
    with pytest.warns(SoundsceneWarning, match="rebuilding"):
        load_or_build(items, tiny_config, cache_dir=tmp_path, progress=False)


def _truncated(path):
    write_tone(path, sample_rate=8000, seconds=1.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _nan(path):
    data = np.full((8000, 1), 0.1, dtype=np.float32)
    data[100] = np.nan
    sf.write(str(path), data, 8000, subtype="FLOAT")


BAD_CLIPS = {  # kind of damage: how to write such a file
    "garbage after the RIFF tag": lambda p: p.write_bytes(b"RIFF....garbage"),
    "cut-off RIFF header": lambda p: p.write_bytes(b"RIFF\x00\x00"),
    "WAVE header without a data chunk": lambda p: p.write_bytes(b"RIFF....WAVEjunk"),
    "not audio at all": lambda p: p.write_bytes(b"junk"),
    "empty file": lambda p: p.write_bytes(b""),
    "truncated WAV": _truncated,
    "digital silence": lambda p: sf.write(str(p), np.zeros((8000, 1)), 8000),
    "shorter than audio.min_seconds": lambda p: write_tone(p, sample_rate=8000, seconds=0.1),
    "NaN samples": _nan,
    "samples far beyond full scale": lambda p: sf.write(str(p), (np.sin(np.arange(8000)) * 1e30).astype(np.float32),
                                                        8000, subtype="FLOAT"),
}


@pytest.mark.parametrize("damage", list(BAD_CLIPS))
def test_bad_clips_stop_the_run_named_with_their_rows_or_are_skipped_and_listed(tmp_path, items, tiny_config, damage):
    bad = []
    for k, row in enumerate((98, 99)):
        path = tmp_path / f"broken{k}.wav"
        BAD_CLIPS[damage](path)
        bad.append(replace(items[k], path=path, where=f"labels.csv, row {row}"))
    clips = [*bad, *items[2:]]
    classes = sorted({i.label for i in items})
    every_one = r"2 unusable clip\(s\): .*broken0\.wav.*labels\.csv, row 98.*broken1\.wav.*labels\.csv, row 99.*--skip-bad"

    # Without --skip-bad: stop, naming every bad clip at once with its row and the advice, in one line.
    with pytest.raises(AudioError, match=every_one) as stopped:
        in_memory(clips, tiny_config, classes)
    assert "\n" not in str(stopped.value)
    with pytest.raises(AudioError, match=every_one):
        load_or_build(clips, tiny_config, cache_dir=tmp_path / "c", progress=False)

    # With --skip-bad: left out and listed with the reason, in memory and through the cache alike.
    fs, skipped = in_memory(clips, tiny_config, classes, skip_bad=True)
    assert len(fs.items) == len(items) - 2 and [i.path for i, _ in skipped] == [b.path for b in bad]
    store = load_or_build(clips, tiny_config, cache_dir=tmp_path / "c", skip_bad=True, progress=False)
    fs, skipped = store.feature_set(clips, classes)
    assert len(fs.items) == len(items) - 2 and [i.path for i, _ in skipped] == [b.path for b in bad]
    assert all("\n" not in reason for _, reason in skipped)
    meta = json.loads((store.folder / "meta.json").read_text())
    assert sorted(meta["bad"].values())[0].startswith(str(bad[0].path))
    assert sorted(meta["bad"].values())[1].startswith(str(bad[1].path))


def test_train_cli_names_each_bad_clip_and_skip_bad_lists_them(tmp_path, tiny_dataset, capsys):
    """soundscene train: exit 2 naming every bad clip with its row; with --skip-bad the run finishes (exit 0),
    prints each skipped clip and writes them to the run's skipped.txt."""
    from soundscene.cli import main

    BAD_CLIPS["WAVE header without a data chunk"](tmp_path / "broken.wav")
    _truncated(tmp_path / "truncated.wav")
    lines = [line if n == 0 else f"{tiny_dataset.parent}/{line}"
             for n, line in enumerate(tiny_dataset.read_text().splitlines())]
    lines += [f"{tmp_path / 'broken.wav'},rain,1,broken", f"{tmp_path / 'truncated.wav'},park,1,truncated"]
    manifest = tmp_path / "labels.csv"
    manifest.write_text("\n".join(lines) + "\n")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY, "train": {**TINY["train"], "epochs": 1}}))
    args = ["train", str(manifest), "--config", str(config), "--test-fold", "5", "--no-progress"]

    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "broken.wav: not a readable audio file" in err and f"labels.csv, row {len(lines) - 1}" in err
    assert "truncated.wav: truncated" in err and f"labels.csv, row {len(lines)}" in err and "--skip-bad" in err

    assert main([*args, "--out", str(tmp_path / "b"), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 unreadable clip(s)" in out and "broken.wav" in out and "truncated.wav" in out
    listed = (tmp_path / "b" / "skipped.txt").read_text()
    assert "broken.wav" in listed and "truncated.wav" in listed


def test_the_cache_records_the_decoded_audio_digest_of_each_clip_the_same_for_lossless_copies(
        tmp_path, items, tiny_config, monkeypatch):
    """The digest evaluation uses to recognise re-encoded training clips is taken where the clip is decoded for its
    features (once), kept in meta.json, and read back without decoding; a FLAC or 24-bit copy has the same one."""
    copies = []
    for k, item in enumerate(items[:3]):
        samples, rate = sf.read(str(item.path), dtype="int16")
        target = tmp_path / "copies" / f"{k}.flac"
        target.parent.mkdir(exist_ok=True)
        sf.write(str(target), samples, rate, subtype=("PCM_16", "PCM_24")[k % 2], format="FLAC")
        copies.append(replace(item, path=target))
    classes = sorted({i.label for i in items})
    store = load_or_build(items + copies, tiny_config, cache_dir=tmp_path / "c", progress=False)
    fs, _ = store.feature_set(items + copies, classes)
    digests = [i.audio_digest for i in fs.items]
    assert all(digests) and digests[len(items):] == digests[:3] and len(set(digests[:len(items)])) == len(items)
    meta = json.loads((store.folder / "meta.json").read_text())
    assert sorted(meta["audio_digests"].values()) == sorted(digests)
    assert [i.audio_digest for i in in_memory(items, tiny_config, classes)[0].items] == digests[:len(items)]

    _no_decoding(monkeypatch)
    again = load_or_build(items + copies, tiny_config, cache_dir=tmp_path / "c", progress=False)
    assert [i.audio_digest for i in again.feature_set(items + copies, classes)[0].items] == digests
