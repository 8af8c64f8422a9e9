"""Plain helpers shared by the tests: constants, audio writers and data set builders (no fixtures here).

Fixtures live in conftest.py and are built from these.  Everything is small
(8 kHz, 1.5-s clips, narrow network, few epochs) so the whole suite runs in a
few minutes on two CPU cores.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import numpy as np
import soundfile as sf

# The real recordings (../shared/data next to the checkout); may be absent, e.g. on CI.
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

TINY_CLASSES = ("street_traffic", "park", "metro", "rain")

TINY = {
    "audio": {"sample_rate": 8000, "clip_seconds": 1.5, "min_seconds": 0.2},
    "features": {"n_mels": 32, "patch_frames": 32, "patch_hop_frames": 16},
    "model": {"params": {"widths": [8, 16, 32]}},
    "train": {"epochs": 4, "batch_size": 32, "val_fraction": 0.25},
}


# --- audio files and small data sets ----------------------------------------------------------------------------

def write_tone(path: Path, *, sample_rate: int = 16000, seconds: float = 1.0, channels: int = 1,
               subtype: str = "PCM_16", frequency: float = 440.0) -> np.ndarray:
    """Write a sine (different phase per channel) and return the float64 samples written, (frames, channels)."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    data = np.stack([0.5 * np.sin(2 * np.pi * frequency * t + k) for k in range(channels)], axis=1)
    sf.write(str(path), data, sample_rate, subtype=subtype)
    return data


def two_class_folder(root: Path, per_class: int = 4) -> Path:
    """A class-per-folder data set: park/ and street/ with per_class 1.5-s tones at 8 kHz."""
    for label in ("park", "street"):
        (root / label).mkdir(parents=True)
        for k in range(per_class):
            write_tone(root / label / f"{k}.wav", sample_rate=8000, seconds=1.5, frequency=200 + 300 * k)
    return root


