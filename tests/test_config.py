import json
import re

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


# -- every number has a finite range (issue 13) ---------------------------------------------------------------

def _numeric_keys():
    """Every "section.key" of a Config whose type is a number (int or float, optional or not)."""
    import dataclasses
    import typing

    keys = set()
    for section, section_type in typing.get_type_hints(Config).items():
        for key, hint in typing.get_type_hints(section_type).items():
            if {int, float} & set(typing.get_args(hint) or (hint,)):
                keys.add(f"{section}.{key}")
    assert {f.name for f in dataclasses.fields(Config)} == set(typing.get_type_hints(Config))
    return keys


def test_every_number_has_a_range_in_one_table_and_the_defaults_and_presets_lie_in_it():
    from soundscene.config import PRESETS, RANGES

    assert _numeric_keys() == set(RANGES)
    for config in [Config()] + [Config.preset(name) for name in PRESETS]:
        values = config.to_dict()
        for key, allowed in RANGES.items():
            section, name = key.split(".")
            assert values[section][name] is None or values[section][name] in allowed, key


@pytest.mark.parametrize("key, value, reason", [
    ("audio.clip_seconds", 1e6, r"1e\+06 s is outside 0\.02\.\.600 s"),  # 82 GiB of clip, once
    ("audio.clip_seconds", 1e308, r"1e\+308 s is outside 0\.02\.\.600 s"),
    ("audio.clip_seconds", 10**400, r"an integer of 401 digits is outside 0\.02\.\.600 s"),
    ("audio.clip_seconds", float("nan"), r"nan is not a finite number; give a value in 0\.02\.\.600 s"),
    ("audio.clip_seconds", 0.0, r"0 s is outside 0\.02\.\.600 s"),
    ("audio.min_seconds", float("inf"), r"inf is not a finite number; give a value in 0\.02\.\.600 s"),
    ("audio.max_seconds", 1e9, r"1e\+09 s is outside 0\.02\.\.86400 s"),
    ("audio.channels", 0, r"0 is outside 1\.\.16"),
    ("features.hop_seconds", 1e-9, r"1e-09 s is outside 0\.001\.\.1 s"),
    ("features.n_fft", 2**40, r"1099511627776 samples is outside 1\.\.262144 samples"),
    ("features.fmin", -1.0, r"-1 Hz is outside 0\.\.96000 Hz"),
    ("features.top_db", 1e9, r"1e\+09 dB is outside \(0, 200\] dB"),
    ("features.delta_width", 10**6, r"1000000 frames is outside 3\.\.99 frames"),
    ("features.patch_frames", 10**9, r"1000000000 frames is outside 8\.\.10000 frames"),
    ("features.patch_hop_frames", 0, r"0 frames is outside 1\.\.10000 frames"),
    ("train.epochs", 10**12, r"1000000000000 is outside 1\.\.100000"),
    ("train.batch_size", 10**7, r"10000000 is outside 1\.\.65536"),
    ("train.step_epochs", 0, r"0 is outside 1\.\.100000"),
    ("train.grad_clip", 1e300, r"1e\+300 is outside 0\.\.1e\+06"),
    ("train.seed", -1, r"-1 is outside 0\.\.4294967295"),
    ("train.seed", 2**40, r"1099511627776 is outside 0\.\.4294967295"),
    ("train.learning_rate", float("-inf"), r"-inf is not a finite number; give a value in \(0, 10\)"),
    ("augment.roll_frames", 10**9, r"1000000000 frames is outside 0\.\.10000 frames"),
    ("augment.time_mask_frames", 10**9, r"1000000000 frames is outside 1\.\.10000 frames"),
    ("augment.freq_mask_rows", 10**6, r"1000000 rows is outside 1\.\.512 rows"),
], ids=lambda v: f"{len(str(v))}-digits" if isinstance(v, int) and v > 10**16 else None)
def test_a_number_outside_its_range_is_refused_in_one_line_naming_the_key_and_the_range(key, value, reason):
    section, name = key.split(".")
    with pytest.raises(ConfigError, match=rf"^invalid {re.escape(key)}: {reason}$"):
        Config.from_dict({section: {name: value}})


