"""The record schema: one set of names, units and rounding for every output, and the JSON Schema made from it."""

import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from jsonschema import Draft202012Validator

from soundscene.core import records
from soundscene.core.inference import SceneClassifier
from soundscene.training.synth import synthesize_scene


def _validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(records.schema_of(kind))


def test_one_rounding_rule_and_null_for_what_is_not_finite():
    r = records.make("decision", time=1.23456, label="park", confidence=0.123456,
                     probabilities={"park": 0.123456, "metro": float("nan")}, changed=True, previous=None,
                     level_dbfs=float("-inf"), silent=False)
    assert r == {"time": 1.235, "label": "park", "confidence": 0.1235,
                 "probabilities": {"park": 0.1235, "metro": None}, "changed": True, "previous": None,
                 "level_dbfs": None, "silent": False}
    assert records.make("segment", start=np.float32(0.5), end=2, label="x", confidence=np.float64(1 / 3),
                        silent=False) == {"start": 0.5, "end": 2.0, "label": "x", "confidence": 0.3333,
                                          "silent": False}
    assert records.make("window", start=0, end=1, label="a", confidence=1, probabilities={"a": 1}, level_dbfs=-3,
                        silent=False)["start"] == 0.0
    assert records.make("prediction", path="a.wav", label="a", confidence=0.5, probabilities={"a": 0.5},
                        level_dbfs=-23.456)["level_dbfs"] == -23.5


@pytest.mark.parametrize("kind, values, message", [
    ("segment", {"start": 0, "end": 1, "label": "a", "confidence": 1, "silent": False, "colour": "red"},
     "no field"),
    ("segment", {"start": 0, "end": 1, "label": "a", "silent": False}, "needs 'confidence'"),
    ("segment", {"start": float("nan"), "end": 1, "label": "a", "confidence": 1, "silent": False}, "not finite"),
    ("segment", {"start": 0, "end": 1, "label": "a", "confidence": "high", "silent": False}, "expected a number"),
    ("decision", {"time": None, "label": "a", "confidence": 1, "probabilities": {}, "changed": False,
                  "previous": None, "level_dbfs": None, "silent": False}, "required"),
])
def test_a_record_never_carries_what_the_schema_does_not_describe(kind, values, message):
    with pytest.raises(ValueError, match=message):
        records.make(kind, **values)


def test_the_json_schema_is_valid_and_matches_the_field_lists():
    schema = records.json_schema()
    Draft202012Validator.check_schema(schema)
    for kind, fields in records.FIELDS.items():
        described = schema["$defs"][kind]
        assert list(described["properties"]) == [f.name for f in fields]
        assert described["required"] == [f.name for f in fields if f.required]
        assert described["additionalProperties"] is False


def test_strict_json_and_tabular_forms():
    good = records.make("prediction", path="a b.wav", label="park", confidence=0.75,
                        probabilities={"park": 0.75, "metro": 0.25}, level_dbfs=-20.04, segments=[])
    bad = records.make("error", path="x.wav", error="x.wav: file is empty (0 bytes)")
    with pytest.raises(ValueError):
        records.dumps({"x": float("nan")})
    assert json.loads(records.dumps([good, bad])) == [good, bad]
    rows = list(__import__("csv").reader(io.StringIO(records.csv_text([good, bad], ["park", "metro"]))))
    levels = ["LAeq", "LAFmax", "LAFmin", "LA10", "LA50", "LA90", "LCeq", "levels_reference"]
    assert rows[0] == ["path", "label", "confidence", "park", "metro", "level_dbfs", *levels, "error"]
    assert rows[1] == ["a b.wav", "park", "0.75", "0.75", "0.25", "-20.0", *[""] * 8, ""]
    assert rows[2] == ["x.wav", "", "", "", "", "", *[""] * 8, "x.wav: file is empty (0 bytes)"]
    measured = {**good, "levels": records.make("levels", calibrated=True, reference="dB SPL", LAeq=61.04,
                                               LAFmax=70, LAFmin=50, LA10=65, LA50=60, LA90=None, LCeq=64,
                                               bands={"1000": 55.55})}
    row = list(__import__("csv").reader(io.StringIO(records.csv_text([measured], ["park", "metro"]))))[1]
    assert row[6:14] == ["61.0", "70.0", "50.0", "65.0", "60.0", "", "64.0", "dB SPL"]
    assert measured["levels"]["bands"] == {"1000": 55.5} or measured["levels"]["bands"] == {"1000": 55.6}
    truth = records.csv_text([good], ["park", "metro"], truth=["metro"]).splitlines()
    assert truth[0].startswith("path,true_label,label") and truth[1].startswith("a b.wav,metro,park")
    (line,) = records.table_lines([good, bad])
    assert line.split()[-2:] == ["-20.0", "dBFS"] and "park" in line and "75.0%" in line
    calibrated = records.table_line(measured)  # the unweighted RMS and the LAeq, each named by its header
    assert calibrated.endswith("-20.0 dBFS    61.0 dB SPL")
    out = io.StringIO()
    writer = records.RecordWriter(out, "table", ["park", "metro"])
    writer.write(measured)
    header, row = out.getvalue().splitlines()
    assert "RMS, unweighted" in header and "LAeq (A-weighted)" in header and row.endswith("61.0 dB SPL")


