"""MQTT publishing against a real broker (mosquitto on a free loopback port; a few seconds in all).

CI installs the broker with ``apt-get install -y mosquitto``; without it these tests fail (never skip).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os

import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

import jsonschema

from helpers import SENSOR_ACL, free_port, wait_for
from soundscene.core import records
from soundscene.errors import SoundsceneError, SoundsceneWarning
from soundscene.apps.broker import (BrokerSettings, add_broker_arguments, broker_settings, make_client,
                                    parse_broker_url, refusal_text, settings_from_args)
from soundscene.apps.mqtt import (Outbox, SensorPublisher, check_sensor_id, dumps, parse_broker, scene_payload,
                                  topics)

try:
    import paho.mqtt.client as mqtt  # noqa: F401
except ImportError:  # a requirement of the tests, like the broker: fail, never skip
    pytest.fail("the MQTT tests need paho-mqtt: pip install 'paho-mqtt>=2'", pytrace=False)

SRC = Path(__file__).resolve().parents[1] / "src"
MODEL = {"name": "tiny-cnn", "version": "7", "classes": ["park", "street_traffic", "metro"]}
FAST = dict(model=MODEL, window_seconds=1.5, hop_seconds=0.5, reconnect_min=0.1, reconnect_max=0.5)
SENSOR_MESSAGE = jsonschema.Draft202012Validator(records.schema_of("sensor_message"))
LEVELS_MESSAGE = jsonschema.Draft202012Validator(records.schema_of("levels_message"))

def _decision(t: float, label: str = "park", changed: bool = False, **extra) -> dict:
    probs = {"park": 0.1, "street_traffic": 0.1, "metro": 0.1}
    probs[label] = 0.8
    return {"time": t, "label": label, "confidence": 0.8, "probabilities": probs, "changed": changed,
            "level_dbfs": -32.14, **extra}

# -- the broker -----------------------------------------------------------------------------------------

class Gate:
    """A TCP forwarder to the broker that can be shut (connections dropped, new ones refused) and reopened.

    The publisher connects through it while the subscriber connects to the broker directly, so the
    subscriber sees everything while the publisher is cut off.
    """

    def __init__(self, target_port: int):
        self.target, self.port = target_port, free_port()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._server: socket.socket | None = None

    def open(self) -> "Gate":
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 5
        while True:
            try:
                server.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    server.close()
                    raise
                time.sleep(0.05)
        server.listen()
        server.settimeout(0.05)
        self._server = server
        self._thread = threading.Thread(target=self._accept, args=(server,), daemon=True)
        self._thread.start()
        return self

    def shut(self) -> None:
        if self._server is not None:
            self._server = None
            self._thread.join(timeout=5)  # the accept loop closes the listening socket on its way out
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self._conns.clear()

    def _accept(self, server: socket.socket) -> None:
        with server:
            while self._server is server:
                try:
                    client, _ = server.accept()
                except (TimeoutError, socket.timeout):
                    continue
                except OSError:
                    return
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                client.settimeout(None)
                upstream.settimeout(None)
                with self._lock:
                    self._conns += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

def test_parse_broker():
    assert parse_broker("localhost:1884") == ("localhost", 1884)
    assert parse_broker("broker.local") == ("broker.local", 1883)
    assert parse_broker(" 10.0.0.5:65535 ") == ("10.0.0.5", 65535)
    assert parse_broker("[::1]:1885") == ("::1", 1885)
    assert parse_broker("[fe80::1]") == ("fe80::1", 1883)
    for bad, says in [("", "empty"), ("host:", "port"), ("host:0", "port"), ("host:65536", "port"),
                      ("host:abc", "port"), (":1883", "missing host"), ("::1", "brackets"),
                      ("fe80::1:1883", "brackets"), ("[::1", "']'"), ("[::1]x", "after ']'"),
                      ("[host]:1883", "IPv6"), ("mqtt://host:1883", "scheme"), ("a b:1883", "invalid host")]:
        with pytest.raises(SoundsceneError) as info:
            parse_broker(bad)
        message = str(info.value)
        assert "\n" not in message and says in message, (bad, message)

def test_invalid_sensor_ids():
    assert check_sensor_id("kitchen-1") == "kitchen-1"
    assert topics("café_2") == {"scene": "soundscene/café_2/scene", "event": "soundscene/café_2/event",
                                "status": "soundscene/café_2/status", "levels": "soundscene/café_2/levels",
                                "health": "soundscene/café_2/health"}
    for bad in ["", "a/b", "a+b", "room#1", "a b", "tab\there", "line\n", "nul\x00", None, 3, "x" * 201]:
        with pytest.raises(SoundsceneError) as info:
            check_sensor_id(bad)
        assert "\n" not in str(info.value)
        with pytest.raises(SoundsceneError):
            SensorPublisher("127.0.0.1", 1883, bad, **FAST)

def test_invalid_settings_are_one_line_errors():
    for kwargs in [dict(queue_limit=0), dict(qos=3), dict(keepalive=0), dict(window_seconds=float("nan")),
                   dict(hop_seconds=-1)]:
        with pytest.raises(SoundsceneError) as info:
            SensorPublisher("127.0.0.1", 1883, "s1", **{**FAST, **kwargs})
        assert "\n" not in str(info.value)
    with pytest.raises(SoundsceneError, match="port"):
        SensorPublisher("127.0.0.1", 0, "s1", **FAST)

def test_missing_paho_is_a_clear_error(monkeypatch):
    for name in ["paho", "paho.mqtt", "paho.mqtt.client"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(SoundsceneError, match=r"pip install 'paho-mqtt>=2'") as info:
        SensorPublisher("127.0.0.1", 1883, "s1", **FAST)
    assert "\n" not in str(info.value)
    # and the module itself imports without paho
    code = "import sys; sys.modules['paho'] = None; import soundscene.apps.mqtt; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(SRC)})
    assert out.stdout.strip() == "ok", out.stderr

STAMP = "2025-01-01T00:00:00.000Z"

def _payload(decision, **kwargs) -> dict:
    return scene_payload(decision, **{**dict(sensor_id="s1", model=MODEL, window_seconds=10, hop_seconds=1, seq=3,
                                             timestamp=STAMP), **kwargs})

def test_payload_is_strict_json():
    decision = {"time": 12.5004, "label": "park", "probabilities": {"metro": float("nan"), "park": 0.812345,
                                                                     "street_traffic": 0.1},
                "changed": False, "level_dbfs": float("-inf")}
    payload = _payload(decision)
    assert payload["confidence"] == 0.8123  # taken from probabilities[label] when not given
    assert list(payload["probabilities"]) == ["park", "street_traffic", "metro"]  # the model's class order
    assert payload["probabilities"]["metro"] is None and payload["level_dbfs"] is None
    assert payload["time"] == 12.5 and payload["model"] == {"name": "tiny-cnn", "version": "7"}
    assert payload["previous"] is None and payload["changed"] is False
    text = dumps(payload)
    assert isinstance(text, bytes) and "NaN" not in text.decode() and "Infinity" not in text.decode()
    assert json.loads(text) == payload
    with pytest.raises(ValueError):
        dumps({"x": math.nan})
    for bad in [{"probabilities": {}, "time": 1.0}, {"label": "", "time": 1.0, "confidence": 0.5}, "park",
                {"label": "park", "time": 1.0, "confidence": float("nan")},  # a decision always has a confidence
                {"label": "park", "time": 1.0},  # ... given, or the label's probability
                {"label": "park", "confidence": 0.5, "probabilities": {"park": 0.5}},  # no time
                {"label": "park", "time": 1.0, "confidence": 0.5, "probabilities": ["park"]}]:
        with pytest.raises(ValueError):
            _payload(bad)

def test_payload_is_the_sensor_message_record():
    """The record schema's sensor_message: its fields in its order, its rounding, valid by its JSON Schema."""
    decision = _decision(3.14159, "metro", changed=True, previous="park", confidence=0.876543,
                         level_dbfs=-20.06, smoothed=[0.1, 0.1, 0.8])  # keys beyond the decision's are ignored
    decision["probabilities"] = {"extra": 0.001, "metro": 0.876543, "park": 0.11111}
    payload = _payload(decision, window_seconds=1.23456, hop_seconds=0.5, boot="0" * 32)
    assert list(payload) == [f.name for f in records.FIELDS["sensor_message"] if f.name != "levels"]
    assert payload == {"sensor_id": "s1", "boot": "0" * 32, "seq": 3, "timestamp": STAMP, "window_seconds": 1.235, "hop_seconds": 0.5,
                       "model": {"name": "tiny-cnn", "version": "7"}, "soundscene_version": payload["soundscene_version"],
                       "time": 3.142, "label": "metro", "confidence": 0.8765,
                       "probabilities": {"park": 0.1111, "metro": 0.8765, "extra": 0.001}, "changed": True,
                       "previous": "park", "level_dbfs": -20.1, "silent": False}
    assert list(payload["probabilities"]) == ["park", "metro", "extra"]  # the model's classes first
    SENSOR_MESSAGE.validate(json.loads(dumps(payload)))
    bare = _payload({"time": 1.0, "label": "park", "confidence": 0.9, "probabilities": {"park": 0.9}}, model={})
    assert (bare["changed"], bare["previous"], bare["level_dbfs"], bare["silent"]) == (False, None, None, False)
    assert bare["model"] == {"name": None, "version": None}
    SENSOR_MESSAGE.validate(bare)

