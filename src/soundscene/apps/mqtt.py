"""Publishing a sensor's scene decisions over MQTT.

:class:`SensorPublisher` takes the decisions of a stream classifier (plain
dicts, one per hop) and publishes them to an MQTT broker; it knows nothing of
the classifier::

    with SensorPublisher("broker.local", 1883, "kitchen-1", model={"name": "cnn", "version": "3"},
                         window_seconds=10.0, hop_seconds=1.0) as pub:
        for decision in stream:          # {"time", "label", "confidence", "probabilities", "changed", "level_dbfs"}
            pub.publish(decision)

Topics (``<id>`` is the sensor id):

* ``soundscene/<id>/scene``: every decision, retained (a new subscriber sees the current scene at once);
* ``soundscene/<id>/event``: one message per scene change, not retained;
* ``soundscene/<id>/status``: ``online`` (retained) on every connect, ``offline`` (retained) on a clean
  :meth:`~SensorPublisher.close` and as the last will, which the broker publishes when the sensor dies or
  loses its network (after 1.5 x ``keepalive`` seconds).

Payloads are strict JSON (never NaN; a value that is not finite, like the level of digital silence, is
``null``) in UTF-8: see :func:`scene_payload`.

The broker may be down at start or go away at any time: the client reconnects
in the background with exponential backoff (``reconnect_min`` doubling up to
``reconnect_max`` seconds).  Meanwhile decisions wait in a bounded queue
(``queue_limit`` messages; the oldest are dropped first and counted in
:attr:`~SensorPublisher.dropped`) and are sent in order once connected again,
so the retained scene is always the newest decision.

paho-mqtt (2.x) is imported only when a publisher is made, so this module
imports without it.
"""

from __future__ import annotations

import collections
import json
import math
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Mapping

from .._version import __version__
from ..errors import SoundsceneError, warn

DEFAULT_PORT = 1883
TOPIC_ROOT = "soundscene"
ONLINE, OFFLINE = "online", "offline"
_WINDOW = 20  # messages handed to paho and not yet acknowledged; the rest wait in our bounded queue
_SENSOR_ID_BAD = re.compile(r"[/+#\s\x00-\x1f\x7f]")


