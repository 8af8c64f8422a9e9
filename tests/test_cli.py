import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from soundscene.cli import main
from helpers import write_tone


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
    header, line = capsys.readouterr().out.splitlines()  # the table: a header that says which level is which
    assert header.split()[:3] == ["path", "scene", "conf."] and "LAeq (A-weighted)" in header
    row = line.split()
    assert row[0] == str(clip) and row[1] in out[0]["probabilities"] and row[2].endswith("%")


def test_clear_one_line_errors(tiny_run, tmp_path, capsys):
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


def test_real_tut_scene_clips_flow_through_predict(tiny_run, tau_scene_clips, capsys):
    # 48 kHz, 24-bit, stereo, 10 s: the TAU 2019 format (real TUT clips from ../shared when present)
    assert main(["predict", str(tiny_run.model_path), str(tau_scene_clips), "--format", "json"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert len(preds) == len(list(tau_scene_clips.rglob("*.wav"))) and not any("error" in p for p in preds)
    assert all(len(p["windows"]) > 1 and p["segments"][-1]["end"] == pytest.approx(10.0) for p in preds)


def _errors(text):
    return [line for line in text.strip().splitlines() if line.startswith("error: ")]


def test_predict_keeps_every_good_result_and_names_each_failure(tiny_run, tiny_dataset, tmp_path, capsys):
    """Exit codes: 0 all classified, 1 some inputs failed (each named, the rest kept), 2 usage or fatal."""
    good = sorted((tiny_dataset.parent / "rain").glob("*.wav"))[:2]
    folder = tmp_path / "folder"
    folder.mkdir()
    write_tone(folder / "ok.wav", sample_rate=8000, seconds=1.0)
    (folder / "broken.wav").write_bytes(b"RIFF nonsense")
    args = ["predict", str(tiny_run.model_path), str(good[0]), str(tmp_path / "missing.wav"), str(folder),
            str(good[1]), "--format", "json"]
    assert main(args) == 1
    captured = capsys.readouterr()
    records = json.loads(captured.out)
    assert [r["path"] for r in records if "label" in r] == [str(good[0]), str(folder / "ok.wav"), str(good[1])]
    errors = _errors(captured.err)
    assert len(errors) == 2 and any("missing.wav: does not exist" in e for e in errors)
    assert any("broken.wav" in e for e in errors)
    assert main(["predict", str(tiny_run.model_path), str(good[0]), str(tmp_path / "missing.wav")]) == 1
    captured = capsys.readouterr()
    assert str(good[0]) in captured.out and _errors(captured.err) == [f"error: {tmp_path / 'missing.wav'}: does not exist"]
    assert main(["predict", str(tmp_path / "model.safetensors"), str(good[0])]) == 2
    assert "model file does not exist" in _one_error_line(capsys)


def test_predict_never_prints_a_non_finite_probability(tiny_run, tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    huge = tmp_path / "huge.wav"
    sf.write(str(huge), np.full(12000, 1e30, dtype=np.float32) * np.sign(np.sin(np.arange(12000))), 8000,
             subtype="FLOAT")
    assert main(["predict", str(tiny_run.model_path), str(huge), "--format", "json"]) == 1
    captured = capsys.readouterr()
    assert "NaN" not in captured.out and "nan" not in captured.out
    json.loads(captured.out, parse_constant=lambda c: pytest.fail(f"non-finite constant {c} in JSON"))
    assert _errors(captured.err) == [f"error: {huge}: samples reach 1e+30, beyond ±1000 (full scale is ±1); the file "
                                     "is damaged or holds integer-scaled floats - rescale it to ±1"]


def test_predict_refuses_a_damaged_model_file(tiny_run, tiny_dataset, tmp_path, capsys):
    damaged = tmp_path / "damaged.safetensors"
    raw = bytearray(tiny_run.model_path.read_bytes())
    raw[-5000:-5000 + 4096] = b"\xff" * 4096  # 4 KB of the weights overwritten
    damaged.write_bytes(bytes(raw))
    clip = next((tiny_dataset.parent / "rain").glob("*.wav"))
    assert main(["predict", str(damaged), str(clip)]) == 2
    assert "damaged" in _one_error_line(capsys)


def test_predict_reports_the_level_and_names_silence_instead_of_a_scene(tiny_run, tmp_path, capsys):
    """Silence is not a scene: a near-silent recording (DC, dither, noise far below -80 dBFS) gets no label, and
    a recording that is silent but for a moment is classified on that moment, with the silent share named."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    quiet = tmp_path / "quiet.wav"
    sf.write(str(quiet), np.full(12000, 1e-9, dtype=np.float32), 8000, subtype="FLOAT")  # a tiny DC offset
    assert main(["predict", str(tiny_run.model_path), str(quiet), "--format", "json"]) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out)[0]
    assert record["level_dbfs"] == pytest.approx(-180.0, abs=0.1)
    assert (record["label"], record["confidence"], record["probabilities"]) == (None, None, None)
    assert all(w["silent"] and w["label"] is None for w in record["windows"])
    assert "silent" in record["warning"] and "warning: " in captured.err and "no scene" in captured.err
    dc = tmp_path / "dc.wav"
    sf.write(str(dc), np.full(12000, 0.05, dtype=np.float32), 8000, subtype="FLOAT")  # loud, but no sound
    assert main(["predict", str(tiny_run.model_path), str(dc), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["label"] is None
    mostly = tmp_path / "mostly_silent.wav"
    x = rng.standard_normal(8000 * 30).astype(np.float32) * 10 ** (-90 / 20)  # noise below -85 dBFS ...
    x[-8000:] += 0.1 * rng.standard_normal(8000).astype(np.float32)  # ... and one second of sound at the end
    sf.write(str(mostly), x, 8000, subtype="FLOAT")
    assert main(["predict", str(tiny_run.model_path), str(mostly), "--format", "json"]) == 0
    record = json.loads(capsys.readouterr().out)[0]
    heard = [w for w in record["windows"] if not w["silent"]]
    assert record["label"] in tiny_run.test_metrics["classes"] and 0 < len(heard) < len(record["windows"])
    assert record["probabilities"] == pytest.approx(
        {c: np.mean([w["probabilities"][c] for w in heard]) for c in record["probabilities"]}, abs=2e-4)
    assert "windows are silent" in record["warning"]
    assert record["segments"][0]["silent"] and record["segments"][0]["label"] is None


def test_predict_long_recording_gives_a_timeline_and_a_picture(tiny_run, tiny_dataset, tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    clips = [sorted((tiny_dataset.parent / c).glob("*.wav"))[0] for c in ("rain", "rain", "metro", "metro", "park")]
    long = tmp_path / "long.wav"
    sf.write(str(long), np.concatenate([sf.read(str(c))[0] for c in clips]), 8000)
    assert main(["predict", str(tiny_run.model_path), str(long), "--format", "json", "--plot", str(tmp_path / "png")]) == 0
    record = json.loads(capsys.readouterr().out)[0]
    assert len(record["windows"]) == 9  # 7.5 s, windows of 1.5 s every 0.75 s
    segments = record["segments"]
    assert segments[0]["start"] == 0 and segments[-1]["end"] == pytest.approx(7.5)
    assert all(a["end"] == b["start"] for a, b in zip(segments, segments[1:]))
    png = tmp_path / "png" / "001-long.png"
    assert record["plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_presets_from_the_command_line(capsys, tmp_path):
    assert main(["config", "--preset", "tiny"]) == 0
    tiny = json.loads(capsys.readouterr().out)
    assert tiny["model"]["name"] == "mobile" and tiny["train"]["selection"] == "ema"
    from soundscene.cli import _config_from_args, _parser

    args = _parser().parse_args(["train", "x", "--preset", "strong", "--set", "train.epochs=7", "--devices", "2"])
    config = _config_from_args(args)
    assert (config.model.name, config.train.epochs, config.train.devices) == ("rf_resnet", 7, 2)
    partial = tmp_path / "c.json"
    partial.write_text(json.dumps({"train": {"learning_rate": 0.01}}))
    args = _parser().parse_args(["train", "x", "--preset", "tiny", "--config", str(partial)])
    config = _config_from_args(args)
    assert config.model.name == "mobile" and config.train.learning_rate == 0.01  # the file on top of the preset


def test_predict_keeps_the_order_of_the_inputs_errors_included(tiny_run, tiny_dataset, tmp_path, capsys):
    good = sorted((tiny_dataset.parent / "rain").glob("*.wav"))[:2]
    missing = tmp_path / "missing.wav"
    assert main(["predict", str(tiny_run.model_path), str(good[0]), str(missing), str(good[1]),
                 "--format", "json"]) == 1
    assert [r["path"] for r in json.loads(capsys.readouterr().out)] == [str(good[0]), str(missing), str(good[1])]


def test_an_empty_path_is_a_usage_error(tiny_run, tiny_dataset, capsys):
    clip = next((tiny_dataset.parent / "rain").glob("*.wav"))
    assert main(["predict", str(tiny_run.model_path), ""]) == 2
    assert "empty" in _one_error_line(capsys)
    assert main(["predict", str(tiny_run.model_path), str(clip), ""]) == 2  # not "the current folder"
    assert capsys.readouterr().out == ""


def test_names_that_are_not_utf8_or_hold_control_characters_are_escaped(tiny_run, tmp_path):
    """A name can neither crash the call (every good result is kept) nor split or forge an error: line."""
    import os

    folder = tmp_path / "odd"
    folder.mkdir()
    write_tone(folder / "cafe.wav", sample_rate=8000, seconds=1.0)
    os.rename(os.fsencode(folder / "cafe.wav"), os.fsencode(folder) + b"/caf\xe9.wav")  # Latin-1, not UTF-8
    write_tone(folder / "a\nerror: forged.wav", sample_rate=8000, seconds=1.0)
    (folder / "bad\x1b[31m.wav").write_bytes(b"not audio")
    for fmt in ("table", "jsonl"):  # the names are escaped in the record, the same for every format
        result = subprocess.run([sys.executable, "-m", "soundscene.cli", "predict", str(tiny_run.model_path),
                                 str(folder), "--format", fmt], capture_output=True, timeout=120)
        out, err = result.stdout.decode("utf-8"), result.stderr.decode("utf-8")
        assert result.returncode == 1 and "Traceback" not in err, err
        assert "\x1b" not in out + err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "bad\\x1b[31m.wav" in errors[0] and "forged" not in err
        if fmt in ("json", "jsonl"):
            found = json.loads(out) if fmt == "json" else [json.loads(line) for line in out.splitlines()]
            assert {r["path"].rsplit("/", 1)[-1] for r in found} == {
                "a\\nerror: forged.wav", "bad\\x1b[31m.wav", "caf\\xe9.wav"}
        else:
            assert "caf\\xe9.wav" in out and "a\\nerror: forged.wav" in out


def test_each_result_is_written_when_it_is_done_and_an_interruption_keeps_them(tiny_run, tiny_dataset, tmp_path,
                                                                             monkeypatch, capsys):
    from soundscene.core.inference import SceneClassifier

    clips = sorted((tiny_dataset.parent / "rain").glob("*.wav"))[:3]
    real = SceneClassifier.classify_file
    done = []

    def interrupted_at_the_third(self, path, **kwargs):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(path)
        return real(self, path, **kwargs)

    monkeypatch.setattr(SceneClassifier, "classify_file", interrupted_at_the_third)
    assert main(["predict", str(tiny_run.model_path), *map(str, clips), "--format", "json"]) == 130
    assert [r["path"] for r in json.loads(capsys.readouterr().out)] == [str(c) for c in clips[:2]]  # a closed array
    done.clear()
    assert main(["predict", str(tiny_run.model_path), *map(str, clips), "--format", "jsonl"]) == 130
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["path"] for line in lines] == [str(c) for c in clips[:2]]


def test_a_closed_output_pipe_ends_quietly(tiny_run, tiny_dataset):
    clips = sorted((tiny_dataset.parent / "rain").glob("*.wav"))[:6]
    proc = subprocess.Popen([sys.executable, "-m", "soundscene.cli", "predict", str(tiny_run.model_path),
                             *map(str, clips), "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141) and err == "", err


def test_warnings_name_files_escaped(tmp_path, tiny_dataset, capsys):
    """A model file without a metadata digest warns; its name, however odd, cannot forge an error: line."""
    import shutil
    from pathlib import Path

    odd = tmp_path / "m\nerror: forged.safetensors"
    shutil.copy(Path(__file__).parent / "fixtures" / "model_format1.safetensors", odd)
    clip = next((tiny_dataset.parent / "rain").glob("*.wav"))
    main(["predict", str(odd), str(clip)])
    err = capsys.readouterr().err
    assert "warning: " in err and not any(line.startswith("error: forged") for line in err.splitlines())


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_predict_interrupted_keeps_the_results_it_finished(tmp_path, tiny_run, fmt):
    """SIGINT in the middle of many files: exit 130, and the output holds every file done before it, in a
    well-formed document (a closed JSON array, a CSV with its header; jsonl is a line per record, flushed).
    (A process started in the background by a non-interactive shell inherits SIGINT ignored, as every
    program does: `kill -INT` then does nothing; use SIGTERM, which ends it the same way.)"""
    import csv as csv_module
    import io
    import signal
    import subprocess

    from helpers import wait_for

    rng = np.random.default_rng(0)
    folder = tmp_path / "many"
    folder.mkdir()
    for k in range(300):
        sf.write(str(folder / f"{k:04d}.wav"), (0.1 * rng.standard_normal(12000)).astype(np.float32), 8000)
    out = tmp_path / f"out.{fmt}"
    with open(out, "w") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "soundscene.cli", "predict", str(tiny_run.model_path),
                                 str(folder), "--format", fmt], stdout=stdout, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: out.read_text().count(".wav") >= 6 or proc.poll() is not None, 120, "a few results")
            proc.send_signal(signal.SIGINT)
            err = proc.communicate(timeout=120)[1]
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, err
    text = out.read_text()
    if fmt == "json":
        done = json.loads(text)
    elif fmt == "jsonl":
        done = [json.loads(line) for line in text.splitlines()]
    else:
        done = list(csv_module.DictReader(io.StringIO(text)))
    assert 5 <= len(done) < 300 and all(row["label"] for row in done)
