import json

import pytest

from soundscene.config import Config, parse_override
from soundscene.errors import ConfigError


def test_defaults_are_the_papers():
    c = Config().validate()
    assert (c.train.epochs, c.train.batch_size, c.train.learning_rate, c.train.weight_decay) == (50, 64, 0.001, 0.005)
    assert c.model.name == "paper_cnn" and dict(c.model.params) == {}  # the network's own defaults apply
    assert c.features.frame_seconds == 0.025


def test_mfcc_means_the_papers_39_features_unless_deltas_are_switched_off():
    assert Config().with_overrides({"features.kind": "mfcc"}).features.n_rows == 39
    assert Config.from_dict({"features": {"kind": "mfcc"}}).features.n_rows == 39
    assert Config().with_overrides({"features.kind": "mfcc", "features.deltas": False}).features.n_rows == 13
    assert Config().features.n_rows == 40  # log-mel: no deltas unless asked
    assert Config().with_overrides({"features.deltas": True}).features.n_rows == 120


def test_config_is_frozen():
    import dataclasses

    c = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.train.epochs = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.train = None
    c2 = c.with_overrides({"model.params.widths": [4, 8, 8]})
    with pytest.raises(TypeError):
        c2.model.params["widths"] = [1, 1, 1]
    assert c.model.params == {} and list(c2.to_dict()["model"]["params"]["widths"]) == [4, 8, 8]


def test_format_1_files_are_converted():
    old = {"format": 1, "model": {"name": "paper_cnn", "widths": [4, 8, 8], "dropout": 0.3, "aggregate": "mean"},
           "features": {"kind": "mfcc", "deltas": False}}
    c = Config.from_dict(old)
    assert dict(c.model.params) == {"widths": (4, 8, 8), "dropout": 0.3}
    assert c.features.n_rows == 13  # format 1 wrote deltas explicitly; its meaning is kept
    assert c.to_dict()["format"] == 2


def test_json_round_trip_is_exact():
    c = Config().with_overrides({"audio.clip_seconds": 4.0, "features.kind": "mfcc"})
    assert Config.from_json(c.to_json()) == c


def test_partial_config_fills_defaults():
    c = Config.from_dict({"train": {"epochs": 3}})
    assert c.train.epochs == 3 and c.train.batch_size == 64


@pytest.mark.parametrize("data, needle", [
    ({"train": {"epoch": 3}}, "train.epoch"),
    ({"trainer": {}}, "trainer"),
    ({"train": {"epochs": "ten"}}, "train.epochs"),
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"features": {"kind": "cqt"}}, "features.kind"),
    ({"audio": {"sample_rate": 1000}}, "audio.sample_rate"),
    ({"audio": {"clip_seconds": 0.2, "min_seconds": 0.1}}, "patch_frames"),
    ({"format": 99}, "format 99"),
    ({"model": {"widths": [32, 64]}}, "model.widths"),
    ({"model": {"params": {"widths": [1.5, float("nan")]}}}, "model.params.widths"),
])
def test_bad_values_are_refused_naming_the_key(data, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        Config.from_dict(data)


def test_load_reports_missing_file_and_bad_json(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config.load(bad)


def test_overrides_and_parse_override():
    key, value = parse_override("features.n_mels=64")
    assert (key, value) == ("features.n_mels", 64)
    assert parse_override("features.kind=mfcc") == ("features.kind", "mfcc")
    c = Config().with_overrides({key: value})
    assert c.features.n_mels == 64
    with pytest.raises(ConfigError, match="unknown setting"):
        Config().with_overrides({"features.nmels": 3})
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("epochs")


def test_config_file_is_plain_json(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"train": {"epochs": 7}}))
    assert Config.load(path).train.epochs == 7


def test_accelerator_and_precision_are_validated():
    with pytest.raises(ConfigError, match="train.accelerator"):
        Config().with_overrides({"train.accelerator": "tpu9000"})
    with pytest.raises(ConfigError, match="train.precision"):
        Config().with_overrides({"train.precision": "bogus"})


def test_presets():
    paper, strong, tiny = Config.preset("paper"), Config.preset("strong"), Config.preset("tiny")
    assert paper == Config()  # the paper's settings are the defaults
    assert strong.model.name == "rf_resnet" and tiny.model.name == "mobile"
    for c in (strong, tiny):
        assert c.train.selection == "ema" and c.train.schedule == "cosine" and c.augment.any
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        Config.preset("huge")


@pytest.mark.parametrize("data, needle", [
    ({"train": {"selection": "ema"}}, "train.selection"),  # needs ema_decay > 0
    ({"train": {"schedule": "linear"}}, "train.schedule"),
    ({"train": {"warmup_epochs": 60}}, "train.warmup_epochs"),
    ({"augment": {"mixup_alpha": -1}}, "augment.mixup_alpha"),
    ({"augment": {"mixstyle_p": 2}}, "augment.mixstyle_p"),
    ({"train": {"strategy": "horovod"}}, "train.strategy"),
])
def test_training_and_augmentation_settings_are_validated(data, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        Config.from_dict(data)