def test_a_silent_decision_is_published_without_a_scene():
    """A dead or muted microphone is what a fleet operator needs to see: silent decisions go out too."""
    payload = _payload({"time": 2.0, "label": None, "confidence": None, "probabilities": None, "changed": False,
                        "previous": None, "level_dbfs": None, "silent": True})
    assert (payload["label"], payload["confidence"], payload["probabilities"], payload["silent"]) == (
        None, None, None, True)
    SENSOR_MESSAGE.validate(json.loads(dumps(payload)))


def test_payload_from_a_decision_record():
    """What the stream classifier gives (Decision.to_record) goes through unchanged, nulls included."""
    import numpy as np

    classes = MODEL["classes"]
    made = records.Decision(time=2.0, label="street_traffic", confidence=0.7, probabilities=np.array([0.2, 0.7, 0.1]),
                            smoothed=np.array([np.nan, 0.7, 0.1]), changed=True, previous="park",
                            level_dbfs=float("-inf"))
    record = made.to_record(classes)
    payload = _payload(record)
    assert {k: payload[k] for k in record} == record
    assert payload["probabilities"]["park"] is None and payload["level_dbfs"] is None
    SENSOR_MESSAGE.validate(json.loads(dumps(payload)))

# -- the outbox, without a broker or paho ----------------------------------------------------------------