def test_schema_command_prints_the_schema():
    out = subprocess.run([sys.executable, "-m", "soundscene.cli", "schema"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout) == records.json_schema()
    one = subprocess.run([sys.executable, "-m", "soundscene.cli", "schema", "decision"], capture_output=True,
                         text=True, timeout=60)
    assert json.loads(one.stdout)["properties"].keys() == {f.name for f in records.FIELDS["decision"]}
    bad = subprocess.run([sys.executable, "-m", "soundscene.cli", "schema", "nope"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: no record kind 'nope'")
    assert "Traceback" not in bad.stderr


def test_every_output_says_the_same_thing_about_the_same_audio(tiny_run, tmp_path):
    """One window of mono audio at the model's rate, through predict --format json, the HTTP service,
    listen (a JSON line) and the MQTT payload: the same names and the same values, each valid."""
    from fastapi.testclient import TestClient

    from soundscene.apps.mqtt import scene_payload
    from soundscene.apps.serve import create_app

    clf = SceneClassifier.from_file(tiny_run.model_path)
    rate, n = clf.sample_rate, clf.window_samples
    wave = synthesize_scene(clf.classes[1], sample_rate=rate, seconds=n / rate, seed=11)[:n].astype(np.float32)
    path = tmp_path / "scene.wav"
    sf.write(str(path), wave, rate, subtype="FLOAT")

    predicted = subprocess.run([sys.executable, "-m", "soundscene.cli", "predict", str(tiny_run.model_path),
                                str(path), "--format", "json"], capture_output=True, text=True, timeout=120)
    assert predicted.returncode == 0, predicted.stderr
    (from_cli,) = json.loads(predicted.stdout)
    with path.open("rb") as f:
        from_service = TestClient(create_app(clf)).post("/v1/classify", files={"file": ("scene.wav", f)}).json()
    heard = subprocess.run([sys.executable, "-m", "soundscene.cli", "listen", str(tiny_run.model_path), "--stdin",
                            "--rate", str(rate), "--sample-format", "f32le"], input=wave.astype("<f4").tobytes(),
                           capture_output=True, timeout=120)
    assert heard.returncode == 0, heard.stderr.decode()
    from_listen = json.loads(heard.stdout.decode().splitlines()[0])
    payload = scene_payload(from_listen, sensor_id="s1", model={"name": "tiny", "version": "1",
                                                                "classes": clf.classes},
                            window_seconds=clf.window_seconds, hop_seconds=clf.hop_seconds, seq=1,
                            timestamp="2026-11-30T12:00:00.000Z")

    assert from_cli["path"] == str(path) and from_service["path"] == "scene.wav"
    assert {**from_cli, "path": "scene.wav"} == from_service
    assert {k: payload[k] for k in from_listen} == from_listen
    shared = ("label", "confidence", "probabilities", "level_dbfs")
    assert {k: from_listen[k] for k in shared} == {k: from_cli[k] for k in shared}
    assert from_listen["changed"] is True and from_listen["previous"] is None
    assert math.isfinite(from_cli["level_dbfs"]) and list(from_cli["probabilities"]) == clf.classes
    for kind, record in (("prediction", from_cli), ("prediction", from_service), ("decision", from_listen),
                         ("sensor_message", payload)):
        _validator(kind).validate(record)