def parse_broker(text: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; the port defaults to 1883, IPv6 addresses go in brackets.

    ``"broker.local"``, ``"10.0.0.5:1884"``, ``"[::1]:1883"`` and ``"[fe80::1]"`` are valid.
    """
    raw = text
    text = (text or "").strip()
    hint = "give the MQTT broker as HOST:PORT, e.g. localhost:1883 or [::1]:1883"
    if not text:
        raise SoundsceneError(f"empty MQTT broker address: {hint}")
    if "://" in text:
        raise SoundsceneError(f"MQTT broker {raw!r}: no URL scheme, {hint}")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SoundsceneError(f"MQTT broker {raw!r}: missing ']' after the IPv6 address; {hint}")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise SoundsceneError(f"MQTT broker {raw!r}: unexpected text after ']'; {hint}")
        port_text = rest[1:] if rest else None
        if not host or ":" not in host:
            raise SoundsceneError(f"MQTT broker {raw!r}: brackets are for IPv6 addresses only; {hint}")
    elif text.count(":") > 1:
        raise SoundsceneError(f"MQTT broker {raw!r}: put an IPv6 address in brackets, e.g. [::1]:1883")
    else:
        host, sep, port_text = text.partition(":")
        if not sep:
            port_text = None
    if not host:
        raise SoundsceneError(f"MQTT broker {raw!r}: missing host; {hint}")
    if re.search(r"[\s/\[\]@]", host):
        raise SoundsceneError(f"MQTT broker {raw!r}: invalid host {host!r}; {hint}")
    if port_text is None:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise SoundsceneError(f"MQTT broker {raw!r}: port must be a number from 1 to 65535; {hint}")
    return host, int(port_text)


def check_sensor_id(sensor_id: Any) -> str:
    """Return the sensor id if it can be one MQTT topic level, else raise a one-line SoundsceneError."""
    if not isinstance(sensor_id, str) or not sensor_id:
        raise SoundsceneError(f"sensor id must be a non-empty string, got {sensor_id!r}")
    if _SENSOR_ID_BAD.search(sensor_id):
        raise SoundsceneError(f"invalid sensor id {sensor_id!r}: it may not contain '/', '+', '#', "
                              "spaces or control characters (e.g. kitchen-1)")
    if len(sensor_id.encode("utf-8")) > 200:
        raise SoundsceneError("sensor id is too long (at most 200 bytes)")
    return sensor_id


def topics(sensor_id: str) -> dict[str, str]:
    """The sensor's topics: ``{"scene": ..., "event": ..., "status": ...}``."""
    base = f"{TOPIC_ROOT}/{check_sensor_id(sensor_id)}"
    return {"scene": f"{base}/scene", "event": f"{base}/event", "status": f"{base}/status"}


def _number(value: Any, digits: int) -> float | None:
    """A JSON-safe rounded float: None for None, NaN and infinities."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ValueError(f"expected a number, got {value!r}")
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def utc_timestamp(when: datetime | None = None) -> str:
    """ISO-8601 UTC time with milliseconds and a ``Z``: ``2025-05-01T12:00:00.123Z``."""
    when = datetime.now(timezone.utc) if when is None else when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def scene_payload(decision: Mapping[str, Any], *, sensor_id: str, model: Mapping[str, Any],
                  window_seconds: float, hop_seconds: float, seq: int, timestamp: str,
                  previous_label: str | None = None, event: bool = False) -> dict[str, Any]:
    """The JSON object published for one decision (``event=True``: the scene-change event).

    Example::

        {"sensor_id": "kitchen-1", "seq": 42, "timestamp": "2025-05-01T12:00:00.123Z", "time": 12.5,
         "window_seconds": 10.0, "hop_seconds": 1.0, "label": "park", "confidence": 0.81,
         "probabilities": {"park": 0.81, "street_traffic": 0.12, "metro": 0.07}, "changed": false,
         "level_dbfs": -32.1, "model": {"name": "cnn", "version": "3"}, "soundscene_version": "0.1.0"}

    An event has ``"changed": true`` and also ``previous_label`` (null for the first scene) and
    ``new_label`` (= ``label``).  Probabilities and confidence are rounded to 4 decimals, the level
    to 0.1 dB, times to 1 ms; values that are not finite become null.
    """
    if not isinstance(decision, Mapping):
        raise ValueError(f"a decision must be a dict, got {type(decision).__name__}")
    label = decision.get("label")
    if not isinstance(label, str) or not label:
        raise ValueError(f"a decision needs a non-empty string 'label', got {label!r}")
    raw_probs = decision.get("probabilities") or {}
    if not isinstance(raw_probs, Mapping):
        raise ValueError("a decision's 'probabilities' must be a dict of label -> probability")
    classes = list(model.get("classes") or ())
    order = [c for c in classes if c in raw_probs] + [c for c in raw_probs if c not in classes]
    probabilities = {str(c): _number(raw_probs[c], 4) for c in order}
    confidence = decision.get("confidence", raw_probs.get(label))
    payload = {
        "sensor_id": sensor_id,
        "seq": seq,
        "timestamp": timestamp,
        "time": _number(decision.get("time"), 3),
        "window_seconds": _number(window_seconds, 3),
        "hop_seconds": _number(hop_seconds, 3),
        "label": label,
        "confidence": _number(confidence, 4),
        "probabilities": probabilities,
        "changed": bool(decision.get("changed", False)),
        "level_dbfs": _number(decision.get("level_dbfs"), 1),
        "model": {"name": model.get("name"), "version": model.get("version")},
        "soundscene_version": __version__,
    }
    if event:
        payload["changed"] = True
        payload["previous_label"] = previous_label
        payload["new_label"] = label
    return payload


def dumps(payload: Mapping[str, Any]) -> bytes:
    """Strict compact JSON in UTF-8 (raises ValueError on NaN or infinity)."""
    return json.dumps(payload, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _import_paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise SoundsceneError("publishing over MQTT needs paho-mqtt: pip install 'paho-mqtt>=2'") from None
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise SoundsceneError("publishing over MQTT needs paho-mqtt 2.x: pip install -U 'paho-mqtt>=2'")
    return mqtt


def _positive(name: str, value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise SoundsceneError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise SoundsceneError(f"{name} must be a positive number, got {value!r}")
    return value


class SensorPublisher:
    """Publishes one sensor's decisions to an MQTT broker (see the module docstring for topics and payloads).

    The connection is made in the background: the constructor returns at once, even when the broker is
    down; :meth:`publish` never blocks on the network.  Use it as a context manager or call :meth:`close`.
    """

    def __init__(self, host: str, port: int, sensor_id: str, *,
                 model: Mapping[str, Any] | None = None, window_seconds: float = 10.0, hop_seconds: float = 1.0,
                 username: str | None = None, password: str | None = None, keepalive: int = 30,
                 client_id: str | None = None, queue_limit: int = 1000, qos: int = 1,
                 reconnect_min: float = 1.0, reconnect_max: float = 60.0):
        self.sensor_id = check_sensor_id(sensor_id)
        if not isinstance(host, str) or not host.strip():
            raise SoundsceneError("MQTT broker host must be a non-empty string")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise SoundsceneError(f"MQTT broker port must be a number from 1 to 65535, got {port!r}")
        if qos not in (0, 1, 2):
            raise SoundsceneError(f"MQTT qos must be 0, 1 or 2, got {qos!r}")
        if isinstance(queue_limit, bool) or not isinstance(queue_limit, int) or queue_limit < 1:
            raise SoundsceneError(f"MQTT queue limit must be a positive whole number, got {queue_limit!r}")
        if isinstance(keepalive, bool) or not isinstance(keepalive, int) or keepalive < 1:
            raise SoundsceneError(f"MQTT keepalive must be a whole number of seconds >= 1, got {keepalive!r}")
        model = dict(model or {})
        for key in ("name", "version"):
            if model.get(key) is not None:
                model[key] = str(model[key])
        if model.get("classes") is not None:
            model["classes"] = [str(c) for c in model["classes"]]
        self.model = model
        self.window_seconds = _positive("window_seconds", window_seconds)
        self.hop_seconds = _positive("hop_seconds", hop_seconds)
        reconnect_min = _positive("reconnect_min", reconnect_min)
        reconnect_max = max(_positive("reconnect_max", reconnect_max), reconnect_min)
        self.host, self.port, self.qos, self.queue_limit = host.strip(), port, qos, queue_limit
        self.topics = topics(self.sensor_id)

        mqtt = _import_paho()
        self.client_id = client_id or f"soundscene-{self.sensor_id}-{uuid.uuid4().hex[:8]}"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                   protocol=mqtt.MQTTv311, clean_session=True)
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.will_set(self.topics["status"], OFFLINE, qos=qos, retain=True)  # before connecting
        self._client.reconnect_delay_set(reconnect_min, reconnect_max)
        self._client.max_inflight_messages_set(_WINDOW)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_publish = self._on_publish

        # publish() appends to _queue under _lock; the sender thread alone hands data to paho.  paho's
        # callbacks only post to _inbox (never take _lock), so no lock order can deadlock.
        self._lock = threading.Condition()
        self._queue: collections.deque[tuple[str, bytes, bool]] = collections.deque()
        self._inbox: collections.deque[tuple] = collections.deque()
        self._wake = threading.Event()
        self._pending: set[int] = set()  # data mids handed to paho, not yet acknowledged
        self._connected = False          # connected (CONNACK accepted)
        self._ready = False              # connected and paho's own resends are ahead of us: send the queue
        self._online_mid: int | None = None
        self._dropped = 0
        self._dropped_warned = False
        self._seq = 0
        self._last_label: str | None = None
        self._last_error: str | None = None
        self._closing = False
        self._closed = False

        self._sender = threading.Thread(target=self._send_loop, name=f"soundscene-mqtt-{self.sensor_id}",
                                        daemon=True)
        self._sender.start()
        try:
            self._client.connect_async(self.host, self.port, keepalive=keepalive)
        except (OSError, ValueError) as exc:
            self._stop_sender()
            raise SoundsceneError(f"MQTT broker {self.host}:{self.port}: {exc}") from None
        self._client.loop_start()

    # -- public API ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while connected to the broker."""
        return self._connected

    @property
    def queued(self) -> int:
        """Messages waiting to be handed to the broker (bounded by ``queue_limit``)."""
        with self._lock:
            return len(self._queue)

    @property
    def dropped(self) -> int:
        """Messages dropped so far because the queue was full (the oldest go first)."""
        return self._dropped

    @property
    def last_error(self) -> str | None:
        """The last connection problem (``cannot connect``, ``connection lost``, ``broker refused the
        connection: Not authorized``), None while connected and before the first attempt."""
        return self._last_error

    def publish(self, decision: Mapping[str, Any], *, timestamp: datetime | None = None) -> int:
        """Queue one decision for ``scene`` (and ``event`` when ``decision["changed"]``); returns its seq.

        Never blocks on the network.  The timestamp (default: now) is taken here, not when sent.
        """
        if self._closing:
            raise SoundsceneError("this MQTT publisher is closed")
        stamp = utc_timestamp(timestamp)
        with self._lock:
            self._seq += 1
            seq, previous = self._seq, self._last_label
        common = dict(sensor_id=self.sensor_id, model=self.model, window_seconds=self.window_seconds,
                      hop_seconds=self.hop_seconds, seq=seq, timestamp=stamp)
        messages = [(self.topics["scene"], dumps(scene_payload(decision, **common)), True)]
        if decision.get("changed"):
            previous = decision.get("previous_label", previous)
            event = scene_payload(decision, previous_label=previous, event=True, **common)
            messages.append((self.topics["event"], dumps(event), False))
        dropped_now = False
        with self._lock:
            self._last_label = decision["label"]
            for message in messages:
                if len(self._queue) >= self.queue_limit:
                    self._queue.popleft()
                    self._dropped += 1
                    dropped_now = True
                self._queue.append(message)
            if dropped_now and not self._dropped_warned:  # once per outage
                self._dropped_warned = True
            else:
                dropped_now = False
        if dropped_now:
            warn(f"MQTT broker {self.host}:{self.port} unreachable and {self.queue_limit} messages queued: "
                 "dropping the oldest (see SensorPublisher.dropped)")
        self._wake.set()
        return seq

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` s for a connection; True when connected."""
        deadline = time.monotonic() + timeout
        while not self._connected and time.monotonic() < deadline:
            time.sleep(0.02)
        return self._connected

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` s until every queued message is acknowledged by the broker; True if so."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._queue or self._pending:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._lock.wait(min(left, 0.1))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to ``timeout`` s when connected), publish ``offline``, disconnect, stop."""
        if self._closed:
            return
        self._closing = True
        if self._connected:
            self.flush(timeout)
        self._stop_sender()
        if self._connected:
            info = self._client.publish(self.topics["status"], OFFLINE, qos=self.qos, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            self._handle_inbox()  # the sender has stopped: count the acknowledgements that came meanwhile
            lost = len(self._queue) + len(self._pending)
            self._connected = self._ready = False
        if lost:
            warn(f"MQTT: {lost} messages were not delivered to {self.host}:{self.port} before closing")

    def __enter__(self) -> "SensorPublisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- paho callbacks (network thread): post to the inbox only -------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._inbox.append(("refused", str(reason_code)))
        else:
            # "online" goes out before paho re-sends what was in flight at the last disconnect; our queue
            # is released when "online" is acknowledged, i.e. after those re-sends: order is kept.
            info = client.publish(self.topics["status"], ONLINE, qos=self.qos, retain=True)
            self._inbox.append(("connected", info.mid if self.qos else None))
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        self._inbox.append(("unreachable", None))
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._inbox.append(("disconnected", str(reason_code)))
        self._wake.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._inbox.append(("ack", mid))
        self._wake.set()

    # -- the sender thread ----------------------------------------------------------------------------

    def _handle_inbox(self) -> None:
        while self._inbox:
            kind, value = self._inbox.popleft()
            if kind == "ack":
                if value == self._online_mid:
                    self._ready, self._online_mid = self._connected, None
                self._pending.discard(value)
            elif kind == "connected":
                self._connected, self._last_error, self._dropped_warned = True, None, False
                self._online_mid = value
                self._ready = value is None
            elif kind == "disconnected":
                if self._connected and not self._closing:
                    self._last_error = "connection lost"  # a refusal's reason is kept as it is
                self._connected = self._ready = False
                self._online_mid = None
                if self.qos == 0:
                    self._pending.clear()  # QoS 0 messages are not re-sent: they are lost
            elif kind == "refused":
                self._connected = self._ready = False
                self._last_error = f"broker refused the connection: {value}"
            elif kind == "unreachable":
                self._last_error = "cannot connect"
        self._lock.notify_all()

    def _send_loop(self) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            with self._lock:
                self._handle_inbox()
                if self._closed:
                    return
            while True:
                with self._lock:
                    self._handle_inbox()
                    if self._closed or not (self._ready and self._queue and len(self._pending) < _WINDOW):
                        break
                    topic, payload, retain = self._queue.popleft()
                    info = self._client.publish(topic, payload, qos=self.qos, retain=retain)
                    if info.rc == 0 or self.qos > 0:  # paho keeps QoS>0 messages and re-sends them itself
                        self._pending.add(info.mid)
                    else:
                        self._queue.appendleft((topic, payload, retain))
                        self._ready = False

    def _stop_sender(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._wake.set()
        if self._sender is not threading.current_thread():
            self._sender.join(timeout=5.0)