def test_sections_built_in_python_are_held_to_the_same_ranges():
    from soundscene.config import AudioConfig, FeatureConfig

    with pytest.raises(ConfigError, match=r"^invalid audio\.clip_seconds: nan is not a finite number; give a value "
                                          r"in 0\.02\.\.600 s$"):
        AudioConfig(clip_seconds=float("nan")).validate()
    with pytest.raises(ConfigError, match=r"^invalid features\.patch_frames: 100000 frames is outside"):
        FeatureConfig(patch_frames=100000).validate(22050)
    with pytest.raises(ConfigError, match=r"^invalid audio\.clip_seconds: 1e\+06 s is outside"):
        Config().with_overrides({"audio.clip_seconds": 1e6})


@pytest.mark.parametrize("data, message", [
    ({"features": {"hop_seconds": 0.05}}, r"features\.hop_seconds: must be <= features\.frame_seconds"),
    ({"features": {"patch_frames": 16, "patch_hop_frames": 32}}, r"features\.patch_hop_frames: must be at most "
                                                                   r"features\.patch_frames"),
    ({"features": {"n_mels": 10, "n_mfcc": 13}}, r"features\.n_mfcc: must be at most features\.n_mels"),
    ({"audio": {"clip_seconds": 0.3, "min_seconds": 0.5}}, r"audio\.clip_seconds: 0\.3 s is shorter than "
                                                            r"audio\.min_seconds \(0\.5 s\)"),
    ({"audio": {"min_seconds": 5, "max_seconds": 2}}, r"audio\.max_seconds: 2 s must exceed audio\.min_seconds"),
    ({"audio": {"clip_seconds": 0.1, "min_seconds": 0.05},
      "features": {"kind": "mfcc", "delta_width": 31, "patch_frames": 8, "patch_hop_frames": 4}},
     r"features\.delta_width: a 0\.1 s clip has only 11 frames, fewer than the delta filter's"),
])
def test_rules_between_two_keys_name_them(data, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(data)


@pytest.mark.parametrize("text, message", [
    ('{"audio": {"clip_seconds": 1e308}}', r"invalid audio\.clip_seconds: 1e\+308 s is outside 0\.02\.\.600 s"),
    ('{"audio": {"clip_seconds": 1e999}}', r"invalid audio\.clip_seconds: inf is not a finite number"),
    ('{"train": {"learning_rate": NaN}}', r"invalid train\.learning_rate: nan is not a finite number"),
    ('{"train": {"epochs": %s}}' % ("9" * 4000), r"invalid train\.epochs: an integer of 4000 digits is "
                                                   r"outside 1\.\.100000"),
    ('{"train": {"epochs": %s}}' % ("9" * 5000),
     r"configuration is not valid JSON: it holds an integer of thousands of digits"),
    ("[" * 100000 + "]" * 100000, r"configuration is not valid JSON: nested too deeply"),
    ('{"audio": ' * 100000 + "{}" + "}" * 100000, r"configuration is not valid JSON: nested too deeply"),
], ids=["1e308", "1e999", "NaN", "4000-digits", "5000-digits", "nested-lists", "nested-objects"])
def test_crafted_config_files_are_one_line_naming_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "crafted.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^config file {re.escape(str(path))}: {message}") as caught:
        Config.load(path)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


ABSURD_LENGTHS = [
    ("--clip-seconds", "1e6", r"invalid audio\.clip_seconds: 1e\+06 s is outside 0\.02\.\.600 s"),
    ("--clip-seconds", "nan",
     r"invalid audio\.clip_seconds: nan is not a finite number; give a value in 0\.02\.\.600 s"),
    ("--set", "features.patch_frames=1000000000",
     r"invalid features\.patch_frames: 1000000000 frames is outside 8\.\.10000 frames"),
]


def test_train_refuses_an_absurd_length_in_one_line(tmp_path):
    from helpers import run_cli_capped, two_class_folder

    data = two_class_folder(tmp_path / "data", per_class=3)
    results = run_cli_capped([["train", data, "--out", tmp_path / "run", "--no-progress", "--epochs", 1, option, value]
                              for option, value, _ in ABSURD_LENGTHS])
    for (option, value, message), result in zip(ABSURD_LENGTHS, results):
        lines = result["stderr"].strip().splitlines()
        assert result["code"] == 2 and "Traceback" not in result["stderr"], result["stderr"][-2000:]
        assert len(lines) == 1 and re.fullmatch(rf"error: {message}", lines[0]), lines
        assert not (tmp_path / "run").exists()
