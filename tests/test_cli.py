import json
import subprocess
import sys

import pytest

from soundscene.cli import main
from conftest import SHARED


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_predict_formats(tiny_run, tiny_dataset, capsys):
    clip = next((tiny_dataset.parent / "rain").glob("*.wav"))
    assert main(["predict", str(tiny_run.run_dir), str(clip), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["label"] in out[0]["probabilities"]
    assert main(["predict", str(tiny_run.model_path), str(clip), "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("path,label,confidence,")
    assert main(["predict", str(tiny_run.model_path), str(clip)]) == 0
    row = capsys.readouterr().out.split()
    assert row[0] == str(clip) and row[1] in out[0]["probabilities"] and row[2].endswith("%")


def test_clear_one_line_errors(tiny_run, tmp_path, capsys):
    assert main(["predict", str(tiny_run.model_path), str(tmp_path / "missing.wav")]) == 2
    assert "missing.wav: does not exist" in _one_error_line(capsys)
    assert main(["train", str(tmp_path / "no_such_data")]) == 2
    assert "does not exist" in _one_error_line(capsys)
    assert main(["predict", str(tmp_path / "model.safetensors"), str(tmp_path)]) == 2
    assert "model file does not exist" in _one_error_line(capsys)
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a run folder" in _one_error_line(capsys)
    assert main(["train", str(tmp_path), "--set", "train.epochz=3"]) == 2
    assert "unknown setting" in _one_error_line(capsys)


def test_evaluate_writes_a_report(tiny_run, tiny_dataset, tmp_path, capsys):
    assert main(["evaluate", str(tiny_run.run_dir), str(tiny_dataset), "--fold", "5", "--out",
                 str(tmp_path / "ev"), "--no-progress"]) == 0
    assert "accuracy" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    saved = json.loads((tiny_run.run_dir / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(saved["accuracy"])  # same clips, same model
    assert (tmp_path / "ev" / "confusion_matrix.png").is_file()


def test_config_command_prints_valid_json(capsys):
    from soundscene.config import Config

    assert main(["config"]) == 0
    assert Config.from_json(capsys.readouterr().out) == Config()


@pytest.mark.slow
def test_demo_command_end_to_end(tmp_path):
    result = subprocess.run([sys.executable, "-m", "soundscene.cli", "demo", "--out", str(tmp_path / "demo"),
                             "--clips-per-class", "5", "--epochs", "2", "--no-progress"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "accuracy" in result.stdout
    for name in ("model.safetensors", "confusion_matrix.png", "training_curves.png", "metrics.json"):
        assert (tmp_path / "demo" / name).is_file()


@pytest.mark.skipif(not (SHARED / "tut2018-samples").is_dir(), reason="../shared/data/tut2018-samples is absent")
def test_real_tut_scene_clips_flow_through_predict(tiny_run, capsys):
    # 48 kHz, 24-bit, stereo, 10 s: the TAU 2019 format
    assert main(["predict", str(tiny_run.model_path), str(SHARED / "tut2018-samples"), "--format", "json"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert len(preds) == 10 and not any(p["error"] for p in preds)
