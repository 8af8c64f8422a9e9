import json

import pytest
import torch
from safetensors.torch import save_file

from soundscene.config import Config
from soundscene.errors import ModelFileError
from soundscene.modelfile import load_model_file, read_model_metadata, save_model_file
from soundscene.models import build_model


def _net(config, n_classes=3):
    torch.manual_seed(0)
    net = build_model(config.model, in_channels=1, n_rows=config.features.n_rows, n_classes=n_classes)
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
    wider = Config.from_dict({**json.loads(tiny_config.to_json()), "model": {"widths": [16, 16, 32]}})
    with pytest.raises(ModelFileError, match="weights do not fit"):
        load_model_file(_rewrite(tmp_path, good, config=wider.to_json()))
    with pytest.raises(ModelFileError, match="format 7 is not supported"):
        load_model_file(_rewrite(tmp_path, good, format="7"))
