"""ONNX export: parity with the torch model, metadata, dynamic axes, refusals, int8 quantisation, real clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import onnx  # the export extra, installed by scripts/setup.sh test: a missing one fails here, never skips

from soundscene.config import Config
from soundscene.errors import ModelFileError, SoundsceneError
from soundscene.apps.export import (INPUT_NAME, OUTPUT_NAME, default_quantized_path, export_onnx, onnx_probabilities,
                               read_onnx_metadata)
from soundscene.core.modelfile import save_model_file
from soundscene.core.models import build_model

SR = 8000
CLASSES = ["street_traffic", "park", "metro", "rain"]
# lengths: shorter than one patch (32 frames = 2480 samples), shorter than the 1.5-s clip, exactly a clip,
# one sample more, and several clips' worth
LENGTHS = (700, 5000, 12000, 12001, 30011)


def _config(*, kind="logmel", aggregate="mean", pad_mode="repeat", channels=1) -> Config:
    features = {"n_mels": 32, "patch_frames": 32, "patch_hop_frames": 16, "kind": kind}
    if kind == "mfcc":
        features["deltas"] = True
    data = {"audio": {"sample_rate": SR, "clip_seconds": 1.5, "min_seconds": 0.2, "pad_mode": pad_mode,
                      "channels": channels},
            "features": features,
            "model": {"params": {"widths": [8, 16, 32]}, "aggregate": aggregate}}
    return Config.from_dict(data)


def _build(config: Config, n_classes: int):
    return build_model(config, n_classes=n_classes)


def _model_file(tmp_path: Path, seed: int = 0, **kwargs) -> Path:
    """A small random model whose probabilities are far from uniform (so that differences show)."""
    config = _config(**kwargs)
    torch.manual_seed(seed)
    net = _build(config, len(CLASSES))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(30.0)
        net.feature_mean.uniform_(-50.0, -30.0)
        net.feature_std.uniform_(8.0, 12.0)
    net.eval()
    name = "-".join(f"{k}={v}" for k, v in sorted(kwargs.items())) or "default"
    return save_model_file(tmp_path / f"{name}-{seed}.safetensors", net, config, CLASSES)


def _clips(lengths=LENGTHS, seed=0) -> list[np.ndarray]:
    """Noise with a changing level and a tone, so that the dB floor and the patches matter."""
    rng = np.random.default_rng(seed)
    out = []
    for k, n in enumerate(lengths):
        t = np.arange(n) / SR
        envelope = 0.05 + 0.5 * np.abs(np.sin(2 * np.pi * (0.3 + 0.2 * k) * t))
        tone = 0.3 * np.sin(2 * np.pi * (300 + 150 * k) * t)
        out.append((envelope * rng.standard_normal(n) + tone).astype(np.float32))
    return out


def _inference_probabilities(model_path: Path, clips) -> np.ndarray:
    """What soundscene's own inference gives, one clip at a time (the path the export must match)."""
    from soundscene.core.inference import SceneClassifier

    clf = SceneClassifier.from_file(model_path)
    return np.stack([clf.classify_clips([c[None]])[0] for c in clips])


@pytest.mark.parametrize("kind, aggregate, pad_mode", [
    ("logmel", "mean", "repeat"),
    ("mfcc", "mean", "repeat"),
    ("mfcc", "log_mean", "zeros"),
    ("logmel", "max", "zeros"),
    ("logmel", "vote", "repeat"),
])
def test_parity_with_torch_on_several_lengths(tmp_path, kind, aggregate, pad_mode):
    model = _model_file(tmp_path, kind=kind, aggregate=aggregate, pad_mode=pad_mode)
    clips = _clips()
    report = export_onnx(model, tmp_path / "model.onnx", verify_with=clips)
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-4
    assert report.n_verified == len(clips) and report.opset == 17 and not report.quantized
    assert report.size_bytes == (tmp_path / "model.onnx").stat().st_size

    got = onnx_probabilities(tmp_path / "model.onnx", clips)
    expected = _inference_probabilities(model, clips)
    assert np.abs(got - expected).max() < 1e-4
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    if aggregate != "vote":  # the test model is not a flat one: a wrong step would show
        assert expected.max() > 0.5


def test_batch_rows_are_independent_clips(tmp_path):
    import onnxruntime as ort

    model = _model_file(tmp_path, kind="mfcc")
    export_onnx(model, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    quiet = _clips([9000], seed=1)[0] * 1e-3  # a row 60 dB quieter: the dB floor must be its own
    batch = np.stack([_clips([9000], seed=2)[0], quiet, _clips([9000], seed=3)[0]])
    (probs,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
    assert probs.shape == (3, len(CLASSES))
    one_by_one = np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: row[None]})[0] for row in batch])
    np.testing.assert_allclose(probs, one_by_one, atol=1e-6)
    assert np.abs(probs - _inference_probabilities(model, list(batch))).max() < 1e-4


