"""Helpers of the hub tests: a throwaway PostgreSQL server, sensor messages, and a hub in its own process.

The PostgreSQL server comes from Debian's ``postgresql`` package (``scripts/setup.sh test`` installs it): a
fresh cluster in a temporary folder made with initdb and started with pg_ctl, as the unprivileged
``postgres`` user when the tests run as root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from helpers import free_port, wait_for

CLASSES = ("street_traffic", "park", "metro")


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found and not shutil.which("pg_ctl"):
        pytest.fail("the hub tests need PostgreSQL: apt-get install -y postgresql (scripts/setup.sh test)",
                    pytrace=False)
    return Path(found[-1]).parent if found else Path(shutil.which("pg_ctl")).parent


class Postgres:
    """A PostgreSQL cluster of its own on 127.0.0.1:port; :meth:`database` makes a fresh, empty database."""

    def __init__(self):
        self.bin = _postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="soundscene-pg-"))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data, self.log = self.root / "data", self.root / "log"
        self._count = 0

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self.as_user, *argv], capture_output=True, text=True, timeout=120)
        if done.returncode:
            pytest.fail(f"{argv[0]} failed: {done.stderr[-2000:]}", pytrace=False)

    def start(self) -> "Postgres":
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")
        return self.start_again()

    def start_again(self) -> "Postgres":
        """Start the (initialised) cluster, e.g. after a test stopped it."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")
        return self

    def url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def database(self) -> str:
        import psycopg

        self._count += 1
        name = f"hub{self._count}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


# --- sensor messages ---------------------------------------------------------------------------------------

T0 = 1_780_000_000.0  # a fixed moment (2026-05-28), so that days and hours are known


def iso(t: float) -> str:
    from datetime import datetime, timezone

    from soundscene.apps.mqtt import utc_timestamp

    return utc_timestamp(datetime.fromtimestamp(t, timezone.utc))


def scene(sensor: str, seq: int, label: str | None, *, t: float | None = None, boot: str = "b" * 32,
          hop: float = 1.0, confidence: float = 0.8, level: float | None = -30.0, levels: dict | None = None) -> dict:
    """A sensor_message as a sensor publishes it (built by apps.mqtt.scene_payload), with the boot id."""
    from soundscene.apps.mqtt import scene_payload

    t = T0 + seq * hop if t is None else t
    if label is None:
        decision = {"time": seq * hop, "silent": True, "level_dbfs": level}
    else:
        rest = (1 - confidence) / (len(CLASSES) - 1)
        decision = {"time": seq * hop, "label": label, "confidence": confidence, "level_dbfs": level,
                    "probabilities": {c: confidence if c == label else rest for c in CLASSES}}
    payload = scene_payload(decision, sensor_id=sensor, model={"name": "tiny", "version": "1", "classes": CLASSES},
                            window_seconds=10.0, hop_seconds=hop, seq=seq, timestamp=iso(t))
    payload["boot"] = boot
    if levels is not None:
        payload["levels"] = levels
    return payload


def full_levels(laeq: float | None, *, calibrated: bool = False) -> dict:
    """A ``levels`` object of the levels contract around ``laeq`` (None: digital silence)."""
    def near(offset):
        return None if laeq is None else round(laeq + offset, 1)
    return {"calibrated": calibrated, "reference": "dB SPL" if calibrated else "dBFS", "LAeq": laeq,
            "LAFmax": near(8), "LAFmin": near(-9), "LA10": near(3), "LA50": near(-1), "LA90": near(-6),
            "LCeq": near(4), "bands": {"250": near(-10), "1000": near(-5), "4000": near(-12)}}


def levels_message(sensor: str, seq: int, laeq: float | None, *, start: float, seconds: float = 10.0,
                   boot: str = "b" * 32) -> dict:
    return {"sensor_id": sensor, "boot": boot, "seq": seq, "timestamp": iso(start + seconds), "start": iso(start),
            "end": iso(start + seconds), "levels": full_levels(laeq), "soundscene_version": "test"}


def health_fields(**changes) -> dict:
    """What a sensor measures for its health record (HealthReporter.measure), fixed values."""
    fields = {"interval_seconds": 60.0, "audio_seconds": 59.9, "uptime_seconds": 3600.0, "cpu_percent": 12.5,
              "memory_mb": 180.2, "memory_peak_mb": 190.0, "spool_messages": 0, "spool_bytes": 0,
              "dropped_messages": 0, "refused_messages": 0, "disk_free_mb": 5000.0, "input_level_dbfs": -42.0,
              "clipping_fraction": 0.0, "dc_offset": 0.0001, "dead_input": False,
              "model": {"name": "tiny", "version": "1", "sha256": None}, "soundscene_version": "test",
              "temperature_c": 48.3, "connected": True, "last_error": None}
    return {**fields, **changes}


def health_message(sensor: str, seq: int, *, t: float, boot: str = "b" * 32, **changes) -> dict:
    """A ``health`` record as a sensor publishes it (built by apps.sensor.health.health_record)."""
    from soundscene.apps.sensor.health import health_record

    return health_record(health_fields(**changes), sensor_id=sensor, seq=seq, boot=boot, timestamp=iso(t))


def topic(sensor: str, kind: str = "scene") -> str:
    return f"soundscene/{sensor}/{kind}"


def encoded(payload: dict) -> bytes:
    return json.dumps(payload).encode()


class Publisher:
    """A raw paho client publishing exactly the messages a test gives (replays, out of order, broken ones)."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def send(self, topic_: str, payload, *, retain: bool = False) -> None:
        data = payload if isinstance(payload, (bytes, str)) else encoded(payload)
        self.client.publish(topic_, data, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- a hub in its own process ------------------------------------------------------------------------------

class HubProcess:
    """``soundscene hub`` in a child process (so that a test can SIGKILL it); ``url`` once it serves."""

    def __init__(self, folder: Path, broker_port: int, db: str, *extra: str):
        self.folder, self.port = folder, free_port()
        self.argv = [sys.executable, "-m", "soundscene.cli", "hub", "--mqtt", f"127.0.0.1:{broker_port}",
                     "--db", db, "--port", str(self.port), *extra]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = folder / f"hub-{self.port}.log"

    def launch(self) -> "HubProcess":
        """Start the process without waiting for it to serve (e.g. for one that is to exit)."""
        self.proc = subprocess.Popen(self.argv, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        return self

    def start(self) -> "HubProcess":
        import httpx

        self.launch()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"the hub exited: {self.log.read_text()[-2000:]}")
            try:
                return httpx.get(self.url + "/healthz", timeout=1).json().get("mqtt") == "connected"
            except httpx.HTTPError:
                return False
        wait_for(up, 30, "the hub to serve and connect")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_count(engine, table: str, count: int, timeout: float = 20.0) -> None:
    from sqlalchemy import text

    def enough():
        with engine.connect() as conn:
            return conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() >= count  # noqa: S608 (test)
    wait_for(enough, timeout, f"{count} rows in {table}")


def now_ms() -> float:
    return time.time()
