"""``soundscene sensor-check``: before a sensor goes up the pole, check each of its parts, one line each.

* **model**: the file loads and verifies (an export's digest), and what it is;
* **input**: a few seconds of the microphone (or of stdin) are read: level, clipping, DC offset, dead input;
* **spool**: the folder opens as a spool: messages waiting, bytes, free disk;
* **broker**: the login is accepted (TLS, certificate, user name and password), and a QoS 1 message to
  ``soundscene/<id>/check`` is acknowledged without a refusal (the broker's ACL lets this sensor write under
  its topics; nothing subscribes to ``check``).

Each check gives a :class:`Line`: ``ok`` and one line of text starting with ``ok``, ``FAIL`` or ``skip``.
A check that fails does not stop the others.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ...core.records import printable
from ...errors import SoundsceneError
from ..broker import BrokerSettings, closed_early_text, connect_failure, make_client, refusal_text
from .health import InputMonitor

CONNECT_TIMEOUT = 15.0  # seconds for the broker's CONNACK and PUBACK


@dataclass(frozen=True)
class Line:
    ok: bool
    text: str


def _ok(part: str, text: str) -> Line:
    return Line(True, f"ok    {part}: {text}")


def _fail(part: str, text: str) -> Line:
    return Line(False, f"FAIL  {part}: {text}")


def _skip(part: str, text: str) -> Line:
    return Line(True, f"skip  {part}: {text}")


def check_sensor(*, load_model: Callable[[], object], blocks: Callable[[], Iterable[np.ndarray]] | None, rate: int,
                 seconds: float, spool: Path | None, spool_max_mb: float, broker: BrokerSettings | None,
                 sensor_id: str | None) -> Iterator[Line]:
    """The checks in order: model, input, spool, broker."""
    yield check_model(load_model)
    yield check_input(blocks, rate=rate, seconds=seconds)
    yield check_spool(spool, spool_max_mb)
    yield check_broker(broker, sensor_id)


def check_model(load_model: Callable[[], object]) -> Line:
    try:
        clf = load_model()
    except SoundsceneError as exc:
        return _fail("model", str(exc))
    kind = "export (ONNX Runtime)" if getattr(clf, "exported", False) else "model file (torch)"
    return _ok("model", f"{printable(clf.path)}: {kind}, {clf.config.model.name}, {len(clf.classes)} classes at "
                        f"{clf.sample_rate} Hz, sha256 {(clf.sha256 or '?')[:16]}...")


def check_input(blocks: Callable[[], Iterable[np.ndarray]] | None, *, rate: int, seconds: float) -> Line:
    if blocks is None:
        return _skip("input", "stdin is a terminal: pipe the sensor's PCM in to measure it")
    monitor = InputMonitor(rate)
    try:
        for block in blocks():
            monitor.push(block)
            if (monitor.seconds or 0.0) >= seconds:
                break
    except SoundsceneError as exc:
        return _fail("input", str(exc))
    heard = monitor.seconds or 0.0
    stats = monitor.take()
    if stats is None or heard < seconds:
        return _fail("input", f"only {heard:.2f} s of audio arrived (wanted {seconds:g} s)")
    text = (f"{heard:.1f} s at {rate} Hz, level {_db(stats['input_level_dbfs'])} dBFS, clipping "
            f"{stats['clipping_fraction'] * 100:.3f} %, DC offset {stats['dc_offset']:+.4f}")
    if stats["dead_input"]:
        return _fail("input", f"{text}: a dead input (digital silence or a constant signal)")
    return _ok("input", text)


def _db(value: float | None) -> str:
    return "-inf" if value is None else f"{value:.1f}"


def check_spool(folder: Path | None, max_mb: float) -> Line:
    if folder is None:
        return _skip("spool", "no --spool: messages wait in memory while the broker is away (lost at a power cut)")
    from ..spool import Spool

    try:
        spool = Spool(folder, max_bytes=int(max_mb * 2**20))
    except SoundsceneError as exc:
        return _fail("spool", str(exc))
    try:
        free = spool.disk_free
        text = (f"{printable(spool.path)}: {spool.undelivered} message(s) waiting, {spool.bytes} bytes, "
                f"{'?' if free is None else f'{free / 2**20:.0f} MB'} free on its disk")
        if spool.problem:
            return _fail("spool", f"{text}; {spool.problem}")
        if free is not None and free < max_mb * 2**20:
            return _fail("spool", f"{text}: less free than --spool-max-mb {max_mb:g} MB")
        return _ok("spool", text)
    finally:
        spool.close()


def check_broker(settings: BrokerSettings | None, sensor_id: str | None) -> Line:
    if settings is None:
        return _skip("broker", "no --mqtt: decisions are printed only")
    if not sensor_id:
        return _fail("broker", "--mqtt needs --sensor-id ID")
    try:
        client = make_client(settings, client_id=f"soundscene-check-{uuid.uuid4().hex[:8]}")
    except SoundsceneError as exc:
        return _fail("broker", str(exc))
    result = _Exchange(client)
    try:
        client.connect_async(settings.host, settings.port, keepalive=30)
        client.loop_start()
        return result.run(settings, f"soundscene/{sensor_id}/check")
    except (OSError, ValueError) as exc:
        return _fail("broker", f"{settings}: {exc}")
    finally:
        client.disconnect()
        client.loop_stop()


class _Exchange:
    """A CONNACK, then the PUBACK of one QoS 1 message, waited on with events."""

    def __init__(self, client):
        self.client = client
        self.connack, self.puback, self.closed = threading.Event(), threading.Event(), threading.Event()
        self.refused: str | None = None
        self.unreachable = False
        self.publish_reason = None
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_disconnect = lambda *_a: self.closed.set()
        client.on_connect_fail = self._on_connect_fail

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            self.refused = refusal_text(reason_code)
        self.connack.set()

    def _on_connect_fail(self, *_args) -> None:
        self.unreachable = True
        self.closed.set()

    def _on_publish(self, _client, _userdata, _mid, reason_code, _properties) -> None:
        self.publish_reason = reason_code
        self.puback.set()

    def run(self, settings: BrokerSettings, topic: str) -> Line:
        if not _first(self.connack, self.closed, CONNECT_TIMEOUT) or not self.connack.is_set():
            why = connect_failure(self.client) or (
                "cannot connect (is the broker running, and reachable from here?)" if self.unreachable
                else closed_early_text(settings) if self.closed.is_set()
                else f"no answer within {CONNECT_TIMEOUT:g} s")
            return _fail("broker", f"{settings}: {why}")
        if self.refused:
            return _fail("broker", f"{settings} refused the login: {self.refused}")
        self.client.publish(topic, b"sensor-check", qos=1)
        if not self.puback.wait(CONNECT_TIMEOUT):
            return _fail("broker", f"{settings}: no acknowledgement of a message to {topic} within "
                                   f"{CONNECT_TIMEOUT:g} s")
        code = self.publish_reason
        if code is not None and getattr(code, "is_failure", False):
            return _fail("broker", f"{settings} accepted the login but refused a message to {topic}: "
                                   f"{refusal_text(code, publish=True)}")
        user = f" as {settings.username}" if settings.username else ""
        return _ok("broker", f"{settings} accepted the login{user} and a message to {topic}")


def _first(a: threading.Event, b: threading.Event, timeout: float) -> bool:
    """Wait until either event is set (True) or ``timeout`` s pass (False)."""
    waited, step = 0.0, 0.05
    while waited < timeout:
        if a.is_set() or b.is_set():
            return True
        a.wait(step)
        waited += step
    return a.is_set() or b.is_set()