def test_metadata_names_and_dynamic_axes(tmp_path):
    model = _model_file(tmp_path)
    out = tmp_path / "sub" / "scene.onnx"
    export_onnx(model, out)
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["soundscene_classes"]) == CLASSES
    assert Config.from_json(props["soundscene_config"]) == _config()
    assert props["soundscene_version"]
    meta = read_onnx_metadata(out)
    assert meta["classes"] == CLASSES and meta["config"].audio.sample_rate == SR

    (inp,), (outp,) = proto.graph.input, proto.graph.output
    assert inp.name == INPUT_NAME and outp.name == OUTPUT_NAME
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    in_dims = inp.type.tensor_type.shape.dim
    assert len(in_dims) == 2 and all(d.dim_param and not d.dim_value for d in in_dims)  # batch, samples
    out_dims = outp.type.tensor_type.shape.dim
    assert out_dims[0].dim_param == in_dims[0].dim_param and out_dims[1].dim_value == len(CLASSES)
    assert not [p for p in tmp_path.joinpath("sub").iterdir() if p.name != "scene.onnx"]  # no temporary left


def test_other_opsets_and_bad_arguments(tmp_path):
    model = _model_file(tmp_path, aggregate="log_mean")
    clips = _clips((3000, 14000))
    report = export_onnx(model, tmp_path / "m20.onnx", opset=20, verify_with=clips)
    assert report.opset == 20 and report.max_abs_diff < 1e-4
    for bad, match in [(dict(opset=11), "opset 11"), (dict(stft="fft"), "STFT method"),
                       (dict(verify_with=[np.zeros((2, 100), np.float32)]), "mono"),
                       (dict(verify_with=clips, labels=["park"]), "1 label"),
                       (dict(verify_with=clips, labels=["park", "beach"]), "beach")]:
        with pytest.raises(SoundsceneError, match=match) as info:
            export_onnx(model, tmp_path / "bad.onnx", **bad)
        assert "\n" not in str(info.value)
    assert not (tmp_path / "bad.onnx").exists()


def test_onnx_stft_operator_graph_matches_too(tmp_path):
    model = _model_file(tmp_path, kind="mfcc", pad_mode="zeros")
    report = export_onnx(model, tmp_path / "op.onnx", stft="op", verify_with=_clips((4000, 12001)))
    assert report.stft == "op" and report.max_abs_diff < 1e-4


def test_multichannel_model_is_refused_in_one_line(tmp_path):
    model = _model_file(tmp_path, channels=2)
    with pytest.raises(ModelFileError, match="mono") as info:
        export_onnx(model, tmp_path / "model.onnx")
    assert "\n" not in str(info.value) and "audio.channels = 2" in str(info.value)
    assert not (tmp_path / "model.onnx").exists()


def test_a_mismatch_is_refused_and_nothing_written(tmp_path, monkeypatch):
    import soundscene.apps.export as export

    model = _model_file(tmp_path)
    real = export.torch_probabilities
    monkeypatch.setattr(export, "torch_probabilities", lambda *a, **k: real(*a, **k) + 1e-3)
    with pytest.raises(SoundsceneError, match="does not match") as info:
        export_onnx(model, tmp_path / "model.onnx", verify_with=_clips((5000,)))
    assert "\n" not in str(info.value)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*.tmp"))


def test_quantized_export_reports_agreement_and_accuracy(tmp_path):
    model = _model_file(tmp_path, kind="mfcc")
    clips = _clips((6000, 12000, 16000, 20000))
    labels = [CLASSES[k % 4] for k in range(len(clips))]
    report = export_onnx(model, tmp_path / "model.onnx", quantize=True, verify_with=clips, labels=labels)
    qpath = tmp_path / "model.int8.onnx"
    assert report.quantized and report.quantized_path == qpath == default_quantized_path(tmp_path / "model.onnx")
    assert report.quantized_size_bytes == qpath.stat().st_size > 0
    assert 0.0 <= report.quantized_top1_agreement <= 1.0
    assert 0.0 <= report.quantized_mean_abs_diff <= report.quantized_max_abs_diff < 0.5
    assert report.accuracy is not None and report.quantized_accuracy is not None
    assert any(n.op_type in ("ConvInteger", "MatMulInteger", "DynamicQuantizeLinear")
               for n in onnx.load(str(qpath)).graph.node)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".onnx" or p.name.startswith(".")) == [
        "model.int8.onnx", "model.onnx"]  # written atomically, no temporary left
    probs = onnx_probabilities(qpath, clips)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert "int8" in report.summary() and "top-1 agreement" in report.summary()


def test_real_tut_clips(tmp_path, tau_scene_clips):
    files = sorted(tau_scene_clips.rglob("*.wav"))
    from soundscene.core.audio import load_audio

    clips = [load_audio(f, sample_rate=SR, channels=1)[0] for f in files]
    model = _model_file(tmp_path, kind="mfcc")
    report = export_onnx(model, tmp_path / "model.onnx", verify_with=clips)
    assert report.n_verified == len(files) and report.max_abs_diff < 1e-4
    got = onnx_probabilities(tmp_path / "model.onnx", clips)
    assert np.abs(got - _inference_probabilities(model, clips)).max() < 1e-4


