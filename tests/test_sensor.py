"""The city sensor's own parts: health reports, systemd notification, the TOML settings file.

Real /proc, real /sys, real datagram sockets; nothing of the OS is replaced.  Where time matters the tests
wait for events (CPU used, a datagram received), never for the clock."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from soundscene.apps.sensor.health import (HealthReporter, InputMonitor, ProcessMonitor, board_temperature,
                                           disk_free, health_record, memory_mb, model_info, process_age,
                                           read_sources)
from soundscene.apps.sensor.notify import Notifier
from soundscene.apps.sensor.settings import (apply_config, config_options, load_sensor_config, options_given,
                                             subparser)
from soundscene.core import records
from soundscene.errors import ConfigError, SoundsceneError, SoundsceneWarning

RATE = 48000
HEALTH_FIELDS = ["sensor_id", "boot", "seq", "timestamp", "interval_seconds", "audio_seconds", "uptime_seconds",
                 "cpu_percent", "memory_mb", "memory_peak_mb", "spool_messages", "spool_bytes", "dropped_messages",
                 "refused_messages", "disk_free_mb", "input_level_dbfs", "clipping_fraction", "dc_offset",
                 "dead_input", "model", "soundscene_version", "temperature_c", "connected", "last_error"]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _sine(amplitude: float, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return np.tile(amplitude * np.sin(2 * np.pi * 997 * t), (channels, 1)).astype(np.float32)


def _pushed(signal: np.ndarray, block: int = 4800) -> InputMonitor:
    monitor = InputMonitor(RATE)
    for start in range(0, signal.shape[1], block):
        monitor.push(signal[:, start:start + block])
    return monitor


# ---- the input signal ------------------------------------------------------------------------------------

def test_a_half_scale_sine_is_minus_9_dbfs_and_healthy():
    monitor = _pushed(_sine(0.5, channels=2))
    assert monitor.seconds == pytest.approx(1.0)
    got = monitor.take()
    assert got["input_level_dbfs"] == pytest.approx(-9.0, abs=0.1)
    assert got["clipping_fraction"] == 0.0 and abs(got["dc_offset"]) < 1e-4 and got["dead_input"] is False
    assert monitor.take() == {"input_level_dbfs": None, "clipping_fraction": None, "dc_offset": None,
                              "dead_input": None}  # take() started a new, empty interval
    assert monitor.seconds == 0.0


def test_a_full_scale_square_is_all_clipped():
    square = np.sign(_sine(1.0)).astype(np.float32)
    square[square == 0] = 1.0
    got = _pushed(square).take()
    assert got["clipping_fraction"] == 1.0 and got["input_level_dbfs"] == pytest.approx(0.0, abs=0.01)
    half_clipped = np.concatenate([square[:, :RATE // 2], 0.5 * square[:, RATE // 2:]], axis=1)
    assert _pushed(half_clipped).take()["clipping_fraction"] == pytest.approx(0.5)


def test_a_constant_input_is_dead_and_its_dc_offset_is_its_value():
    got = _pushed(np.full((1, RATE), 0.25, np.float32)).take()
    assert got["dead_input"] is True and got["dc_offset"] == pytest.approx(0.25)
    assert got["input_level_dbfs"] == pytest.approx(20 * math.log10(0.25), abs=0.01)
    stereo = np.stack([np.full(RATE, 0.1), np.full(RATE, -0.2)]).astype(np.float32)
    assert _pushed(stereo).take()["dead_input"] is True  # each channel constant: a dead input


def test_digital_silence_is_dead_and_its_level_is_null_in_the_record():
    got = _pushed(np.zeros((1, RATE), np.float32)).take()
    assert got["dead_input"] is True and got["dc_offset"] == 0.0 and got["clipping_fraction"] == 0.0
    assert got["input_level_dbfs"] == -math.inf
    record = health_record(_measured(**got), sensor_id="s1", seq=1)
    assert record["input_level_dbfs"] is None


def test_noise_and_one_live_channel_are_not_dead():
    rng = np.random.default_rng(0)
    noise = (1e-4 * rng.standard_normal((1, RATE))).astype(np.float32)
    assert _pushed(noise).take()["dead_input"] is False
    one_dead = np.concatenate([np.zeros((1, RATE), np.float32), noise])
    assert _pushed(one_dead).take()["dead_input"] is False


def test_input_monitor_keeps_no_audio():
    """O(1) memory: an hour of blocks leaves nothing behind but sums and one extreme per channel."""
    monitor = InputMonitor(RATE)
    block = _sine(0.5, seconds=0.1, channels=2)
    for _ in range(36000):
        monitor.push(block)
    held = [v for v in vars(monitor).values() if isinstance(v, np.ndarray)]
    assert all(v.size <= 2 for v in held) and monitor.seconds == pytest.approx(3600.0)
    assert monitor.take()["input_level_dbfs"] == pytest.approx(-9.03, abs=0.01)


# ---- the process and the board ----------------------------------------------------------------------------

def test_cpu_percent_rises_under_a_busy_loop():
    monitor = ProcessMonitor()
    child = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n    pass\n"
    subprocess.run([sys.executable, "-c", child], check=True)  # this process idles while its child works
    idle = monitor.sample()
    start = time.process_time()
    while time.process_time() - start < 0.5:  # until this process has used 0.5 s of CPU
        pass
    busy = monitor.sample()
    assert idle["cpu_percent"] < busy["cpu_percent"] - 10
    assert busy["cpu_percent"] > 20 and busy["interval_seconds"] > 0.45


def test_cpu_percent_is_cpu_time_over_wall_time():
    clock, cpu = Clock(), [10.0]
    monitor = ProcessMonitor(clock=clock, cpu_seconds=lambda: cpu[0])
    clock.now += 4.0
    cpu[0] += 3.0
    assert monitor.sample()["cpu_percent"] == pytest.approx(75.0)
    clock.now += 2.0
    cpu[0] += 4.0  # two threads busy: more than one core
    got = monitor.sample()
    assert got["cpu_percent"] == pytest.approx(200.0) and got["interval_seconds"] == pytest.approx(2.0)
    assert monitor.sample()["cpu_percent"] is None  # no time passed


def test_memory_comes_from_proc_and_follows_an_allocation():
    """In a fresh process (in this one, memory freed by earlier tests may be reused without growing)."""
    code = ("import json, numpy as np\nfrom soundscene.apps.sensor.health import memory_mb\nbefore = memory_mb()\n"
            "block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched\nprint(json.dumps([before, memory_mb()]))")
    (rss, peak), (grown, grown_peak) = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                                                 text=True, check=True).stdout)
    assert 0 < rss <= peak and grown - rss > 48 and grown_peak >= grown
    assert memory_mb(Path("/proc/self/no-such-file")) == (None, None)


def test_uptime_counts_from_the_process_start():
    """A process just started is young; this one (pytest, imports done) is older than its monitor."""
    made = time.monotonic()
    monitor = ProcessMonitor()
    code = "from soundscene.apps.sensor.health import process_age\nprint(process_age())"
    young = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    uptime = monitor.sample()["uptime_seconds"]
    assert 0 <= young < 30 and uptime >= time.monotonic() - made and uptime > young


def test_board_temperature_is_the_hottest_readable_zone(tmp_path):
    for name, text in {"thermal_zone0": "45000\n", "thermal_zone1": "51500\n", "thermal_zone3": "n/a\n"}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "temp").write_text(text)
    (tmp_path / "thermal_zone2" / "temp").mkdir(parents=True)  # cannot be read as a file
    assert board_temperature(tmp_path) == 51.5
    assert board_temperature(tmp_path / "none") is None
    real = board_temperature()
    assert real is None or -40 < real < 150


def test_disk_free_of_a_spool_not_made_yet(tmp_path):
    free = disk_free(tmp_path / "spool" / "not" / "yet")
    assert free == pytest.approx(shutil.disk_usage(tmp_path).free / 2**20, rel=0.05)


# ---- the health record ------------------------------------------------------------------------------------

def _measured(**values) -> dict:
    base = {"interval_seconds": 60.0, "audio_seconds": 60.0, "uptime_seconds": 3600.0, "cpu_percent": 12.34,
            "memory_mb": 100.04, "memory_peak_mb": 120.0, "spool_messages": None, "spool_bytes": None,
            "dropped_messages": None, "refused_messages": None, "disk_free_mb": None, "input_level_dbfs": -30.0,
            "clipping_fraction": 0.0000012, "dc_offset": -0.0000042, "dead_input": False,
            "model": {"name": "cnn", "version": "0.1.0", "sha256": None}, "soundscene_version": "0.1.0",
            "temperature_c": None, "connected": None, "last_error": None}
    return {**base, **values}


def test_the_health_record_and_its_schema_list_every_field():
    schema = records.schema_of("health")
    assert list(schema["properties"]) == HEALTH_FIELDS == [f.name for f in records.FIELDS["health"]]
    assert set(schema["required"]) == set(HEALTH_FIELDS) - {"boot"}
    record = health_record(_measured(), sensor_id="s1", seq=7, boot="b" * 32, timestamp="2026-01-01T00:00:00.000Z")
    Draft202012Validator(schema).validate(record)
    assert list(record) == HEALTH_FIELDS
    assert (record["cpu_percent"], record["memory_mb"], record["clipping_fraction"], record["dc_offset"]) == \
        (12.3, 100.0, 0.000001, -0.000004)
    with pytest.raises(ValueError, match="count"):
        health_record(_measured(dropped_messages=-1), sensor_id="s1", seq=1)


def test_schema_command_knows_the_health_record():
    out = subprocess.run([sys.executable, "-m", "soundscene.cli", "schema", "health"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert list(json.loads(out.stdout)["properties"]) == HEALTH_FIELDS


class Spool:
    """A spool as the reporter sees it: plain attributes and a method."""

    queued, bytes, dropped, problem = 3, 4096, 2, None

    def disk_free(self) -> int:
        return 512 * 2**20


class Publisher:
    """A publisher as the reporter sees it: properties, one of which fails on the OS."""

    queued, dropped, refused, connected, last_error = 9, 1, 5, False, "connection lost"

    @property
    def bytes(self):
        raise OSError("gone")


def test_sources_are_duck_typed_summed_for_counters_first_come_otherwise():
    got = read_sources([Spool(), Publisher()])
    assert got == {"spool_messages": 3, "spool_bytes": 4096, "dropped_messages": 3, "refused_messages": 5,
                   "connected": False, "last_error": "connection lost", "disk_free_bytes": 512 * 2**20}
    assert set(read_sources([object()]).values()) == {None}
    full = Spool()
    full.problem = "cannot write: database or disk is full"
    assert read_sources([full])["last_error"] == full.problem  # a spool's problem is an error too


def test_reporter_makes_a_valid_record_from_audio_process_and_sources(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights")
    model = model_info("cnn", "0.1.0", path)
    assert model["sha256"] == hashlib.sha256(b"weights").hexdigest()
    reporter = HealthReporter("kitchen-1", model, 1.0, Spool(), Publisher(), rate=RATE)
    assert not reporter.due()
    reporter.push(_sine(0.5, seconds=0.5))
    assert not reporter.due()
    reporter.push(_sine(0.5, seconds=0.5))
    assert reporter.due()  # a second of audio
    record = reporter.take(seq=3, boot="a" * 32)
    Draft202012Validator(records.schema_of("health")).validate(record)
    assert record["audio_seconds"] == 1.0 and record["input_level_dbfs"] == pytest.approx(-9.0, abs=0.1)
    assert (record["spool_messages"], record["dropped_messages"], record["disk_free_mb"]) == (3, 3, 512.0)
    assert record["connected"] is False and record["last_error"] == "connection lost"
    assert record["memory_mb"] > 0 and record["model"]["sha256"] == model["sha256"]
    assert not reporter.due()


def test_reporter_is_due_on_the_wall_clock_without_audio(tmp_path):
    clock = Clock()
    reporter = HealthReporter("s1", {"name": "cnn", "version": "1"}, 60.0, rate=RATE, spool_path=tmp_path / "q",
                              clock=clock)
    clock.now += 59.0
    assert not reporter.due()
    clock.now += 1.0
    assert reporter.due()
    record = reporter.take(seq=1)
    assert record["interval_seconds"] == 60.0 and record["audio_seconds"] == 0.0
    assert record["dead_input"] is None and record["input_level_dbfs"] is None  # no input at all
    assert record["disk_free_mb"] > 0 and record["spool_messages"] is None and record["connected"] is None
    assert "boot" not in record and record["timestamp"].endswith("Z")
    with pytest.raises(SoundsceneError, match="positive"):
        HealthReporter("s1", {}, 0)


def test_sensor_modules_load_no_training_or_plotting_stack():
    code = ("import sys, json\nimport soundscene.apps.sensor.health, soundscene.apps.sensor.notify, "
            "soundscene.apps.sensor.settings\nprint(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    heavy = {"torch", "lightning", "sklearn", "matplotlib", "librosa", "numba", "paho"}
    assert not {m.split(".")[0] for m in loaded} & heavy


# ---- systemd notification ------------------------------------------------------------------------------

@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(10)
    yield sock, str(path)
    sock.close()


def test_notifier_sends_ready_watchdog_status_and_stopping(listener):
    sock, path = listener
    clock = Clock()
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}, clock=clock)
    assert notifier.enabled and notifier.watchdog_seconds == 1.0
    assert notifier.ready()
    assert sock.recv(4096) == b"READY=1"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    clock.now += 0.9
    assert not notifier.watchdog()  # within half the watchdog period: not sent
    clock.now += 0.1
    assert notifier.status("listening\nREADY=1")
    assert sock.recv(4096) == b"STATUS=listening\\nREADY=1"  # one line: no forged assignment
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.close()


def test_notifier_reaches_an_abstract_socket():
    name = f"soundscene-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        with Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}) as notifier:
            assert notifier.ready(status="up")
            assert sock.recv(4096) == b"READY=1\nSTATUS=up"
            assert not notifier.watchdog()  # no WATCHDOG_USEC: no watchdog


def test_without_notify_socket_nothing_happens():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        notifier = Notifier.from_environ({})
        assert not notifier.enabled
        assert not any([notifier.ready(), notifier.watchdog(), notifier.status("x"), notifier.stopping()])
        assert notifier.failures == 0


def test_a_watchdog_for_another_process_is_not_ours(listener):
    _, path = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000",
                                      "WATCHDOG_PID": str(os.getpid() + 1)})
    assert notifier.watchdog_seconds is None and not notifier.watchdog()


def test_send_errors_warn_once_then_are_swallowed(tmp_path):
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with pytest.warns(SoundsceneWarning, match="cannot notify systemd"):
        assert not notifier.ready()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not notifier.status("still nobody")
    assert notifier.failures == 2
    with pytest.warns(SoundsceneWarning, match="neither a path nor an abstract socket"):
        assert not Notifier.from_environ({"NOTIFY_SOCKET": "relative/sock"}).enabled


# ---- the settings file ------------------------------------------------------------------------------------

def _cli() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """A command like ``soundscene listen`` with the sensor's options (the model optional: it may come from
    the file)."""
    top = argparse.ArgumentParser(prog="soundscene")
    sub = top.add_subparsers(dest="command")
    li = sub.add_parser("listen")
    li.add_argument("model", type=Path, nargs="?")
    li.add_argument("--config", type=Path)
    li.add_argument("--stdin", action="store_true")
    li.add_argument("--rate", type=int, default=48000)
    li.add_argument("--channels", type=int, default=1)
    li.add_argument("--sample-format", default="s16le", choices=("s16le", "s24le", "s32le", "f32le"))
    li.add_argument("--device")
    li.add_argument("--window", type=float)
    li.add_argument("--level-interval", type=float, default=60.0)
    li.add_argument("--health-interval", type=float, default=60.0)
    li.add_argument("--no-levels", action="store_true")
    li.add_argument("--spool", type=Path)
    li.add_argument("--mqtt-ca", type=Path)
    li.add_argument("--sensor-id")
    li.add_argument("--quiet", action="store_true")
    li.set_defaults(handler=print)
    return top, li


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _configured(argv: list[str], config: Path) -> argparse.Namespace:
    top, li = _cli()
    args = top.parse_args(argv)
    return apply_config(li, args, options_given(top, argv), config)


def test_options_given_are_found_by_parsing_not_by_comparing_with_defaults():
    top, _ = _cli()
    argv = ["listen", "m.onnx", "--rate", "48000", "--level-i=30", "--quiet"]
    assert options_given(top, argv) == {"model", "rate", "level_interval", "quiet"}
    assert options_given(top, ["listen"]) == set()
    assert top.parse_args(["listen"]).rate == 48000  # the parser itself is left as it was


def test_options_given_with_other_kinds_of_argument():
    parser = argparse.ArgumentParser()
    parser.add_argument("inputs", nargs="*", choices=("a", "b"), default=["a"])
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("--tag", action="append")
    parser.add_argument("--colour", action=argparse.BooleanOptionalAction, default=True)
    assert options_given(parser, []) == set()
    assert options_given(parser, ["b", "-vv", "--tag", "x", "--no-colour"]) == {"inputs", "verbose", "tag", "colour"}


def test_the_command_line_wins_and_the_file_fills_the_rest(tmp_path):
    config = _write(tmp_path / "sensor.toml", 'model = "model.onnx"\nrate = 16000\nlevel_interval = 30\n'
                    'quiet = true\nsample_format = "s24le"\nwindow = 2\nsensor_id = "kitchen-1"\n')
    args = _configured(["listen", "--rate", "48000", "--sensor-id", "hall-2"], config)
    assert args.rate == 48000 and args.sensor_id == "hall-2"  # given, even at the default value
    assert args.level_interval == 30.0 and args.quiet is True and args.sample_format == "s24le"
    assert args.window == 2.0 and isinstance(args.window, float)
    assert args.model == tmp_path / "model.onnx" and args.channels == 1 and args.handler is print
    mine = _configured(["listen", "other.onnx", "--no-levels"], config)
    assert mine.model == Path("other.onnx") and mine.no_levels is True
    assert _configured(["listen"], None).rate == 48000  # no file: nothing changes


def test_paths_in_the_file_are_relative_to_its_folder(tmp_path):
    config = _write(tmp_path / "etc" / "sensor.toml",
                    'spool = "spool"\nmqtt_ca = "../certs/ca.pem"\nmodel = "/opt/models/m.onnx"\n')
    args = _configured(["listen"], config)
    assert args.spool == tmp_path / "etc" / "spool"
    assert args.mqtt_ca == tmp_path / "etc" / ".." / "certs" / "ca.pem"
    assert args.model == Path("/opt/models/m.onnx")


@pytest.mark.parametrize("line, message", [
    ('rate = "fast"', "line 2: rate must be a whole number, got 'fast'"),
    ("rate = 1.5", "rate must be a whole number, got 1.5"),
    ("channels = true", "channels must be a whole number, got true"),
    ('stdin = "yes"', "stdin must be true or false, got 'yes'"),
    ('sample_format = "s8"', "sample_format must be one of s16le, s24le, s32le, f32le, got 's8'"),
    ('window = "ten"', "window must be a number, got 'ten'"),
    ("spool = 5", "spool must be a path (a string), got 5"),
    ("[sensor_id]\nhost = 'x'", "sensor_id must be a string, got a table"),
    ("levl_interval = 3", "line 2: unknown key 'levl_interval' (did you mean 'level_interval'?)"),
    ("config = 'other.toml'", "unknown key 'config'"),
])
def test_each_wrong_key_or_value_is_named(tmp_path, line, message):
    _, li = _cli()
    config = _write(tmp_path / "sensor.toml", f"# a sensor\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        load_sensor_config(config, li)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_all_problems_come_together_in_one_error(tmp_path):
    _, li = _cli()
    config = _write(tmp_path / "sensor.toml", 'rate = "fast"\ncolour = "red"\nquiet = 1\nchannels = 2\n')
    with pytest.raises(ConfigError) as caught:
        load_sensor_config(config, li)
    problems = caught.value.problems
    assert len(problems) == 3 and all(p.startswith(f"config file {config}: line ") for p in problems)
    assert [p.split(": ")[1] for p in problems] == ["line 1", "line 2", "line 3"]
    assert str(caught.value).count(";") == 2


def test_a_file_that_is_not_toml_is_one_line_with_its_line(tmp_path):
    _, li = _cli()
    config = _write(tmp_path / "sensor.toml", "rate = 16000\nlevel_interval = \n")
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 2") as caught:
        load_sensor_config(config, li)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="No such file"):
        load_sensor_config(tmp_path / "missing.toml", li)


def test_every_option_of_the_real_listen_command_is_a_key():
    from soundscene.cli import _parser

    listen = subparser(_parser(), "listen")
    keys = config_options(listen)
    longs = {o[2:].replace("-", "_") for a in listen._actions for o in a.option_strings if o.startswith("--")}
    assert set(keys) == (longs - {"help", "config"}) | {"model"}
    assert {"rate", "level_interval", "sample_format", "no_levels", "sensor_id", "quiet"} <= set(keys)


# ---- the sample files in docs/ ------------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"
def test_the_sample_config_uses_only_options_of_listen():
    from soundscene.cli import _parser

    sample = tomllib.loads((DOCS / "sensor.toml").read_text())
    keys = set(config_options(subparser(_parser(), "listen")))
    assert set(sample) <= keys and {"health_interval", "spool", "spool_max_mb"} <= set(sample)


def test_the_service_unit_is_a_watched_notify_service():
    unit = (DOCS / "soundscene-sensor.service").read_text().splitlines()
    for line in ("Type=notify", "Restart=always", "RestartSec=5", "WatchdogSec=60", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "StateDirectory=soundscene", "ReadWritePaths=/var/lib/soundscene",
                 "ExecStart=/opt/soundscene/bin/soundscene listen --config /etc/soundscene/sensor.toml"):
        assert line in unit
    assert any(line.startswith("User=") and line != "User=root" for line in unit)