def _message(k: int) -> tuple[str, bytes, bool]:
    return (f"t/{k}", str(k).encode(), k % 2 == 0)

class FakeSender:
    """send(topic, payload, retain) -> a message id, recording what it was given; refuses when told to."""

    def __init__(self):
        self.sent: list[tuple[str, bytes, bool]] = []
        self.refuse = False

    def __call__(self, topic, payload, retain):
        if self.refuse:
            return None
        self.sent.append((topic, payload, retain))
        return len(self.sent)

def test_outbox_keeps_order_and_hands_over_within_the_window():
    box, send = Outbox(10), FakeSender()
    box.put([_message(0), _message(1)])
    box.put([_message(2)])
    assert (box.queued, box.in_flight, box.undelivered, box.dropped) == (3, 0, 3, 0)
    assert box.hand_over(send, window=2) and box.hand_over(send, window=2)
    assert not box.hand_over(send, window=2)  # two in flight: the third waits
    assert send.sent == [_message(0), _message(1)] and (box.queued, box.in_flight) == (1, 2)
    box.acknowledged(1)
    send.refuse = True
    assert not box.hand_over(send, window=2) and box.queued == 1  # refused: stays first in line
    send.refuse = False
    assert box.hand_over(send, window=2) and send.sent == [_message(0), _message(1), _message(2)]
    assert not box.hand_over(send, window=5) and box.queued == 0
    assert box.forget_in_flight() == 2 and box.undelivered == 0
    with pytest.raises(SoundsceneError):
        Outbox(0)

def _warnings_from(action) -> list[str]:
    """The SoundsceneWarnings that ``action()`` gives, every one (no deduplication)."""
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        action()
    return [str(w.message) for w in got if issubclass(w.category, SoundsceneWarning)]

def test_outbox_is_bounded_drops_the_oldest_and_warns_once_per_outage():
    box, send = Outbox(3, where="MQTT broker b:1"), FakeSender()
    assert _warnings_from(lambda: box.put([_message(k) for k in range(3)])) == []
    assert _warnings_from(lambda: box.put([_message(3), _message(4)])) == [
        "MQTT broker b:1 unreachable and 3 messages queued: dropping the oldest (see SensorPublisher.dropped)"]
    assert (box.queued, box.dropped) == (3, 2)
    assert _warnings_from(lambda: box.put([_message(5)])) == []  # once per outage
    assert box.dropped == 3
    while box.hand_over(send, window=10):
        pass
    assert send.sent == [_message(3), _message(4), _message(5)]  # the newest, in order
    box.outage_over()
    assert len(_warnings_from(lambda: box.put([_message(k) for k in range(6, 10)]))) == 1  # a new outage
    assert box.dropped == 4 and box.queued == 3

