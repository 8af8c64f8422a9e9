import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from soundscene.config import Config
from soundscene.errors import ModelFileError
from soundscene.core.modelfile import load_model_file, read_model_metadata, save_model_file
from soundscene.core.models import build_model


def _net(config, n_classes=3):
    torch.manual_seed(0)
    net = build_model(config, n_classes=n_classes)
    net.set_normalisation(torch.randn(4, 1, config.features.n_rows, 40) * 3 + 1)
    return net.eval()


def test_save_load_gives_the_same_probabilities(tmp_path, tiny_config):
    net = _net(tiny_config)
    path = save_model_file(tmp_path / "m.safetensors", net, tiny_config, ["a", "b", "c"])
    bundle = load_model_file(path)
    x = torch.randn(5, 1, 32, 32)
    torch.testing.assert_close(bundle.net.predict_proba(x), net.predict_proba(x), rtol=0, atol=0)
    assert bundle.classes == ["a", "b", "c"] and bundle.config == tiny_config
    assert not list(tmp_path.glob(".*.tmp"))


def test_refuses_missing_foreign_and_damaged_files(tmp_path, tiny_config):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model_file(tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ModelFileError, match="not a readable model file"):
        load_model_file(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ModelFileError, match="not a soundscene model"):
        load_model_file(foreign)
    good = save_model_file(tmp_path / "good.safetensors", _net(tiny_config), tiny_config, ["a", "b", "c"])
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(good.read_bytes()[:-500])
    with pytest.raises(ModelFileError):
        load_model_file(truncated)


def _rewrite(tmp_path, source, **metadata_changes):
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(metadata_changes)
    out = tmp_path / "edited.safetensors"
    save_file(tensors, str(out), metadata=meta)
    return out


def test_refuses_configuration_that_does_not_fit(tmp_path, tiny_config):
    good = save_model_file(tmp_path / "good.safetensors", _net(tiny_config), tiny_config, ["a", "b", "c"])
    assert read_model_metadata(good)["kind"] == "soundscene-model"
    cfg = json.loads(tiny_config.to_json())
    cfg["features"]["n_melz"] = 3
    with pytest.raises(ModelFileError, match="does not fit this version.*n_melz"):
        load_model_file(_rewrite(tmp_path, good, config=json.dumps(cfg)))
    wider = Config.from_dict({**json.loads(tiny_config.to_json()), "model": {"params": {"widths": [16, 16, 32]}}})
    with pytest.raises(ModelFileError, match="weights do not fit"):
        load_model_file(_rewrite(tmp_path, good, config=wider.to_json()))
    with pytest.raises(ModelFileError, match="format 7 is not supported"):
        load_model_file(_rewrite(tmp_path, good, format="7"))


def test_damaged_weights_are_refused_by_their_digest(tmp_path, tiny_config):
    good = save_model_file(tmp_path / "good.safetensors", _net(tiny_config), tiny_config, ["a", "b", "c"])
    raw = bytearray(good.read_bytes())
    start = len(raw) - 6000  # inside the tensor data, after the JSON header
    raw[start:start + 4096] = bytes(range(256)) * 16
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="do not match the digest.*damaged"):
        load_model_file(damaged)


