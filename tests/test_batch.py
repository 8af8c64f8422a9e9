"""soundscene batch: sharded, resumable inference over archives, into a Parquet data set.

The specification: shards stitched together are exactly what ``predict`` computes on the whole file; a run
killed with SIGKILL and run again redoes only the shards that were not done and ends with the output of an
uninterrupted run; a DIR of another model or settings is refused; broken files become rows of ``errors/``
among the good ones (exit 1); Ray and the local engine write identical outputs; a manifest's start times give
absolute times, and a window after midnight lands in the next day's partition.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundscene.apps.batch import Progress, read_table, run_batch
from soundscene.apps.batch.plan import gather, plan_files
from soundscene.apps.batch.shards import ShardWorker, marker_path
from soundscene.core.inference import SceneClassifier
from soundscene.training.synth import synthesize_scene

from helpers import wait_for

SCENES = ("park", "metro", "rain", "street_traffic")


def write_scenes(path: Path, *, rate: int, seconds: float, seed: int, channels: int = 1,
                 subtype: str = "PCM_16") -> Path:
    """A recording whose scene changes every 30 s (so its segments are many): four scenes, in turn."""
    count = int(np.ceil(seconds / 30.0))
    scenes = [synthesize_scene(SCENES[(seed + k) % 4], sample_rate=rate, seconds=30.0, seed=seed + k)
              for k in range(min(4, count))]
    mono = np.concatenate([scenes[k % len(scenes)] for k in range(count)])[: int(rate * seconds)]
    data = np.stack([mono * (1 - 0.2 * c) for c in range(channels)], axis=1)
    sf.write(str(path), data, rate, subtype=subtype)
    return path


def tables(out: Path) -> dict:
    """Every output table as sorted plain rows (what two runs are compared by)."""
    result = {}
    for name in ("windows", "segments", "files", "errors"):
        rows = read_table(out, name).to_pylist()
        result[name] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return result


def cli(*args, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "soundscene.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def long_file(tmp_path_factory) -> Path:
    """25 minutes at 11,025 Hz, stereo: resampled to the model's 8 kHz, mixed to mono, in 5 shards of 5 min
    (the level meter's quarter-second ticks are not whole samples at this rate)."""
    return write_scenes(tmp_path_factory.mktemp("long") / "long.wav", rate=11025, seconds=25 * 60 + 0.37, seed=1,
                        channels=2)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Six 90-s recordings at 8 kHz (18 shards of 30 s)."""
    root = tmp_path_factory.mktemp("archive")
    for k in range(6):
        write_scenes(root / f"rec{k}.wav", rate=8000, seconds=90.0, seed=10 + k)
    return root


def test_shards_stitched_are_predicts_windows(tiny_run, long_file, tmp_path):
    clf = SceneClassifier.from_file(tiny_run.model_path)
    whole = clf.classify_file(long_file)
    out = tmp_path / "out"
    # the shards as a batch worker runs them (here in this process): together, predict's windows to 1e-6
    [entry] = plan_files(gather([long_file]), classifier=clf, shard_minutes=5)
    assert len(entry.shards) == 5 and all(s.first % clf.hop_samples == 0 for s in entry.shards)
    worker = ShardWorker({"model": str(tiny_run.model_path), "shard_minutes": 5}, str(out))
    computed = []
    for shard in entry.shards:
        assert worker(shard.to_dict())["status"] == "ok"
        computed += json.loads(marker_path(out, shard.shard_id).read_text())["windows"]
    assert [(a, b) for a, b, _ in computed] == [(w.start, w.end) for w in whole.windows]
    assert max(np.abs(np.array(p) - w.probabilities).max() for (_, _, p), w in zip(computed, whole.windows)) < 1e-6

    # the command finds every shard done and finishes the file: its tables hold predict's records, rounded alike
    result = run_batch(tiny_run.model_path, [long_file], out, workers=2, shard_minutes=5)
    assert (result.failed, result.shards, result.shards_run) == (0, 5, 0)
    expected = whole.to_record()
    windows = sorted(read_table(out, "windows").to_pylist(), key=lambda r: r["start"])
    assert len(windows) == len(expected["windows"])
    same = 0
    for got, want in zip(windows, expected["windows"]):
        assert (got["start"], got["end"], got["label"], got["silent"]) == \
               (want["start"], want["end"], want["label"], want["silent"])
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1.01e-4)
        levels = {k: got[k] for k in ("LAeq", "LAFmax", "LAFmin", "LA10", "LA50", "LA90", "LCeq")}
        assert levels == pytest.approx({k: want["levels"][k] for k in levels}, abs=0.101)  # rounding's last digit
        assert dict(got["bands"]) == pytest.approx(want["levels"]["bands"], abs=0.101)
        same += levels == {k: want["levels"][k] for k in levels} and dict(got["bands"]) == want["levels"]["bands"]
    assert same >= 0.99 * len(windows)  # the shards' levels are the file's (decoded from the meter's ticks on)
    segments = sorted(read_table(out, "segments").to_pylist(), key=lambda r: r["start"])
    assert [(s["start"], s["end"], s["label"]) for s in segments] == \
           [(s["start"], s["end"], s["label"]) for s in expected["segments"]]
    assert [s["confidence"] for s in segments] == pytest.approx([s["confidence"] for s in expected["segments"]],
                                                                  abs=1.01e-4)
    [row] = read_table(out, "files").to_pylist()
    assert (row["label"], row["status"], row["duration_seconds"], row["windows"]) == \
           (expected["label"], "ok", expected["duration_seconds"], len(expected["windows"]))
    assert row["level_dbfs"] == pytest.approx(expected["level_dbfs"], abs=0.11)
    plan = json.loads(json.dumps(read_table_plan(out), default=str))
    assert [p["shard"] for p in plan] == [0, 1, 2, 3, 4] and plan[0]["duration_seconds"] == pytest.approx(1500.37)


def read_table_plan(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(out / "plan.parquet").to_pylist()


def test_a_run_killed_with_sigkill_resumes_where_it_stopped(tiny_run, archive, tmp_path):
    out, command = tmp_path / "killed", ["batch", tiny_run.model_path, archive, "--workers", "1",
                                         "--shard-minutes", "0.5", "--no-progress"]
    run = subprocess.Popen([sys.executable, "-m", "soundscene.cli", *map(str, command), "--out", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    markers = out / "state" / "shards"
    try:
        wait_for(lambda: markers.is_dir() and len(list(markers.glob("*.json"))) >= 4, 120, "four shards done")
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the run and its worker, as a crash would
        run.wait()
    done = {p.stem for p in markers.glob("*.json")}
    assert 4 <= len(done) < 18, "the kill came after the run had ended"
    written = {p: p.stat().st_mtime_ns for p in (out / "windows").rglob("*.parquet") if p.stem in done}
    assert len(written) == len(done)

    again = cli(*command, "--out", out)
    assert again.returncode == 0, again.stderr
    assert f"resuming: {len(done)} shard(s) done, {18 - len(done)} to do" in again.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["shards_run"], summary["shards_skipped"]) == (18 - len(done), len(done))
    assert {p: p.stat().st_mtime_ns for p in written} == written  # the shards done before were not redone

    clean = cli(*command, "--out", tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr
    assert tables(out) == tables(tmp_path / "clean")
    assert not list(out.rglob(".*.tmp"))


def test_another_model_or_settings_in_the_same_dir_is_refused(tiny_run, archive, tmp_path):
    out = tmp_path / "out"
    first = cli("batch", tiny_run.model_path, archive / "rec0.wav", "--out", out, "--workers", "1",
                "--calibration-db", "120")
    assert first.returncode == 0, first.stderr
    window = read_table(out, "windows").to_pylist()[0]  # calibrated levels: dB SPL
    assert (window["levels_reference"], window["levels_calibrated"]) == ("dB SPL", True) and window["LAeq"] > 60
    again = cli("batch", tiny_run.model_path, archive / "rec0.wav", "--out", out, "--workers", "1", "--hop", "0.5",
                "--shard-minutes", "2")
    assert again.returncode == 2
    [line] = again.stderr.strip().splitlines()
    assert line.startswith("error: ") and "hop_seconds 0.75 -> 0.5" in line and "shard_minutes 10.0 -> 2.0" in line
    assert "calibration_db 120.0 -> none" in line and "Traceback" not in again.stderr
    resumed = cli("batch", tiny_run.model_path, archive / "rec0.wav", "--out", out, "--workers", "1",
                  "--calibration-db", "120")
    assert resumed.returncode == 0 and "resuming: 1 shard(s) done, 0 to do" in resumed.stderr


def test_broken_files_become_error_rows_and_the_others_are_classified(tiny_run, archive, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_scenes(inputs / "good.wav", rate=8000, seconds=40.0, seed=3)
    (inputs / "garbage.wav").write_bytes(b"RIFF" + os.urandom(2000))
    (inputs / "empty.flac").write_bytes(b"")
    write_scenes(inputs / "cut.wav", rate=8000, seconds=30.0, seed=4)
    with open(inputs / "cut.wav", "r+b") as f:  # the header says more than the file holds
        f.truncate(30000)
    write_scenes(inputs / "absurd.wav", rate=8000, seconds=30.0, seed=4)
    with open(inputs / "absurd.wav", "r+b") as f:  # a damaged header: 1 Hz
        f.seek(24)
        f.write((1).to_bytes(4, "little") + (2).to_bytes(4, "little"))
    nan = synthesize_scene("park", sample_rate=8000, seconds=50.0, seed=5).astype(np.float32)
    nan[40 * 8000] = np.nan  # damaged in its second shard: its first shard's windows are kept
    sf.write(str(inputs / "nan.wav"), nan, 8000, subtype="FLOAT")
    run = cli("batch", tiny_run.model_path, inputs, tmp_path / "missing.wav", "--out", tmp_path / "out",
              "--workers", "2", "--shard-minutes", "0.5")
    assert run.returncode == 1
    assert "6 of 7 file(s) failed" in run.stderr and "Traceback" not in run.stderr
    errors = {Path(r["file"]).name: r["reason"] for r in read_table(tmp_path / "out", "errors").to_pylist()}
    assert set(errors) == {"garbage.wav", "empty.flac", "cut.wav", "absurd.wav", "nan.wav", "missing.wav"}
    assert "truncated" in errors["cut.wav"] and "NaN" in errors["nan.wav"] and "empty" in errors["empty.flac"]
    assert "1 Hz" in errors["absurd.wav"]
    for name, reason in errors.items():
        assert f"error: {reason}" in run.stderr and "\n" not in reason, name
    files = {Path(r["file"]).name: r for r in read_table(tmp_path / "out", "files").to_pylist()}
    assert files["good.wav"]["status"] == "ok" and files["good.wav"]["label"] is not None
    assert {files[n]["status"] for n in errors} == {"error"}
    windows = read_table(tmp_path / "out", "windows").to_pylist()
    assert {Path(w["file"]).name for w in windows} == {"good.wav", "nan.wav"}
    assert max(w["end"] for w in windows if w["file"].endswith("nan.wav")) <= 30.0 + 1.5


def test_ray_and_local_engines_write_identical_outputs(tiny_run, archive, tmp_path):
    ray = pytest.importorskip("ray")  # the test extra installs it (CI); a skip only where it cannot be
    inputs = [archive / "rec0.wav", archive / "rec1.wav"]
    local = run_batch(tiny_run.model_path, inputs, tmp_path / "local", workers=2, shard_minutes=0.5)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        remote = run_batch(tiny_run.model_path, inputs, tmp_path / "ray", engine="ray", workers=2, shard_minutes=0.5)
    finally:
        ray.shutdown()
    assert (local.shards_run, remote.shards_run, remote.failed) == (6, 6, 0)
    assert tables(tmp_path / "local") == tables(tmp_path / "ray")


def test_without_ray_the_ray_engine_says_how_to_install_it(tiny_run, archive, tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from soundscene.cli import main; "
            f"sys.exit(main(['batch', {str(tiny_run.model_path)!r}, {str(archive / 'rec0.wav')!r}, '--out', "
            f"{str(tmp_path / 'out')!r}, '--engine', 'ray']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip() == "error: the ray engine needs Ray: pip install 'soundscene[ray]'"


def test_a_manifest_gives_absolute_times_and_dates_across_midnight(tiny_run, tmp_path):
    write_scenes(tmp_path / "a.wav", rate=8000, seconds=90.0, seed=6)
    write_scenes(tmp_path / "b.wav", rate=8000, seconds=30.0, seed=7)
    write_scenes(tmp_path / "c.wav", rate=8000, seconds=20.0, seed=8)
    (tmp_path / "m.csv").write_text("path,sensor_id,start_time\n"
                                    "a.wav,north/../1,2026-03-01T23:59:00+01:00\n"  # 22:59 UTC: no midnight
                                    "b.wav,south,2026-03-01T23:59:45Z\n"
                                    "c.wav,south,\n")  # consecutive: starts when b ends, 00:00:15
    result = run_batch(tiny_run.model_path, [tmp_path / "m.csv"], tmp_path / "out", workers=1)
    assert result.failed == 0
    windows = read_table(tmp_path / "out", "windows").to_pylist()
    south = sorted((w for w in windows if w["sensor_id"] == "south"), key=lambda w: w["start_time"])
    for w in south:  # each window is in the partition of the UTC day it starts in
        assert w["date"] == w["start_time"].date().isoformat()
        assert (w["end_time"] - w["start_time"]).total_seconds() == 1.5
    assert {w["date"] for w in south} == {"2026-03-01", "2026-03-02"}
    first_after = next(w for w in south if w["date"] == "2026-03-02")
    assert first_after["start_time"].isoformat() == "2026-03-02T00:00:00+00:00"  # 15 s in: midnight exactly
    c = [w for w in south if w["file"].endswith("c.wav")]
    assert c[0]["start_time"].isoformat() == "2026-03-02T00:00:15+00:00"
    north = {w["date"] for w in windows if w["sensor_id"] == "north/../1"}
    assert north == {"2026-03-01"}
    assert (tmp_path / "out" / "windows" / "sensor_id=north%2F..%2F1").is_dir()  # a name, never a path
    files = {r["file"]: r for r in read_table(tmp_path / "out", "files").to_pylist()}
    assert files["c.wav"]["start_time"].isoformat() == "2026-03-02T00:00:15+00:00"


def test_progress_says_hours_rate_and_time_left():
    stream = io.StringIO()
    progress = Progress(stream=stream, every_seconds=0.0, bar=False)
    progress.begin(7200.0)
    time.sleep(0.01)
    progress.advance(1800.0)
    line = stream.getvalue().strip()
    assert line.startswith("batch: 0.50 of 2.00 h of audio (25%), ") and "x real time, " in line \
        and line.endswith(" left")


def test_the_batch_path_loads_no_ray_until_asked():
    code = ("import sys, contextlib, io\nfrom soundscene.cli import main\nimport soundscene.apps.batch\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    try:\n        main(['batch', '--help'])\n"
            "    except SystemExit:\n        pass\nprint('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("input_rate,rate", [(48000, 22050), (44100, 16000), (12000, 8000), (8000, 8000)])
def test_span_bounds_sit_on_the_resamplers_grid(input_rate, rate):
    from soundscene.core.audio import StreamResampler
    from soundscene.core.timeline import resampled_length, span_bounds

    for first in (0, 17, rate * 60 + 5):
        origin, frame = span_bounds(first, input_rate=input_rate, rate=rate, preroll=rate // 4)
        assert origin <= max(0, first - rate // 4) and frame * rate == origin * input_rate
    x = np.random.default_rng(0).standard_normal((1, 12345)).astype(np.float32)
    stream = StreamResampler(input_rate, rate, 1)
    made = stream.push(x).shape[-1] + stream.finish().shape[-1]
    assert made == resampled_length(12345, input_rate=input_rate, rate=rate)


def test_the_estimate_counts_the_workers_start_up():
    """A short batch is mostly the workers' start-up (torch, the model; Ray's runtime): the estimate says so."""
    from types import SimpleNamespace

    from soundscene.apps.batch.run import WORKER_STARTUP_SECONDS, _plan_lines

    shard = SimpleNamespace(seconds=110.0)
    lines = _plan_lines([SimpleNamespace(problem=None)], [shard], [shard], 110 / 3600, 1, 110.0,
                        WORKER_STARTUP_SECONDS["ray"])
    assert lines[-1] == "estimated time: about 21 s on 1 worker(s) (20 s to start them, then 110x real time each)"
    assert "estimated" not in " ".join(_plan_lines([], [shard], [], 0.0, 1, 110.0, 5.0))  # nothing left to do