def test_outbox_is_thread_safe_and_waits_for_acknowledgements():
    box = Outbox(10_000)
    putters = [threading.Thread(target=lambda n=n: [box.put([_message(n * 1000 + k)]) for k in range(500)])
               for n in range(4)]
    for th in putters:
        th.start()
    for th in putters:
        th.join()
    assert (box.queued, box.dropped) == (2000, 0)
    send = FakeSender()
    while box.hand_over(send, window=10_000):
        pass
    for n in range(4):  # each thread's messages keep their order
        mine = [int(p) for _, p, _ in send.sent if int(p) // 1000 == n]
        assert mine == [n * 1000 + k for k in range(500)]
    assert not box.wait_empty(0.01)
    acker = threading.Thread(target=lambda: [box.acknowledged(mid) for mid in range(1, 2001)])
    acker.start()
    assert box.wait_empty(10) and box.undelivered == 0
    acker.join()
    box.put([_message(0)])
    box.close()  # nothing more will be sent: waiting answers at once, not after its hour
    answers = []
    waiter = threading.Thread(target=lambda: answers.append(box.wait_empty(3600)))
    waiter.start()
    waiter.join(60)
    assert not waiter.is_alive() and answers == [False]

# -- with a broker -------------------------------------------------------------------------------------

def test_status_scene_and_events(broker, subscribers):
    sub = subscribers(broker.port, "lab")
    with SensorPublisher("127.0.0.1", broker.port, "lab", **FAST) as pub:
        assert pub.wait_connected(10)
        assert sub.wait("status", 1)[0][0] == "online"
        pub.publish(_decision(0.5, "park", changed=True))
        pub.publish(_decision(1.0, "park"))
        pub.publish(_decision(1.5, "street_traffic", changed=True, level_dbfs=float("nan")))
        pub.publish(_decision(2.0, "metro", changed=True, previous="told"))  # the decision's own word wins
        assert pub.flush(10)
        scenes = [json.loads(p) for p, _ in sub.wait("scene", 4)]
        events = [json.loads(p) for p, _ in sub.wait("event", 3)]
        for message in scenes + events:
            SENSOR_MESSAGE.validate(message)

        first = scenes[0]
        assert first["sensor_id"] == "lab" and first["label"] == "park" and first["confidence"] == 0.8
        assert first["time"] == 0.5 and first["window_seconds"] == 1.5 and first["hop_seconds"] == 0.5
        assert first["level_dbfs"] == -32.1 and first["model"] == {"name": "tiny-cnn", "version": "7"}
        assert first["probabilities"] == {"park": 0.8, "street_traffic": 0.1, "metro": 0.1}
        assert first["timestamp"].endswith("Z") and "T" in first["timestamp"]
        assert [s["seq"] for s in scenes] == [1, 2, 3, 4] and [s["label"] for s in scenes] == \
            ["park", "park", "street_traffic", "metro"]
        assert scenes[2]["level_dbfs"] is None and scenes[2]["changed"] is True
        assert [s["previous"] for s in scenes] == [None, None, "park", "told"]  # null when not a change
        assert [(e["previous"], e["label"]) for e in events] == [(None, "park"), ("park", "street_traffic"),
                                                                 ("told", "metro")]
        assert events == [scenes[0], scenes[2], scenes[3]]  # an event is the same record as its scene

        late = subscribers(broker.port, "lab")  # the retained state: newest scene and online, no event
        late.mark()  # the retained messages come before the marker
        assert [(json.loads(p)["seq"], r) for p, r in late.on("scene")] == [(4, True)]
        assert late.on("status") == [("online", True)] and late.on("event") == []

    assert sub.wait("status", 2)[-1][0] == "offline"  # clean close
    last = subscribers(broker.port, "lab")
    assert last.wait("status", 1) == [("offline", True)]
    with pytest.raises(SoundsceneError, match="closed"):
        pub.publish(_decision(2.0))

def test_last_will_when_the_sensor_is_killed(broker, subscribers):
    sub = subscribers(broker.port, "doomed")
    code = textwrap.dedent(f"""
        import sys, time
        from soundscene.apps.mqtt import SensorPublisher
        pub = SensorPublisher("127.0.0.1", {broker.port}, "doomed", keepalive=1, window_seconds=1, hop_seconds=1)
        assert pub.wait_connected(10), pub.last_error
        pub.publish({{"time": 1.0, "label": "metro", "confidence": 0.9, "probabilities": {{"metro": 0.9}}}})
        assert pub.flush(10)
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        wait_for(lambda: sub.json("scene"), 30, "the subprocess's scene message")
        assert [p for p, _ in sub.on("status")] == ["online"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        statuses = sub.wait("status", 2, timeout=5)
        assert statuses[-1][0] == "offline"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert subscribers(broker.port, "doomed").wait("status", 1) == [("offline", True)]  # the will is retained

@pytest.mark.parametrize("qos", [1, 0, 2])
def test_offline_queue_is_bounded_and_flushed_in_order(broker, subscribers, qos):
    gate = Gate(broker.port)  # shut: the publisher starts with its broker unreachable
    sub = subscribers(broker.port, "q")
    pub = SensorPublisher("127.0.0.1", gate.port, "q", queue_limit=5, qos=qos, **FAST)
    try:
        wait_for(lambda: pub.last_error, 5, "a failed connection attempt")
        assert not pub.connected and pub.last_error == "cannot connect"
        with pytest.warns(SoundsceneWarning, match="dropping the oldest"):
            for k in range(8):
                pub.publish(_decision(k * 0.5))
        assert (pub.queued, pub.dropped) == (5, 3)

        gate.open()
        assert pub.wait_connected(10)
        sub.wait("scene", 5)
        scenes = sub.json("scene")
        assert [s["seq"] for s in scenes] == [4, 5, 6, 7, 8]  # the oldest three were dropped
        assert pub.flush(10) and pub.queued == 0

        # connection lost while running: the broker publishes the will, the queue keeps what follows
        gate.shut()
        sub.wait("status", 2)
        assert sub.on("status")[-1][0] == "offline"
        wait_for(lambda: not pub.connected, 10, "the publisher to notice the lost connection")
        assert pub.last_error in ("connection lost", "cannot connect")
        pub.publish(_decision(10.0, "metro", changed=True))
        for k in range(3):
            pub.publish(_decision(10.5 + k * 0.5, "metro"))
        assert pub.queued == 5 and pub.dropped == 3  # scene + event, then three scenes
        gate.open()
        assert pub.flush(10)
        wait_for(lambda: len(sub.json("scene")) >= 9, 10, "the queued scenes")
        scenes = sub.json("scene")
        assert [s["seq"] for s in scenes] == [4, 5, 6, 7, 8, 9, 10, 11, 12]
        assert [(e["previous"], e["label"], e["seq"]) for e in sub.json("event")] == [("park", "metro", 9)]
        assert [p for p, _ in sub.on("status")][-1] == "online" and pub.last_error is None
    finally:
        pub.close(timeout=2)
        gate.shut()

def test_publisher_started_before_the_broker(broker_factory, subscribers):
    broker = broker_factory()  # not started yet
    pub = SensorPublisher("127.0.0.1", broker.port, "early", queue_limit=3, **FAST)
    try:
        with pytest.warns(SoundsceneWarning, match="dropping the oldest"):
            for k in range(4):
                pub.publish(_decision(k * 0.5, "metro" if k == 3 else "park"))
        assert not pub.connected and pub.dropped == 1
        broker.start()
        assert pub.wait_connected(10)
        assert pub.flush(10)
        late = subscribers(broker.port, "early")
        late.mark()
        assert [(json.loads(p)["seq"], json.loads(p)["label"], r) for p, r in late.on("scene")] == \
            [(4, "metro", True)]
        assert late.on("status") == [("online", True)]

        broker.stop()  # and a broker restart on the same port: reconnects and marks itself online again
        wait_for(lambda: not pub.connected, 10, "the publisher to notice the broker stopped")
        pub.publish(_decision(2.5, "metro"))
        broker.start()
        assert pub.wait_connected(10) and pub.flush(10)
        again = subscribers(broker.port, "early")
        again.wait("scene", 1)
        assert json.loads(again.on("scene")[0][0])["seq"] == 5
        assert again.wait("status", 1) == [("online", True)]
    finally:
        pub.close(timeout=2)

def test_close_while_the_broker_is_down_is_quick():
    pub = SensorPublisher("127.0.0.1", free_port(), "alone", **FAST)
    pub.publish(_decision(0.5))
    wait_for(lambda: pub.last_error, 5, "a failed connection attempt")
    assert not pub.connected and pub.queued == 1 and pub.last_error == "cannot connect"
    with pytest.warns(SoundsceneWarning, match="1 messages were not delivered"):
        closer = threading.Thread(target=pub.close, kwargs={"timeout": 3600})  # the broker is down: no waiting
        closer.start()
        closer.join(60)
    assert not closer.is_alive()
    pub.close()  # twice is harmless

def test_username_and_password(broker_factory, subscribers):
    broker = broker_factory(users={"sensor": "s3cret"}).start()
    wrong = SensorPublisher("127.0.0.1", broker.port, "auth", username="sensor", password="nope", **FAST)
    try:
        wait_for(lambda: wrong.last_error, 10, "the broker to refuse the wrong password")
        assert not wrong.connected and wrong.last_error == "broker refused the connection: Not authorized"
    finally:
        wrong.close(timeout=1)
    with SensorPublisher("127.0.0.1", broker.port, "auth", username="sensor", password="s3cret", **FAST) as pub:
        assert pub.wait_connected(10) and pub.last_error is None
        pub.publish(_decision(0.5))
        assert pub.flush(10)

def test_messages_in_flight_at_a_disconnect_are_not_lost_or_reordered(broker, subscribers):
    gate = Gate(broker.port).open()
    sub = subscribers(broker.port, "burst")
    pub = SensorPublisher("127.0.0.1", gate.port, "burst", queue_limit=10_000, **FAST)
    try:
        assert pub.wait_connected(10)
        for k in range(300):  # the connection drops in the middle of a burst
            pub.publish(_decision(k * 0.5))
            if k == 150:
                gate.shut()
        wait_for(lambda: not pub.connected, 10, "the publisher to notice the lost connection")
        for k in range(300, 350):
            pub.publish(_decision(k * 0.5))
        gate.open()
        assert pub.flush(20)
        wait_for(lambda: 350 in [s["seq"] for s in sub.json("scene")], 10, "the last scene")
        seqs = [s["seq"] for s in sub.json("scene")]
        first_arrivals = list(dict.fromkeys(seqs))  # QoS 1 is at least once: re-sent duplicates are allowed
        assert first_arrivals == list(range(1, 351)) and seqs[-1] == 350
        late = subscribers(broker.port, "burst")
        assert json.loads(late.wait("scene", 1)[0][0])["seq"] == 350
    finally:
        pub.close(timeout=2)
        gate.shut()

def test_listen_command_publishes_decisions_to_the_broker(broker, subscribers, tiny_run):
    """soundscene listen MODEL --stdin --mqtt HOST:PORT --sensor-id ID, end to end through a real broker."""
    import numpy as np

    from soundscene.training.synth import synthesize_scene

    sub = subscribers(broker.port, "cli-1")
    wave = synthesize_scene("rain", sample_rate=16000, seconds=3.1, seed=2)
    result = subprocess.run([sys.executable, "-m", "soundscene.cli", "listen", str(tiny_run.model_path), "--stdin",
                             "--rate", "16000", "--sample-format", "f32le", "--mqtt", f"127.0.0.1:{broker.port}",
                             "--sensor-id", "cli-1", "--quiet", "--level-interval", "2", "--calibration-db", "100"],
                            input=wave.astype("<f4").tobytes(), capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    scenes = [json.loads(p) for p, _ in sub.wait("scene", 3)]
    levels = [json.loads(p) for p, _ in sub.wait("levels", 2)]  # 2 s, then the last 1.1 s at the end
    for message in levels:
        LEVELS_MESSAGE.validate(message)
    assert [m["levels"]["calibrated"] for m in levels] == [True, True] and levels[0]["levels"]["LAeq"] > 40
    assert {m["boot"] for m in scenes + levels} == {scenes[0]["boot"]} and len(scenes[0]["boot"]) == 32
    assert sorted(m["seq"] for m in scenes + levels) == list(range(1, 6))  # one count over every topic
    assert scenes[0]["levels"]["reference"] == "dB SPL" and levels[0]["start"] < levels[0]["end"]
    assert [s["time"] for s in scenes] == [1.5, 2.25, 3.0]
    assert scenes[0]["sensor_id"] == "cli-1" and scenes[0]["window_seconds"] == 1.5 and scenes[0]["hop_seconds"] == 0.75
    assert scenes[0]["label"] in scenes[0]["probabilities"] and scenes[0]["model"]["name"] == "paper_cnn"
    event = json.loads(sub.wait("event", 1)[0][0])
    assert event == scenes[0] and event["previous"] is None and event["changed"] is True
    for message in scenes:
        SENSOR_MESSAGE.validate(message)
    assert sub.wait("status", 2)[-1][0] == "offline"  # a clean close says so


# -- a secure broker: TLS, passwords, an ACL ------------------------------------------------------------------

USERS = {"kitchen-1": "kitchen pass 1", "hub": "hub-secret-7"}


def _password_file(folder: Path, password: str, name: str = "mqtt-password") -> Path:
    path = folder / name
    path.write_text(password + "\n")
    return path


def _secure_broker(broker_factory, certificates, **options):
    """mosquitto asking for a user and password, with the sensors' ACL and a TLS listener on tls_port."""
    return broker_factory(users=USERS, certificates=certificates, acl=SENSOR_ACL, **options).start()


def _over_tls(broker, certificates, folder: Path, user: str = "kitchen-1", **options) -> BrokerSettings:
    return broker_settings(f"mqtts://127.0.0.1:{broker.tls_port}", ca=certificates.ca, username=user,
                           password_file=_password_file(folder, USERS[user], f"{user}-password"), environ={},
                           **options)


@contextlib.contextmanager
def _warnings_said():
    """Record the SoundsceneWarnings of every thread, each one (no deduplication); yields a function that
    returns them so far."""
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        yield lambda: [str(w.message) for w in list(got) if issubclass(w.category, SoundsceneWarning)]


def test_broker_urls():
    assert parse_broker_url("mqtts://broker.local") == BrokerSettings("broker.local", 8883, tls=True)
    assert parse_broker_url(" MQTTS://[::1]:8884/ ") == BrokerSettings("::1", 8884, tls=True)
    assert parse_broker_url("mqtt://10.0.0.5") == BrokerSettings("10.0.0.5", 1883)
    assert parse_broker_url("10.0.0.5:1884") == BrokerSettings("10.0.0.5", 1884)
    assert parse_broker_url("[fe80::1]") == BrokerSettings("fe80::1", 1883)
    assert parse_broker_url("mqtts://[::1]").url == "mqtts://[::1]:8883"
    for bad, says in [("", "empty"), ("mqtts://", "empty"), ("http://h:1883", "unknown scheme"),
                      ("mqtts://h:0", "port"), ("mqtt://h:99999", "port"), ("mqtts://h:x", "port"),
                      ("mqtt://h:1883/soundscene", "no path"), ("mqtts://::1", "brackets"),
                      ("mqtts://[::1", "']'"), ("mqtt://a b", "invalid host"), (None, "empty")]:
        with pytest.raises(SoundsceneError) as info:
            parse_broker_url(bad)
        message = str(info.value)
        assert "\n" not in message and says in message, (bad, message)
    with pytest.raises(SoundsceneError) as info:  # a password in the URL is refused without being repeated
        parse_broker_url("mqtts://kitchen-1:hunter2@broker:8883")
    assert "hunter2" not in str(info.value) and "--mqtt-password-file" in str(info.value)
    assert parse_broker("[::1]:1885") == ("::1", 1885)  # still importable from soundscene.apps.mqtt


def test_broker_settings_and_their_mistakes(tmp_path, certificates):
    secret = "s3cret words"
    pw = _password_file(tmp_path, secret)
    settings = broker_settings("mqtts://broker:8884", ca=certificates.ca, cert=certificates.client_cert,
                               key=certificates.client_key, username="kitchen-1", password_file=pw, environ={})
    assert (settings.host, settings.port, settings.tls, settings.username, settings.password) == (
        "broker", 8884, True, "kitchen-1", secret)
    assert settings.ca == certificates.ca and settings.key == certificates.client_key
    assert secret not in repr(settings) and secret not in str(settings) and "password" not in repr(settings)
    env = {"SOUNDSCENE_MQTT_PASSWORD": "from-env"}
    assert broker_settings("mqtts://b", username="u", environ=env).password == "from-env"
    assert broker_settings("mqtts://b", username="u", password_file=pw, environ=env).password == secret
    assert broker_settings("mqtts://b", username="u", environ={}).password is None  # a user without a password
    assert broker_settings("b:1884", environ=env).password is None  # no user: no password
    (tmp_path / "crlf").write_bytes(b"first\r\nsecond\n")
    assert broker_settings("mqtts://b", username="u", password_file=tmp_path / "crlf").password == "first"
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "latin1").write_bytes(b"caf\xe9\n")
    for kwargs, says in [
            (dict(cert=certificates.client_cert), "go together"), (dict(key=certificates.client_key), "go together"),
            (dict(url="mqtt://b:1883", ca=certificates.ca), "mqtts://"),
            (dict(url="b:1883", cert=certificates.client_cert, key=certificates.client_key), "mqtts://"),
            (dict(ca=tmp_path / "missing.crt"), "cannot read"), (dict(ca=tmp_path), "cannot read"),
            (dict(password_file=pw), "needs --mqtt-user"),
            (dict(username="u", password_file=tmp_path / "nope"), "cannot read"),
            (dict(username="u", password_file=tmp_path / "empty"), "empty"),
            (dict(username="u", password_file=tmp_path / "latin1"), "UTF-8"),
            (dict(username="", password_file=pw), "--mqtt-user"), (dict(username="a\nb"), "--mqtt-user")]:
        with pytest.raises(SoundsceneError) as info:
            broker_settings(**{"url": "mqtts://b", "environ": env, **kwargs})
        message = str(info.value)
        assert "\n" not in message and says in message and secret not in message, (kwargs, message)
    with pytest.warns(SoundsceneWarning, match="unencrypted"):  # a password in clear over the network
        broker_settings("mqtt://broker.example:1883", username="u", environ=env)


def test_tls_files_that_are_not_usable_are_one_line_errors(tmp_path, certificates):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    for kwargs, says in [(dict(ca=garbage), "--mqtt-ca"),
                         (dict(cert=certificates.client_cert, key=encrypted), "encrypted"),
                         (dict(cert=garbage, key=certificates.client_key), "--mqtt-cert"),
                         (dict(cert=certificates.client_cert, key=certificates.server_key), "--mqtt-cert")]:
        settings = broker_settings("mqtts://127.0.0.1:8883", environ={}, **kwargs)
        with pytest.raises(SoundsceneError) as info:
            make_client(settings, client_id="x")
        assert "\n" not in str(info.value) and says in str(info.value), (kwargs, str(info.value))
        with pytest.raises(SoundsceneError):
            SensorPublisher.for_broker(settings, "s1", **FAST)


def test_refusal_text_names_the_brokers_reason():
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    assert refusal_text(0x86).startswith("Bad User Name or Password (0x86): check --mqtt-user")
    text = refusal_text(ReasonCode(PacketTypes.CONNACK, identifier=0x87))
    assert text.startswith("Not authorized (0x87): ") and "--mqtt-password-file" in text
    assert refusal_text(0x88).startswith("Server unavailable (0x88)")
    assert "ACL" in refusal_text(ReasonCode(PacketTypes.PUBACK, identifier=0x87), publish=True)
    assert refusal_text(0xFE).startswith("Unknown reason (0xFE)")


def test_the_broker_options_of_a_command(tmp_path, certificates, capsys):
    parser = argparse.ArgumentParser()
    add_broker_arguments(parser, dest="sim_mqtt", required=True)
    pw = _password_file(tmp_path, "pw")
    args = parser.parse_args(["--mqtt", "mqtts://h", "--mqtt-ca", str(certificates.ca), "--mqtt-user", "u",
                              "--mqtt-password-file", str(pw)])
    assert settings_from_args(args, "sim_mqtt") == BrokerSettings("h", 8883, tls=True, ca=certificates.ca,
                                                                  username="u", password="pw")
    plain = argparse.ArgumentParser()
    add_broker_arguments(plain)
    assert settings_from_args(plain.parse_args([])) is None
    with pytest.raises(SoundsceneError, match="--mqtt-user needs --mqtt URL"):
        settings_from_args(plain.parse_args(["--mqtt-user", "u"]))
    from soundscene.cli import main

    assert main(["hub", "--mqtt", "mqtt://127.0.0.1:1", "--mqtt-ca", str(certificates.ca)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--mqtt-ca is for TLS" in lines[0] and "mqtts://HOST:PORT" in lines[0], lines


def test_a_sensor_over_tls_with_a_password_reaches_the_hub_user(broker_factory, certificates, subscribers,
                                                                tmp_path):
    broker = _secure_broker(broker_factory, certificates)
    settings = _over_tls(broker, certificates, tmp_path)
    assert settings.tls and settings.port == broker.tls_port and settings.password == USERS["kitchen-1"]
    hub = subscribers(broker.tls_port, "kitchen-1", ca=certificates.ca, username="hub", password=USERS["hub"])
    with SensorPublisher.for_broker(settings, "kitchen-1", **FAST) as pub:
        assert pub.wait_connected(10), pub.last_error
        assert hub.wait("status", 1)[0][0] == "online"
        pub.publish(_decision(0.5, "park", changed=True))
        pub.publish(_decision(1.0, "metro", changed=True))
        assert pub.flush(10)
        assert [json.loads(p)["label"] for p, _ in hub.wait("scene", 2)] == ["park", "metro"]
        assert [json.loads(p)["previous"] for p, _ in hub.wait("event", 2)] == [None, "park"]
        assert pub.refused == 0 and pub.last_error is None
    assert hub.wait("status", 2)[-1][0] == "offline"


def test_a_client_certificate(broker_factory, certificates, subscribers):
    broker = broker_factory(certificates=certificates, require_certificate=True).start()  # anonymous, TLS + cert
    sub = subscribers(broker.port, "lab-2")  # the plain listener
    url = f"mqtts://127.0.0.1:{broker.tls_port}"
    settings = broker_settings(url, ca=certificates.ca, cert=certificates.client_cert, key=certificates.client_key,
                               environ={})
    with SensorPublisher.for_broker(settings, "lab-2", **FAST) as pub:
        assert pub.wait_connected(10), pub.last_error
        pub.publish(_decision(0.5))
        assert pub.flush(10)
        assert json.loads(sub.wait("scene", 1)[0][0])["sensor_id"] == "lab-2"
    with _warnings_said() as said:  # without its certificate: turned away, said once, in one line
        without = SensorPublisher.for_broker(broker_settings(url, ca=certificates.ca, environ={}), "lab-3", **FAST)
        try:
            wait_for(lambda: without.last_error, 10, "the broker to turn away a client without a certificate")
            assert not without.connected and "--mqtt-cert" in without.last_error
        finally:
            without.close(timeout=1)
        lines = [w for w in said() if "--mqtt-cert" in w]
        assert len(lines) == 1 and "\n" not in lines[0], said()


def test_a_broker_not_signed_by_the_ca_is_not_trusted(broker_factory, certificates):
    broker = broker_factory(certificates=certificates).start()
    settings = broker_settings(f"mqtts://127.0.0.1:{broker.tls_port}", ca=certificates.other_ca, environ={})
    with _warnings_said() as said:
        pub = SensorPublisher.for_broker(settings, "lab-4", **FAST)
        try:
            wait_for(lambda: broker.log_lines("New connection from") >= 3, 20, "three connection attempts")
            wait_for(lambda: pub.last_error, 10, "the TLS failure")
            assert not pub.connected and pub.last_error.startswith("TLS: the broker's certificate is not trusted")
        finally:
            pub.close(timeout=1)
        lines = [w for w in said() if "TLS" in w]
        assert len(lines) == 1 and "\n" not in lines[0], said()


def test_a_wrong_password_is_said_once_and_retried_until_it_is_right(broker_factory, certificates, tmp_path):
    broker = _secure_broker(broker_factory, certificates)
    wrong = "not-the-password"
    settings = broker_settings(f"mqtts://127.0.0.1:{broker.tls_port}", ca=certificates.ca, username="kitchen-1",
                               environ={"SOUNDSCENE_MQTT_PASSWORD": wrong})
    with _warnings_said() as said:
        pub = SensorPublisher.for_broker(settings, "kitchen-1", **FAST)
        try:
            wait_for(lambda: broker.log_lines("not authorised") >= 4, 30, "four refused logins")
            wait_for(lambda: pub.last_error, 10, "the refusal")
            assert pub.last_error == "broker refused the connection: Not authorized" and not pub.connected
            pub.publish(_decision(0.5, "park", changed=True))  # messages keep queueing meanwhile
            pub.publish(_decision(1.0))
            assert pub.queued == 3
            lines = [w for w in said() if "refused" in w]
            assert len(lines) == 1, lines  # once, not at every retry
            assert "Not authorized (0x87)" in lines[0] and f"127.0.0.1:{broker.tls_port}" in lines[0]
            assert all(wrong not in w and "\n" not in w for w in said())
            broker.set_password("kitchen-1", wrong)  # the broker is told the sensor's password: it gets in
            broker.reload()
            assert pub.wait_connected(30), pub.last_error
            assert pub.flush(10) and pub.queued == 0 and pub.last_error is None
        finally:
            pub.close(timeout=2)


def test_a_publish_the_acl_forbids_is_said_once_counted_and_not_resent(broker_factory, certificates, subscribers,
                                                                      tmp_path):
    broker = _secure_broker(broker_factory, certificates)
    settings = _over_tls(broker, certificates, tmp_path)  # user kitchen-1 ...
    hub = subscribers(broker.tls_port, "+", ca=certificates.ca, username="hub", password=USERS["hub"])
    with _warnings_said() as said:
        pub = SensorPublisher.for_broker(settings, "bedroom-2", **FAST)  # ... publishing as another sensor
        try:
            assert pub.wait_connected(10), pub.last_error
            pub.publish(_decision(0.5, "park", changed=True))
            for k in range(3):
                pub.publish(_decision(1.0 + 0.5 * k))
            assert pub.flush(10)  # refused messages are done with, not re-sent forever
            wait_for(lambda: pub.refused == 6, 10, "online, 4 scenes and 1 event refused")
            assert pub.connected and pub.last_error is None
        finally:
            pub.close(timeout=2)
        lines = sorted(w for w in said() if "refused a message" in w)
        assert len(lines) == 3, lines  # once per topic and reason
        for line, kind in zip(lines, ("event", "scene", "status")):
            assert f"soundscene/bedroom-2/{kind}: Not authorized (0x87)" in line and "\n" not in line, line
    with SensorPublisher.for_broker(settings, "kitchen-1", **FAST) as own:  # its own id is let through
        own.publish(_decision(0.5))
        assert own.flush(10) and own.refused == 0
    hub.wait("scene", 1)  # after bedroom-2's messages in the broker's order: none of those reached the hub
    assert {topic.split("/")[1] for topic, _, _ in hub.messages} == {"kitchen-1"}


def test_the_protocol_is_one_module_the_publisher_re_exports():
    """apps.protocol holds the topics, payloads and times; apps.mqtt re-exports them (the same objects), and the
    protocol's one ISO 8601 parser reads what utc_timestamp writes."""
    from datetime import datetime, timezone

    from soundscene.apps import mqtt as publisher, protocol

    for name in ("TOPIC_ROOT", "topics", "check_sensor_id", "scene_payload", "levels_payload", "utc_timestamp",
                 "dumps"):
        assert getattr(publisher, name) is getattr(protocol, name)
    assert protocol.topics("s1")["levels"] == "soundscene/s1/levels"
    assert protocol.LEVEL_NAMES is records.CSV_LEVELS
    when = datetime(2025, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
    stamp = protocol.utc_timestamp(when)
    assert stamp == "2025-05-01T12:00:00.123Z"
    assert protocol.parse_time(stamp) == when.timestamp()
    assert protocol.parse_time("2025-05-01T14:00:00.123+02:00") == when.timestamp()
    with pytest.raises(ValueError, match="has no time zone"):
        protocol.parse_time("2025-05-01T12:00:00")
    assert protocol.parse_time("2025-05-01T12:00:00.123", assume_utc=True) == when.timestamp()
    with pytest.raises(ValueError, match="is not an ISO 8601 time"):
        protocol.parse_time("yesterday")