def write_labels_csv(path: Path, rows, header=("path", "label", "fold", "group")) -> Path:
    """A labels CSV with the given header and rows."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def in_memory(items, config, classes, **kwargs):
    """Features of items computed in memory by the one feature-set builder (no cache): (FeatureSet, skipped)."""
    from soundscene.training.cache import feature_sets

    sets, skipped = feature_sets({"all": items}, config, classes, use_cache=False, progress=False, **kwargs)
    return sets["all"], skipped


# --- miniature copies of the public data sets' exact layouts -----------------------------------------------------
# Real file names, separators and columns, with a few short generated WAVs.

TAU_SCENES = ("airport", "metro", "park")


def _clip(path: Path, scene: str, seed: int, *, sample_rate: int, seconds: float, channels: int, subtype: str):
    from soundscene.training.synth import synthesize_scene

    path.parent.mkdir(parents=True, exist_ok=True)
    mono = synthesize_scene({"airport": "cafe", "metro": "metro", "park": "park"}.get(scene, scene),
                            sample_rate=sample_rate, seconds=seconds, seed=seed, difficulty=0.1)
    data = np.stack([mono * (0.9 + 0.1 * k) for k in range(channels)], axis=1)
    sf.write(str(path), data, sample_rate, subtype=subtype)


def _tsv(path: Path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def make_tau(root: Path, *, mobile: bool = False, segments: int = 2, seconds: float = 1.0) -> Path:
    """TAU Urban Acoustic Scenes 2019 (or 2020 Mobile) development layout.

    Cities barcelona (train) and helsinki (evaluate) x 2 locations x `segments`
    segments x 3 scenes; 48 kHz 24-bit stereo like the real files (2020: devices
    a, b, s1 as copies of each segment, mono like the real 2020 set).
    """
    devices = ("a", "b", "s1") if mobile else ("a",)
    meta, train, evaluate, test = [], [], [], []
    seed = 0
    for scene in TAU_SCENES:
        for city in ("barcelona", "helsinki"):
            for loc in (0, 1):
                for seg in range(segments):
                    seed += 1
                    for dev in devices:
                        name = f"audio/{scene}-{city}-{loc}-{seg}-{dev}.wav"
                        _clip(root / name, scene, seed, sample_rate=48000 if not mobile else 44100,
                              seconds=seconds, channels=1 if mobile else 2, subtype="PCM_24")
                        meta.append([name, scene, f"{city}-{loc}", dev])
                        (train if city == "barcelona" else evaluate).append([name, scene])
                        if city == "helsinki":
                            test.append([name])
    _tsv(root / "meta.csv", ["filename", "scene_label", "identifier", "source_label"], meta)
    _tsv(root / "evaluation_setup" / "fold1_train.csv", ["filename", "scene_label"], train)
    _tsv(root / "evaluation_setup" / "fold1_evaluate.csv", ["filename", "scene_label"], evaluate)
    _tsv(root / "evaluation_setup" / "fold1_test.csv", ["filename"], test)
    return root


US8K_FORMATS = [  # (sample rate, channels, subtype): UrbanSound8K mixes them
    (44100, 2, "PCM_16"), (48000, 1, "PCM_24"), (22050, 1, "PCM_U8"), (96000, 2, "FLOAT"), (16000, 1, "PCM_16"),
    (11025, 2, "PCM_16"), (32000, 1, "PCM_32"), (44100, 1, "PCM_24"), (8000, 1, "PCM_16"), (24000, 2, "PCM_16"),
]


def make_urbansound8k(root: Path) -> Path:
    """UrbanSound8K layout: metadata/UrbanSound8K.csv and audio/fold1..fold10, 2 classes, mixed formats."""
    classes = [(3, "dog_bark"), (7, "jackhammer")]
    rows = []
    for fold in range(1, 11):
        rate, channels, subtype = US8K_FORMATS[fold - 1]
        for class_id, name in classes:
            fs_id = 1000 + fold * 10 + class_id
            for take in range(2):
                fname = f"{fs_id}-{class_id}-0-{take}.wav"
                scene = "street_traffic" if class_id == 3 else "metro"
                _clip(root / "audio" / f"fold{fold}" / fname, scene, fs_id * 7 + take, sample_rate=rate,
                      seconds=0.6 + 0.2 * take, channels=channels, subtype=subtype)
                rows.append([fname, fs_id, 0.0, 1.0, 1, fold, class_id, name])
    path = root / "metadata" / "UrbanSound8K.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        w.writerows(rows)
    return root


def make_esc50(root: Path) -> Path:
    """ESC-50 layout: meta/esc50.csv and audio/; 3 categories (2 in ESC-10), 5 folds, 2 takes per source."""
    categories = [(0, "dog", True), (10, "rain", True), (19, "thunderstorm", False)]
    rows = []
    for fold in range(1, 6):
        for target, category, esc10 in categories:
            src = 100000 + fold * 100 + target
            for take in "AB":
                fname = f"{fold}-{src}-{take}-{target}.wav"
                _clip(root / "audio" / fname, {"dog": "park", "rain": "rain"}.get(category, "street_traffic"),
                      src + ord(take), sample_rate=44100, seconds=0.5, channels=1, subtype="PCM_16")
                rows.append([fname, fold, target, category, str(esc10), src, take])
    path = root / "meta" / "esc50.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return root


# --- a real MQTT broker (Debian's mosquitto) and a subscriber ----------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")



class Broker:
    """A mosquitto process on 127.0.0.1:port; start() waits until the port accepts, stop() kills it."""

    def __init__(self, folder: Path, port: int, users: dict[str, str] | None = None):
        self.port, self.folder, self.proc = port, folder, None
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.access(binary, os.X_OK):
            pytest.fail("the MQTT tests need the mosquitto broker: apt-get install -y mosquitto", pytrace=False)
        self.binary = binary
        auth = "allow_anonymous true\n"
        if users:  # mosquitto_passwd comes with the mosquitto package
            passwords = folder / "passwords"
            for k, (user, password) in enumerate(users.items()):
                subprocess.run(["mosquitto_passwd", "-b"] + (["-c"] if k == 0 else []) +
                               [str(passwords), user, password], check=True, capture_output=True, timeout=30)
            auth = f"allow_anonymous false\npassword_file {passwords}\n"
            if os.geteuid() == 0:  # else it drops to user mosquitto, who cannot read pytest's tmp_path
                auth += "user root\n"
        self.config = folder / "mosquitto.conf"
        self.config.write_text(f"listener {port} 127.0.0.1\n{auth}persistence false\nlog_dest stderr\n")
        self.log = folder / "mosquitto.log"

    def start(self) -> "Broker":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mosquitto exited at start: {self.log.read_text()[-2000:]}", pytrace=False)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        pytest.fail(f"mosquitto did not accept connections on port {self.port} within 10 s", pytrace=False)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None



class Subscriber:
    """A paho client on soundscene/<sensor>/#, recording (topic, payload, retain) in arrival order."""

    def __init__(self, port: int, sensor_id: str):
        self.messages: list[tuple[str, str, bool]] = []
        self.sensor_id = sensor_id
        self._subscribed = threading.Event()
        import paho.mqtt.client as mqtt

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{time.monotonic_ns()}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"soundscene/{sensor_id}/#", qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload.decode(), m.retain))
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscriber did not subscribe within 10 s"

    def on(self, kind: str) -> list[tuple[str, bool]]:
        return [(payload, retain) for topic, payload, retain in list(self.messages) if topic.endswith("/" + kind)]

    def json(self, kind: str) -> list[dict]:
        return [json.loads(payload) for payload, _ in self.on(kind)]

    def wait(self, kind: str, count: int, timeout: float = 10.0) -> list:
        wait_for(lambda: len(self.on(kind)) >= count, timeout, f"{count} message(s) on {kind}: {self.messages}")
        return self.on(kind)

    def mark(self, timeout: float = 10.0) -> None:
        """Publish a marker to soundscene/<sensor>/marker and wait until it comes back.

        The broker sends a client its messages in order, so whatever it had for this subscriber before the
        marker (the retained messages sent at subscription, say) has arrived by then."""
        token = f"marker-{time.monotonic_ns()}"
        self.client.publish(f"soundscene/{self.sensor_id}/marker", token, qos=1)
        wait_for(lambda: token in [p for p, _ in self.on("marker")], timeout, "the marker")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()




# --- the command line in a fresh, memory-capped process ----------------------------------------------------------

_MANY = """
import contextlib, io, json, sys
from soundscene.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        code = main(argv)
    out.append({"code": code, "stderr": err.getvalue(), "stdout": std.getvalue()})
print(json.dumps(out))
"""


def run_cli_capped(commands: list[list], *, timeout: float = 240) -> list[dict]:
    """Run each command line (``soundscene.cli.main(argv)``) in ONE fresh process whose address space is capped
    at 4 GiB, so that a missing bound fails the test (MemoryError) instead of exhausting the machine, and the
    interpreter starts once.  Returns ``{"code", "stderr", "stdout"}`` per command."""
    import resource
    import sys

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    argvs = json.dumps([[str(a) for a in argv] for argv in commands])
    result = subprocess.run([sys.executable, "-c", _MANY, argvs], capture_output=True, text=True, timeout=timeout,
                            preexec_fn=cap)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
