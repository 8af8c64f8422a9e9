"""The sensor as it is deployed: a virtual environment made with ``pip install ".[sensor]"``, an exported model,
real processes, a real Mosquitto, and a sensor killed with SIGKILL while the broker is down.

The environment is built once per session (about 20 s with pip's cache); everything here runs the sensor from
it, never from the test environment, so a torch import anywhere on the sensor's path fails these tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import SHARED, wait_for

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
CLASSES = ["street_traffic", "park", "metro"]
HEAVY = ("torch", "lightning", "sklearn", "matplotlib", "librosa", "numba", "safetensors", "onnx")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def sensor_env(tmp_path_factory) -> Path:
    """A fresh venv with only soundscene[sensor] in it (from this checkout)."""
    venv = tmp_path_factory.mktemp("sensor") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run([str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", f"{ROOT}[sensor]"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """A small random model file at 16 kHz with 2-s windows, and its export (verified by export_onnx)."""
    import torch

    from soundscene.apps.export import export_onnx
    from soundscene.config import Config
    from soundscene.core.modelfile import save_model_file
    from soundscene.core.models import build_model

    folder = tmp_path_factory.mktemp("exported")
    config = Config.from_dict({"audio": {"sample_rate": RATE, "clip_seconds": 2.0, "min_seconds": 0.5},
                               "features": {"n_mels": 32, "patch_frames": 32, "patch_hop_frames": 16},
                               "model": {"params": {"widths": [8, 16, 32]}}})
    torch.manual_seed(0)
    net = build_model(config, n_classes=len(CLASSES)).eval()
    model = save_model_file(folder / "model.safetensors", net, config, CLASSES)
    clip = np.random.default_rng(0).standard_normal(RATE * 2).astype(np.float32) * 0.1
    export_onnx(model, folder / "model.onnx", verify_with=[clip])
    return model, folder / "model.onnx"


def scene_pcm(seconds: float, *, rate: int = 48000, seed: int = 0) -> bytes:
    """48-kHz stereo s16le: real TUT clips when ../shared has them, else noise with tones that change."""
    clips = sorted((SHARED / "tut2018-samples" / "audio").glob("*.wav"))
    n = int(seconds * rate)
    if clips:
        import soundfile as sf

        audio = np.concatenate([sf.read(str(c), dtype="int16")[0] for c in clips[:3]])
        return np.ascontiguousarray(np.resize(audio, (n, 2)), dtype="<i2").tobytes()
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    mono = 0.1 * rng.standard_normal(n) + 0.2 * np.sin(2 * np.pi * (200 + 300 * (t // 3 % 3)) * t)
    return (np.stack([mono, 0.8 * mono], 1) * 32767).astype("<i2").tobytes()


def sensor(venv: Path, *args: str, **kwargs) -> subprocess.Popen:
    """``soundscene ARGS`` from the sensor environment, reading raw PCM on stdin."""
    return subprocess.Popen([str(venv / "bin/soundscene"), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kwargs)


def test_the_sensor_environment_holds_no_training_stack(sensor_env):
    code = ("import importlib.util, json; print(json.dumps([m for m in %r if importlib.util.find_spec(m)]))"
            % (HEAVY,))
    out = subprocess.run([str(sensor_env / "bin/python"), "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
    size = sum(f.stat().st_size for f in sensor_env.rglob("*") if f.is_file() and not f.is_symlink())
    print(f"sensor environment: {size / 2**20:.0f} MB")


def test_listen_on_the_export_in_the_sensor_environment_decides_as_torch_does(sensor_env, exported):
    """The same 48-kHz stereo PCM through `listen MODEL.onnx` (sensor venv) and `listen MODEL.safetensors`
    (this environment): identical labels and levels, probabilities within 1e-3."""
    model, onnx_model = exported
    pcm = scene_pcm(12.0)
    argv = ["listen", "--stdin", "--rate", "48000", "--channels", "2", "--hop", "0.5"]
    onnx_run = subprocess.run([str(sensor_env / "bin/soundscene"), argv[0], str(onnx_model), *argv[1:]], input=pcm,
                              capture_output=True, timeout=300)
    torch_run = subprocess.run([str(Path(sys.executable).parent / "soundscene"), argv[0], str(model), *argv[1:]], input=pcm,
                               capture_output=True, timeout=300)
    assert onnx_run.returncode == 0 and torch_run.returncode == 0, (onnx_run.stderr, torch_run.stderr)
    got = [json.loads(line) for line in onnx_run.stdout.splitlines()]
    want = [json.loads(line) for line in torch_run.stdout.splitlines()]
    assert len(got) == len(want) > 15
    for a, b in zip(got, want):
        assert (a["time"], a["label"], a["changed"], a["levels"]) == (b["time"], b["label"], b["changed"], b["levels"])
        assert max(abs(a["probabilities"][c] - b["probabilities"][c]) for c in CLASSES) <= 1e-3


def test_a_model_file_or_a_foreign_file_is_one_line_in_the_sensor_environment(sensor_env, exported, tmp_path):
    model, onnx_model = exported
    damaged = tmp_path / "damaged.onnx"
    data = bytearray(onnx_model.read_bytes())
    data[-100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    for path, words in ((model, "pip install 'soundscene[train]'"), (damaged, "damaged")):
        run = subprocess.run([str(sensor_env / "bin/soundscene"), "listen", str(path), "--stdin"], input="",
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and words in run.stderr
        assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr


# -- a sensor on a pole: TLS, a password, an ACL, a spool, and a power cut while the broker is away ----------------

def spooled(folder: Path) -> list[tuple[str, dict]]:
    """(topic, payload) of every message in a spool, oldest first (read from a copy: the file is left alone)."""
    import shutil
    import sqlite3

    copy = folder.parent / (folder.name + "-copy")
    shutil.rmtree(copy, ignore_errors=True)  # a -wal file of an older copy would be read as this one's
    shutil.copytree(folder, copy)
    with sqlite3.connect(copy / "spool.db") as db:
        rows = db.execute("SELECT topic, payload FROM messages ORDER BY id").fetchall()
    return [(topic, json.loads(payload)) for topic, payload in rows]


def test_a_sensor_killed_while_the_broker_is_away_delivers_its_spool_after_restart(
        sensor_env, exported, broker_factory, certificates, subscribers, tmp_path):
    from helpers import SENSOR_ACL

    _, model = exported
    broker = broker_factory(users={"pole-1": "pole-secret", "hub": "hub-secret"}, certificates=certificates,
                            acl=SENSOR_ACL)
    (tmp_path / "password").write_text("pole-secret\n")
    spool = tmp_path / "spool"
    argv = ["listen", str(model), "--stdin", "--rate", "48000", "--channels", "2", "--hop", "0.5",
            "--level-interval", "2", "--health-interval", "2", "--sensor-id", "pole-1", "--spool", str(spool),
            "--mqtt", f"mqtts://127.0.0.1:{broker.tls_port}", "--mqtt-ca", str(certificates.ca),
            "--mqtt-user", "pole-1", "--mqtt-password-file", str(tmp_path / "password"), "--quiet"]

    first = sensor(sensor_env, *argv)  # the broker is down: everything goes to the spool
    first.stdin.write(scene_pcm(12.0))
    first.stdin.flush()
    wait_for(lambda: len(spooled(spool)) >= 30, 120, "30 spooled messages")
    first.send_signal(signal.SIGKILL)  # a power cut: no goodbye, no flush
    first.wait(timeout=30)
    kept = spooled(spool)
    assert {topic.rsplit("/", 1)[1] for topic, _ in kept} >= {"scene", "levels", "health"}

    broker.start()
    hub = subscribers(broker.tls_port, "pole-1", ca=certificates.ca, username="hub", password="hub-secret")
    second = sensor(sensor_env, *argv)
    second.stdin.write(scene_pcm(3.0, seed=1))
    second.stdin.flush()
    boot = kept[0][1]["boot"]
    want = [(topic, payload["seq"]) for topic, payload in kept]

    def of_first_boot() -> list[tuple[str, dict]]:
        return [(t, json.loads(p)) for t, p, _ in list(hub.messages)
                if not t.endswith("/status") and json.loads(p)["boot"] == boot]

    wait_for(lambda: len(of_first_boot()) >= len(want), 120, f"the {len(want)} spooled messages at the hub")
    second.stdin.close()
    assert second.wait(timeout=60) == 0, second.stderr.read()
    assert [(t, p["seq"]) for t, p in of_first_boot()] == want  # each once, in order, with its boot and seq
    assert [p["timestamp"] for _, p in of_first_boot()] == [p["timestamp"] for _, p in kept]
    assert spooled(spool) == [], "acknowledged messages leave the spool"


def test_the_sensor_tells_systemd_it_is_ready_and_alive(sensor_env, exported, tmp_path):
    """NOTIFY_SOCKET as systemd sets it for Type=notify with WatchdogSec: READY=1 once audio flows, WATCHDOG=1
    while it does, STOPPING=1 when the input ends; received on a real datagram socket."""
    import socket

    _, model = exported
    address = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(address)
    server.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
    proc = sensor(sensor_env, "listen", str(model), "--stdin", "--rate", "48000", "--channels", "2", "--quiet",
                  env=env)
    heard: list[str] = []
    try:
        proc.stdin.write(scene_pcm(4.0))
        proc.stdin.flush()
        while not any("WATCHDOG=1" in m for m in heard):
            heard.append(server.recv(4096).decode())
        proc.stdin.close()
        while not any("STOPPING=1" in m for m in heard):
            heard.append(server.recv(4096).decode())
        assert proc.wait(timeout=60) == 0
    finally:
        server.close()
        if proc.poll() is None:
            proc.kill()
    assert "READY=1" in heard[0]


def test_sensor_check_names_each_part_and_the_brokers_reason(sensor_env, exported, broker_factory, certificates,
                                                             tmp_path):
    from helpers import SENSOR_ACL

    _, model = exported
    broker = broker_factory(users={"pole-2": "right"}, certificates=certificates, acl=SENSOR_ACL).start()
    config = tmp_path / "sensor.toml"
    config.write_text(f'model = "{model}"\nstdin = true\nrate = 48000\nchannels = 2\nsensor_id = "pole-2"\n'
                      f'spool = "spool"\nmqtt = "mqtts://127.0.0.1:{broker.tls_port}"\nmqtt_ca = "{certificates.ca}"\n'
                      f'mqtt_user = "pole-2"\nmqtt_password_file = "password"\n')
    (tmp_path / "password").write_text("right\n")
    check = [str(sensor_env / "bin/soundscene"), "sensor-check", "--config", str(config)]
    good = subprocess.run(check, input=scene_pcm(3.0), capture_output=True, timeout=120)
    lines = good.stdout.decode().splitlines()
    assert good.returncode == 0, (lines, good.stderr)
    assert [line.split()[:2] for line in lines] == [["ok", "model:"], ["ok", "input:"], ["ok", "spool:"],
                                                     ["ok", "broker:"]]
    (tmp_path / "password").write_text("wrong\n")
    bad = subprocess.run(check, input=scene_pcm(3.0), capture_output=True, timeout=120)
    lines = bad.stdout.decode().splitlines()
    assert bad.returncode == 1 and lines[-1].startswith("FAIL  broker:") and "Not authorized" in lines[-1], lines
    dead = subprocess.run(check, input=bytes(48000 * 4 * 3), capture_output=True, timeout=120)
    assert dead.stdout.decode().splitlines()[1].startswith("FAIL  input:") and b"dead input" in dead.stdout