def test_non_finite_weights_are_refused_even_without_a_digest(tmp_path, tiny_config):
    good = save_model_file(tmp_path / "good.safetensors", _net(tiny_config), tiny_config, ["a", "b", "c"])
    from safetensors import safe_open

    with safe_open(str(good), framework="pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "weights_sha256"}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["backbone.classifier.weight"][0, 0] = float("nan")
    save_file(tensors, str(tmp_path / "nan.safetensors"), metadata=meta)
    with pytest.raises(ModelFileError, match="NaN or infinite"):
        load_model_file(tmp_path / "nan.safetensors")


def test_a_model_file_written_by_release_1_still_loads_and_predicts():
    """tests/fixtures/model_format1.safetensors was written by the code before configuration format 2."""
    import numpy as np

    from soundscene.core.inference import SceneClassifier

    fixtures = Path(__file__).parent / "fixtures"
    assert read_model_metadata(fixtures / "model_format1.safetensors")["format"] == "1"
    expected = json.loads((fixtures / "model_format1_expected.json").read_text())
    clf = SceneClassifier.from_file(fixtures / "model_format1.safetensors")
    assert clf.classes == expected["classes"] and clf.config.features.n_rows == 39
    assert dict(clf.config.model.params) == {"widths": (4, 8, 8), "dropout": 0.5}
    wave = np.load(fixtures / "model_format1_input.npy")
    # classify_clips analyses its input as one clip, as release 1's predict_waveform did
    probs = clf.classify_clips([wave])[0]
    np.testing.assert_allclose(probs, expected["probabilities"], atol=1e-5)


def test_a_run_folder_names_its_model_file(tmp_path, tiny_config):
    from soundscene.core.modelfile import model_path

    save_model_file(tmp_path / "model.safetensors", _net(tiny_config), tiny_config, ["a", "b", "c"])
    assert load_model_file(tmp_path).classes == ["a", "b", "c"]
    assert model_path(tmp_path) == tmp_path / "model.safetensors"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="neither a run folder"):
        load_model_file(tmp_path / "empty")


# --- issue 13: the metadata is covered by a digest; class names are checked; files without digests -----------

def _soundscene_warnings(record):
    from soundscene.errors import SoundsceneWarning

    return [str(w.message) for w in record if issubclass(w.category, SoundsceneWarning)]


def test_edited_metadata_is_refused_by_its_digest(tmp_path, tiny_config):
    good = save_model_file(tmp_path / "good.safetensors", _net(tiny_config), tiny_config, ["a", "b", "c"],
                           trained_on=["0" * 32])
    assert len(read_model_metadata(good)["metadata_sha256"]) == 64
    swapped = _rewrite(tmp_path, good, classes=json.dumps(["b", "a", "c"]))  # fits, but names the wrong classes
    with pytest.raises(ModelFileError, match="class names do not match the digest") as refused:
        load_model_file(swapped)
    assert "\n" not in str(refused.value)
    cfg = json.loads(tiny_config.to_json())
    cfg["audio"]["pad_mode"] = "zeros"  # a configuration that still fits the weights
    with pytest.raises(ModelFileError, match="do not match the digest"):
        load_model_file(_rewrite(tmp_path, good, config=json.dumps(cfg)))
    with pytest.raises(ModelFileError, match="do not match the digest"):
        load_model_file(_rewrite(tmp_path, good, trained_on=json.dumps([])))


@pytest.mark.parametrize("classes", [["a", "a", "b"], ["a", "", "b"], ["a", "  ", "b"]])
def test_repeated_or_empty_class_names_are_refused(tmp_path, tiny_config, classes):
    with pytest.raises(ModelFileError, match="repeated|empty"):
        save_model_file(tmp_path / "m.safetensors", _net(tiny_config), tiny_config, classes)
    good = save_model_file(tmp_path / "good.safetensors", _net(tiny_config), tiny_config, ["a", "b", "c"])
    with pytest.raises(ModelFileError, match=r"class name.*(repeated|empty).*damaged or was edited"):
        load_model_file(_rewrite(tmp_path, good, classes=json.dumps(classes)))


def test_a_file_without_digests_loads_with_one_warning_that_it_cannot_be_verified(tmp_path, tiny_config):
    import warnings

    from safetensors import safe_open

    net = _net(tiny_config)
    with torch.no_grad():  # as after training: no tensor left at its all-zero initial value (BatchNorm)
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.add_(0.01)
    good = save_model_file(tmp_path / "good.safetensors", net, tiny_config, ["a", "b", "c"])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        load_model_file(good)
    assert _soundscene_warnings(record) == []
    with safe_open(str(good), framework="pt") as f:
        meta = {k: v for k, v in f.metadata().items() if not k.endswith("_sha256")}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    bare = tmp_path / "bare.safetensors"
    save_file(tensors, str(bare), metadata=meta)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert load_model_file(bare).classes == ["a", "b", "c"]
    said = _soundscene_warnings(record)
    assert len(said) == 1 and "\n" not in said[0] and "cannot be verified" in said[0] and str(bare) in said[0]