def test_export_command_writes_and_verifies_the_graph(tmp_path, capsys):
    from soundscene.cli import main

    model = _model_file(tmp_path)
    assert main(["export", str(model), "-o", str(tmp_path / "m.onnx"), "--quantize"]) == 0
    out = capsys.readouterr().out
    assert "verified on 4 clip(s): max |ONNX - torch| = " in out and "dynamic int8" in out
    assert read_onnx_metadata(tmp_path / "m.onnx")["classes"] == CLASSES
    assert main(["export", str(tmp_path / "missing.safetensors"), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()


# -- the exported model runs without torch: listen MODEL.onnx (core.onnxmodel) ------------------------------------

def _exported(tmp_path: Path, **kwargs) -> tuple[Path, Path]:
    model = _model_file(tmp_path, **kwargs)
    out = tmp_path / "model.onnx"
    export_onnx(model, out, verify_with=_clips()[:2])
    return model, out


def test_a_stream_on_the_export_decides_as_the_model_file_does(tmp_path):
    """The same audio through listen's stream with the .onnx and the .safetensors: the same labels, times and
    levels, probabilities within 1e-3 (float32 graphs differ in rounding only)."""
    from soundscene.apps.listen import listen
    from soundscene.core.inference import SceneClassifier

    model, onnx_path = _exported(tmp_path)
    rng = np.random.default_rng(1)
    audio = np.concatenate(_clips((30000, 30000, 30000), seed=3))[None] * 0.8
    audio = np.concatenate([audio, 0.05 * rng.standard_normal((1, 20000)).astype(np.float32)], axis=1)
    blocks = [audio[:, k:k + 1234] for k in range(0, audio.shape[1], 1234)]
    got = {}
    for path in (model, onnx_path):
        clf = SceneClassifier.from_file(path, hop_seconds=0.5)
        got[path.suffix] = []
        listen(clf, blocks, input_rate=SR, channels=1, on_decision=[got[path.suffix].append])
    torch_records, onnx_records = got[".safetensors"], got[".onnx"]
    assert len(torch_records) == len(onnx_records) > 10
    for a, b in zip(torch_records, onnx_records):
        assert (a["time"], a["label"], a["changed"], a["silent"]) == (b["time"], b["label"], b["changed"], b["silent"])
        assert a["levels"] == b["levels"]
        for name in CLASSES:
            assert abs(a["probabilities"][name] - b["probabilities"][name]) <= 1e-3


def test_the_export_carries_its_digest_and_the_files_sha256(tmp_path):
    import hashlib

    from soundscene.core.inference import SceneClassifier
    from soundscene.core.onnxmodel import DIGEST_KEY

    _, onnx_path = _exported(tmp_path)
    clf = SceneClassifier.from_file(onnx_path)
    assert clf.exported and clf.classes == CLASSES
    assert clf.sha256 == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert len(props[DIGEST_KEY]) == 64 and props[DIGEST_KEY] != clf.sha256  # the digest excludes itself


def test_a_damaged_or_foreign_onnx_file_is_refused_in_one_line(tmp_path):
    from onnx import TensorProto, helper

    from soundscene.core.inference import SceneClassifier

    _, onnx_path = _exported(tmp_path)
    data = bytearray(onnx_path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the weights
    (tmp_path / "flipped.onnx").write_bytes(bytes(data))
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "other.onnx"))
    (tmp_path / "text.onnx").write_text("not a graph")
    cases = {"flipped.onnx": "do not match the digest", "other.onnx": "not one soundscene exported",
             "text.onnx": "not a readable ONNX model", "missing.onnx": "does not exist"}
    for name, words in cases.items():
        with pytest.raises(ModelFileError) as caught:
            SceneClassifier.from_file(tmp_path / name)
        assert words in str(caught.value) and "\n" not in str(caught.value), name


def test_the_int8_copy_has_a_digest_of_its_own(tmp_path):
    from soundscene.core.inference import SceneClassifier

    model = _model_file(tmp_path)
    report = export_onnx(model, tmp_path / "m.onnx", quantize=True)
    clf = SceneClassifier.from_file(report.quantized_path)
    assert clf.classify_clips(_clips()[:1]).shape == (1, len(CLASSES))


def test_any_damaged_byte_of_an_export_is_one_line(tmp_path):
    """Flip every 97th byte in turn (graph, weights, metadata, digest): always one ModelFileError, never another
    exception."""
    from soundscene.core.onnxmodel import load_onnx_model

    _, onnx_path = _exported(tmp_path)
    data = onnx_path.read_bytes()
    for at in range(0, len(data), max(1, len(data) // 97)):
        damaged = bytearray(data)
        damaged[at] ^= 0x5A
        (tmp_path / "d.onnx").write_bytes(bytes(damaged))
        with pytest.raises(ModelFileError) as caught:
            load_onnx_model(tmp_path / "d.onnx")
        assert "\n" not in str(caught.value)
