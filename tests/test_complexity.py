import json
import math

import pytest
import torch
from torch import nn

from soundscene.training.complexity import (count_macs, format_profile, front_end_macs_per_second, profile_model_file,
                                   profile_network)
from soundscene.config import Config
from soundscene.core.models import available_models, build_model, register_model
from soundscene.core.modelfile import save_model_file


class _ConvLinear(nn.Module):
    """Conv2d(1, 4, 3, padding=1) -> ReLU -> flatten -> Linear(4 * rows * frames, n_classes)."""

    def __init__(self, *, rows: int, frames: int, n_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.linear = nn.Linear(4 * rows * frames, n_classes)

    def forward(self, x):
        return self.linear(torch.relu(self.conv(x)).flatten(1))


if "complexity_test_net" not in available_models():
    @register_model("complexity_test_net")
    def _build_test_net(params, *, in_channels, n_classes):
        return _ConvLinear(rows=8, frames=8, n_classes=n_classes)

SMALL = {"model.name": "complexity_test_net", "features.n_mels": 8, "features.n_mfcc": 8,
         "features.patch_frames": 8, "features.patch_hop_frames": 4}


def _config(name: str, **overrides) -> Config:
    return Config().with_overrides({"model.name": name, **overrides})


def test_macs_and_params_match_a_hand_count():
    report = profile_network(Config().with_overrides(SMALL), 3, latency=False)
    conv = (4 * 8 * 8) * (1 * 3 * 3)  # output elements x in_channels / groups x kernel elements
    linear = (4 * 8 * 8) * 3  # in_features x out_features
    assert report["macs_per_patch"] == conv + linear == 3072
    assert [layer["macs"] for layer in report["layers"]] == [conv, linear]
    assert report["params"] == (4 * 9 + 4) + (256 * 3 + 3) == 811
    assert report["param_bytes"] == {"float32": 4 * 811, "float16": 2 * 811, "int8": 811}
    assert report["patches_per_second"] == pytest.approx(1 / (4 * 0.010))  # a patch every 4 frames of 10 ms
    assert report["macs_per_second"] == round(3072 * 25)
    assert report["total_macs_per_second"] == report["macs_per_second"] + report["front_end_macs_per_second"]
    assert report["latency_ms_per_10s_clip"] is None
    assert report["uncounted"] == []


def test_paper_cnn_macs_by_hand_and_params_by_sum():
    net = build_model(Config(), n_classes=10)
    report = profile_network(Config(), 10, net=net, latency=False)
    assert report["params"] == sum(p.numel() for p in net.parameters()) == 116138
    stage = [(40 * 100, 1, 32), (20 * 50, 32, 64), (10 * 25, 64, 128)]  # (positions, in, out) per stage
    by_hand = sum(pos * out * (cin * 9 + out) for pos, cin, out in stage) + 128 * 10
    assert report["macs_per_patch"] == by_hand == 50_305_280
    assert report["patches_per_second"] == pytest.approx(2.0)
    assert not report["dcase"]["ok"] and "100.61 M MACs" in report["dcase"]["reason"]


def test_profiling_leaves_the_network_as_it_was():
    net = build_model(_config("mobile"), n_classes=4).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    profile_network(_config("mobile"), 4, net=net, latency=False)
    assert net.training
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_mobile_is_within_the_dcase_budget_and_rf_resnet_costs_more():
    mobile = profile_network(_config("mobile"), 10, latency=False)
    assert mobile["dcase"] == {"params_limit": 128000, "macs_limit": 30000000, "ok": True, "reason": None}
    assert 60_000 <= mobile["params"] <= 128_000
    assert 15e6 <= mobile["macs_per_second"] <= 30e6
    rf = profile_network(_config("rf_resnet"), 10, latency=False)
    assert rf["params"] > mobile["params"] and rf["macs_per_second"] > mobile["macs_per_second"]
    paper = profile_network(Config(), 10, latency=False)
    assert rf["macs_per_patch"] <= 3 * paper["macs_per_patch"]
    assert rf["dcase"]["ok"] is False and "MACs per second" in rf["dcase"]["reason"]


def test_front_end_count_follows_the_stated_rule():
    cfg = Config()  # 22050 Hz: 551-sample window -> n_fft 1024, hop 220, 40 mel bands
    per_frame = 1024 + 1024 * 10 + 2 * 513 + 40 * 513
    assert front_end_macs_per_second(cfg) == round(per_frame * 22050 / 220)
    stereo = cfg.with_overrides({"audio.channels": 2})
    assert front_end_macs_per_second(stereo) == pytest.approx(2 * front_end_macs_per_second(cfg), abs=1)
    mfcc = cfg.with_overrides({"features.kind": "mfcc"})  # 13 MFCCs + deltas
    extra = 13 * 40 + 2 * 9 * 13
    assert front_end_macs_per_second(mfcc) == round((per_frame + extra) * 22050 / 220)


def test_layers_it_cannot_count_are_named():
    net = nn.Sequential(nn.Conv1d(2, 3, 5), nn.BatchNorm1d(3), nn.GRU(6, 4, batch_first=True))
    counted = count_macs(net.eval(), torch.zeros(1, 2, 10))
    assert counted["macs"] == 3 * 6 * 2 * 5
    assert counted["uncounted"] == ["GRU"]


def test_latency_report_and_text():
    report = profile_network(_config("mobile"), 10, repeats=2)
    assert 0 < report["latency_ms_per_10s_clip"] < 10_000
    json.dumps(report)  # JSON-ready
    text = format_profile(report)
    assert "mobile (10 classes; patch 1 x 40 x 100)" in text
    assert f"{report['params']:,}" in text and "ms per 10-s clip" in text and "DCASE        within" in text
    over = format_profile(profile_network(_config("rf_resnet"), 10, latency=False))
    assert "DCASE        over:" in over and "ms per 10-s clip" not in over


def test_profile_model_file(tmp_path):
    cfg = _config("mobile", **{"model.params.width": 0.5, "audio.clip_seconds": 2.0})
    net = build_model(cfg, n_classes=3)
    path = save_model_file(tmp_path / "model.safetensors", net, cfg, ["a", "b", "c"])
    report = profile_model_file(path, latency=False)
    assert report["params"] == sum(p.numel() for p in net.parameters())
    assert report["classes"] == ["a", "b", "c"] and report["n_classes"] == 3
    assert report["model_file"] == str(path)
    assert format_profile(report).startswith(f"file         {path}")
    assert math.isclose(report["macs_per_second"], report["macs_per_patch"] * 2, abs_tol=1)