def test_release_1_file_warns_once_and_a_zeroed_tensor_in_it_is_refused(tmp_path):
    import warnings

    from safetensors import safe_open

    fixture = Path(__file__).parent / "fixtures" / "model_format1.safetensors"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        load_model_file(fixture)
    said = _soundscene_warnings(record)
    assert len(said) == 1 and "cannot be verified" in said[0] and "format 1" in said[0]
    with safe_open(str(fixture), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["backbone.features.1.block.0.weight"].zero_()  # a block of the file overwritten with zeros
    save_file(tensors, str(tmp_path / "zeroed.safetensors"), metadata=meta)
    with pytest.raises(ModelFileError, match=r"backbone\.features\.1\.block\.0\.weight is all zeros.*damaged"):
        load_model_file(tmp_path / "zeroed.safetensors")


# --- issue 13: a stored configuration out of range is refused in one line naming the file and the key ----------

@pytest.mark.parametrize("section, key, value, reason", [
    ("audio", "clip_seconds", 1e6, r"1e\+06 s is outside 0\.02\.\.600 s"),  # was an 82-GiB allocation
    ("audio", "clip_seconds", 1e308, r"1e\+308 s is outside 0\.02\.\.600 s"),  # was 'out of every range'
    ("audio", "clip_seconds", float("nan"), r"nan is not a finite number; give a value in 0\.02\.\.600 s"),
    ("audio", "max_seconds", 1e12, r"1e\+12 s is outside 0\.02\.\.86400 s"),
    ("features", "patch_hop_frames", 10**9, r"1000000000 frames is outside 1\.\.10000 frames"),
    ("train", "seed", 10**300, r"an integer of 301 digits is outside 0\.\.4294967295"),
], ids=lambda v: f"{len(str(v))}-digits" if isinstance(v, int) and v > 10**16 else None)
def test_a_stored_configuration_out_of_range_is_refused_naming_the_file_and_the_key(tmp_path, tiny_config, section,
                                                                                    key, value, reason):
    import dataclasses

    crafted = dataclasses.replace(tiny_config, **{section: dataclasses.replace(getattr(tiny_config, section),
                                                                               **{key: value})})
    path = save_model_file(tmp_path / "crafted.safetensors", _net(tiny_config), crafted, ["a", "b", "c"])
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(path))}: .*\(invalid {section}\.{key}: {reason}\)")\
            as refused:
        load_model_file(path)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("classes", ["[" * 100000 + "]" * 100000, "9" * 5000, "1e999"],
                         ids=["nested", "5000-digits", "1e999"])
def test_absurd_class_metadata_is_refused_in_one_line(tmp_path, tiny_config, classes):
    good = save_model_file(tmp_path / "good.safetensors", _net(tiny_config), tiny_config, ["a", "b", "c"])
    crafted = _rewrite(tmp_path, good, classes=classes)
    with pytest.raises(ModelFileError, match=f"^{re.escape(str(crafted))}: ") as refused:
        load_model_file(crafted)
    assert "\n" not in str(refused.value)


def test_a_model_of_more_classes_than_the_limit_is_refused_before_it_is_built(tmp_path, tiny_config):
    from soundscene.config import MAX_CLASSES

    names = [f"c{k}" for k in range(MAX_CLASSES + 1)]
    path = save_model_file(tmp_path / "many.safetensors", _net(tiny_config), tiny_config, names)
    with pytest.raises(ModelFileError, match=rf"invalid classes: {MAX_CLASSES + 1} names, more than the "
                                             rf"{MAX_CLASSES} a model may have"):
        load_model_file(path)
