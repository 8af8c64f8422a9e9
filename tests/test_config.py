import json

import pytest

from soundscene.config import Config, parse_override
from soundscene.errors import ConfigError


def test_defaults_are_the_papers():
    c = Config().validate()
    assert (c.train.epochs, c.train.batch_size, c.train.learning_rate, c.train.weight_decay) == (50, 64, 0.001, 0.005)
    assert c.model.widths == [32, 64, 128] and c.model.dropout == 0.5
    assert c.features.frame_seconds == 0.025


def test_mfcc_with_deltas_has_39_rows():
    c = Config().with_overrides({"features.kind": "mfcc", "features.deltas": True})
    assert c.features.n_rows == 39


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
