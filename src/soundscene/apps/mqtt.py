"""Publishing a sensor's scene decisions over MQTT.

:class:`SensorPublisher` takes the decisions of a stream classifier (``decision`` records, one per hop:
``Decision.to_record(classes)`` in :mod:`soundscene.core.records`) and publishes them to an MQTT broker;
it knows nothing of the classifier::

    with SensorPublisher("broker.local", 1883, "kitchen-1", model={"name": "cnn", "version": "3"},
                         window_seconds=10.0, hop_seconds=1.0) as pub:
        for decision in stream:          # {"time", "label", "confidence", "probabilities", "changed", ...}
            pub.publish(decision)

Topics (``<id>`` is the sensor id):

* ``soundscene/<id>/scene``: every decision, retained (a new subscriber sees the current scene at once);
* ``soundscene/<id>/event``: the same message again for each scene change, not retained;
* ``soundscene/<id>/status``: ``online`` (retained) on every connect, ``offline`` (retained) on a clean
  :meth:`~SensorPublisher.close` and as the last will, which the broker publishes when the sensor dies or
  loses its network (after 1.5 x ``keepalive`` seconds);
* ``soundscene/<id>/levels``: the sound levels over each interval (:meth:`~SensorPublisher.publish_levels`,
  ``listen --level-interval``), not retained: a ``levels_message`` record (``start``, ``end``, ``levels``);
* ``soundscene/<id>/health``: the sensor's ``health`` record every ``listen --health-interval`` seconds
  (:meth:`~SensorPublisher.publish_health`), retained.

With ``spool=DIR`` every message waits on disk (:class:`~soundscene.apps.spool.Spool`, SQLite) instead of in
memory until the broker acknowledged it, so a sensor killed or powered off while the broker is away sends
them after its restart, each with its original boot, seq and timestamp.

Every message a publisher sends carries its ``boot`` (a random id made when it starts) and ``seq`` (one count
over all its topics, from 1): (sensor_id, boot, seq) names a message once, which is what a receiver that
must store each message once (the hub) keys on; a gap in ``seq`` is a lost message.

The payload of ``scene`` and ``event`` is the project's ``sensor_message`` record, built by
:func:`scene_payload` with :func:`soundscene.core.records.make`; its fields are those of
``records.FIELDS["sensor_message"]`` (and its JSON Schema is ``records.schema_of("sensor_message")``):
the sensor's ``sensor_id``, ``seq`` (from 1), ``timestamp`` (ISO 8601 UTC, ms, ``Z``), ``window_seconds``,
``hop_seconds``, ``model`` (``name``, ``version``) and ``soundscene_version``, then the decision's ``time``,
``label``, ``confidence``, ``probabilities`` (in the model's class order), ``changed``, ``previous`` (the
former scene at a change, else null), ``level_dbfs`` and ``silent`` (a silent hop, a dead or muted
microphone: no label, confidence or probabilities).  The records' one rounding rule applies
(probabilities 4 decimals, level 0.1 dB, times 1 ms); a value that is not finite, like the level of
digital silence, is ``null``.  Payloads are strict JSON in UTF-8 (:func:`dumps`).

The parts, each small enough to hold in mind:

* :class:`Outbox`: the bounded, ordered, thread-safe queue of ``(topic, payload, retain)`` messages and
  the messages handed to the broker but not yet acknowledged.  When full it drops the oldest, counts them
  and warns once per outage.  It knows nothing of MQTT.
* :class:`Link`: the connection.  It owns the paho client (whose callbacks only post to an inbox), the
  sender thread that reads the inbox and hands the outbox's messages to paho, the reconnects, the
  ``online``/``offline`` status and the last will.
* :class:`SensorPublisher`: the facade: checks its settings, numbers and builds the messages, puts them
  in the outbox and lets the link send them.

The broker may be down at start or go away at any time: the client reconnects in the background with
exponential backoff (``reconnect_min`` doubling up to ``reconnect_max`` seconds).  Meanwhile messages wait
in the outbox (``queue_limit`` messages; the oldest are dropped first and counted in
:attr:`~SensorPublisher.dropped`) and are sent in order once connected again, so the retained scene is
always the newest decision.

The connection is made by :func:`soundscene.apps.broker.make_client`, the one client factory of the project:
give :meth:`SensorPublisher.for_broker` a :class:`~soundscene.apps.broker.BrokerSettings` for TLS
(``mqtts://``), a CA, a client certificate, a user and password.  The client speaks MQTT 5, so a message the
broker refuses (0x87 Not authorized when its ACL forbids the topic) is seen: counted in
:attr:`~SensorPublisher.refused`, warned about once per topic and reason, and not sent again.  A refused login
is warned about once per reason, kept in :attr:`~SensorPublisher.last_error`, and retried with backoff while
messages keep queueing.

The topics, the payloads (:func:`scene_payload`, :func:`levels_payload`, the health record), :func:`dumps` and
:func:`utc_timestamp` are the protocol's, defined in :mod:`soundscene.apps.protocol` (which the hub and
``hub simulate`` use too) and importable from here as before.

paho-mqtt (2.x) is imported only when a publisher is made, so this module imports without it.
"""

from __future__ import annotations

import collections
import math
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..config import SPOOL_MB
from ..errors import SoundsceneError, warn
from .broker import (BrokerSettings, WarnOnce, as_settings, closed_early_text, connect_failure, make_client,
                     refusal_text)
from .broker import DEFAULT_PORT, parse_broker  # noqa: F401 - re-exported: importable from here as before
from .protocol import (OFFLINE, ONLINE, check_sensor_id, dumps, health_payload, levels_payload, scene_payload,
                       topics, utc_timestamp)
from .protocol import TOPIC_ROOT  # noqa: F401 - re-exported: importable from here as before
from .spool import DEFAULT_MAX_BYTES, Spool

DEFAULT_SPOOL_MB = DEFAULT_MAX_BYTES / 2**20  # --spool-max-mb
_WINDOW = 20  # messages handed to paho and not yet acknowledged; the rest wait in the outbox

Message = tuple[str, bytes, bool]  # (topic, payload, retain)


def _positive(name: str, value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise SoundsceneError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise SoundsceneError(f"{name} must be a positive number, got {value!r}")
    return value


class Outbox:
    """A bounded, ordered, thread-safe queue of ``(topic, payload, retain)`` messages, and those in flight.

    :meth:`put` appends (dropping the oldest when more than ``limit`` wait, counted in :attr:`dropped`, with
    one warning per outage); :meth:`hand_over` gives the oldest to a sender and remembers its message id
    until :meth:`acknowledged`; :meth:`wait_empty` waits until nothing waits and nothing is in flight.
    ``where`` names the destination in the warning.  It knows nothing of MQTT and needs no broker.
    """

    def __init__(self, limit: int, *, where: str = "the MQTT broker"):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise SoundsceneError(f"MQTT queue limit must be a positive whole number, got {limit!r}")
        self.limit, self.where = limit, where
        self._lock = threading.Condition()
        self._queue: collections.deque[Message] = collections.deque()
        self._in_flight: set[int] = set()  # ids of messages handed over, not yet acknowledged
        self._dropped = 0
        self._warned = False  # this outage's warning was given
        self._closed = False

    @property
    def queued(self) -> int:
        """Messages waiting to be handed over (at most ``limit``)."""
        with self._lock:
            return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Messages handed over and not yet acknowledged."""
        with self._lock:
            return len(self._in_flight)

    @property
    def dropped(self) -> int:
        """Messages dropped so far because the queue was full (the oldest go first)."""
        return self._dropped

    @property
    def undelivered(self) -> int:
        """Messages waiting or in flight."""
        with self._lock:
            return len(self._queue) + len(self._in_flight)

    def put(self, messages: Iterable[Message]) -> int:
        """Append ``messages`` together, in order; returns how many old ones were dropped to make room."""
        dropped = 0
        with self._lock:
            for message in messages:
                if len(self._queue) >= self.limit:
                    self._queue.popleft()
                    dropped += 1
                self._queue.append(message)
            self._dropped += dropped
            first_drop = dropped > 0 and not self._warned
            self._warned = self._warned or first_drop
        if first_drop:  # once per outage, outside the lock
            warn(f"{self.where} unreachable and {self.limit} messages queued: dropping the oldest "
                 "(see SensorPublisher.dropped)")
        return dropped

    def outage_over(self) -> None:
        """The destination is reachable again: the next drop warns again."""
        with self._lock:
            self._warned = False

    def hand_over(self, send: Callable[[str, bytes, bool], int | None], window: int) -> bool:
        """Give the oldest message to ``send(topic, payload, retain)`` unless ``window`` are in flight.

        ``send`` returns the message's id, kept in flight until :meth:`acknowledged`, or None when it did
        not take the message, which stays first in line.  True when a message was handed over.  Done under
        the lock, so a message is always either queued or in flight (``send`` must not call back into
        this outbox).
        """
        with self._lock:
            if not self._queue or len(self._in_flight) >= window:
                return False
            mid = send(*self._queue[0])
            if mid is None:
                return False
            self._queue.popleft()
            self._in_flight.add(mid)
            return True

    def acknowledged(self, mid: int) -> None:
        """The message with id ``mid`` was delivered."""
        with self._lock:
            self._in_flight.discard(mid)
            self._lock.notify_all()

    def forget_in_flight(self) -> int:
        """Messages in flight will never be acknowledged (QoS 0 at a disconnect): forget them; returns how many."""
        with self._lock:
            lost = len(self._in_flight)
            self._in_flight.clear()
            self._lock.notify_all()
            return lost

    def wait_empty(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until nothing is queued or in flight; True if so (False at once once closed)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._queue or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._lock.wait(left)
        return True

    def close(self) -> None:
        """Nothing more will be sent: wake every :meth:`wait_empty`, which answers at once from now on."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()


class Link:
    """The connection to the broker: the paho client, its callbacks, the sender thread, status and will.

    paho's callbacks run on paho's network thread and only post to an inbox.  The sender thread alone
    reads the inbox, keeps the connection state and hands the outbox's messages to paho, at most
    ``_WINDOW`` unacknowledged at a time.  On every connect it publishes ``online`` (retained) to
    ``status_topic``; ``offline`` (retained) is the last will and is published by :meth:`close`.
    paho reconnects by itself, with backoff from ``reconnect_min`` to ``reconnect_max`` seconds, also after
    the broker refused the login (each distinct refusal is warned about once).

    The client speaks MQTT 5 (a clean start each time), so that a QoS 1 message the broker refuses (its PUBACK's
    reason code is 0x80 or more, e.g. 0x87 Not authorized from an ACL) is seen: it is counted in
    :attr:`refused`, warned about once per (topic, reason), and done with (not sent again).  A QoS 2 refusal is
    not seen (paho ignores the PUBREC's reason) and QoS 0 is never acknowledged.

    ``broker`` is a :class:`~soundscene.apps.broker.BrokerSettings` (TLS, certificates, credentials), or a host
    name with ``port``, ``username`` and ``password``.
    """

    def __init__(self, outbox: Outbox, broker: BrokerSettings | str, port: int | None = None, *, client_id: str,
                 status_topic: str, qos: int = 1, keepalive: int = 30, username: str | None = None,
                 password: str | None = None, reconnect_min: float = 1.0, reconnect_max: float = 60.0,
                 thread_name: str = "soundscene-mqtt"):
        self.broker = as_settings(broker, port, username=username, password=password)
        self.host, self.port = self.broker.host, self.broker.port
        self.outbox, self.qos, self.status_topic = outbox, qos, status_topic
        client = make_client(self.broker, client_id=client_id, protocol="5")
        client.will_set(status_topic, OFFLINE, qos=qos, retain=True)  # before connecting
        client.reconnect_delay_set(reconnect_min, reconnect_max)
        client.max_inflight_messages_set(_WINDOW)
        client.on_connect, client.on_connect_fail = self._on_connect, self._on_connect_fail
        client.on_disconnect, client.on_publish = self._on_disconnect, self._on_publish
        self._client = client

        self._inbox: collections.deque[tuple[str, Any]] = collections.deque()  # from paho's callbacks
        self._wake = threading.Event()   # something for the sender: inbox or outbox
        self._up = threading.Event()     # connected (CONNACK accepted)
        self._ready = False              # connected and paho's own resends are ahead of us: send the outbox
        self._online_mid: int | None = None
        self._topics: dict[int, str] = {}  # message id -> topic, of the acknowledged (QoS > 0) messages in flight
        self._refused = 0
        self._warn_once = WarnOnce()
        self._last_error: str | None = None
        self._closing = False
        self._stopped = False
        self._sender = threading.Thread(target=self._send_loop, name=thread_name, daemon=True)
        self._sender.start()
        try:
            client.connect_async(self.host, self.port, keepalive=keepalive, clean_start=True)
        except (OSError, ValueError) as exc:
            self._stop_sender()
            raise SoundsceneError(f"MQTT broker {self.broker.address}: {exc}") from None
        client.loop_start()

    @property
    def refused(self) -> int:
        """Messages the broker refused (a PUBACK reason code of 0x80 or more, e.g. 0x87 Not authorized)."""
        return self._refused

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def wait_connected(self, timeout: float) -> bool:
        return self._up.wait(timeout)

    def wake(self) -> None:
        """The outbox has something new."""
        self._wake.set()

    def close(self, timeout: float) -> int:
        """Send what waits (up to ``timeout`` s when connected), publish ``offline``, disconnect and stop.

        Returns how many messages were not delivered."""
        if self._stopped:
            return self.outbox.undelivered
        self._closing = True
        if self.connected:
            self.outbox.wait_empty(timeout)
        self._stop_sender(close_outbox=False)  # the outbox stays open for the acknowledgements still to come
        if self.connected:
            info = self._client.publish(self.status_topic, OFFLINE, qos=self.qos, retain=True)
            self._topics[info.mid] = self.status_topic  # the sender has stopped: this thread alone uses it now
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
        self._handle_inbox()  # the sender has stopped: count the acknowledgements that came meanwhile
        self._up.clear()
        self._ready = False
        undelivered = self.outbox.undelivered
        self.outbox.close()  # a spool writes its last acknowledgements and keeps the rest for the next run
        return undelivered

    # -- paho callbacks (network thread): post to the inbox only -------------------------------------

    def _post(self, kind: str, value: Any) -> None:
        self._inbox.append((kind, value))
        self._wake.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._post("refused", reason_code)
        else:
            # "online" goes out before paho re-sends what was in flight at the last disconnect; the outbox
            # is released when "online" is acknowledged, i.e. after those re-sends: order is kept.
            info = client.publish(self.status_topic, ONLINE, qos=self.qos, retain=True)
            self._post("connected", info.mid if self.qos else None)

    def _on_connect_fail(self, client, userdata) -> None:
        self._post("unreachable", connect_failure(client))  # a TLS problem is said, else "cannot connect"

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._post("disconnected", str(reason_code))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._post("ack", (mid, reason_code))

    # -- the sender thread ----------------------------------------------------------------------------

    def _handle_inbox(self) -> None:
        while self._inbox:
            kind, value = self._inbox.popleft()
            if kind == "ack":
                self._acknowledged(*value)
            elif kind == "connected":
                self._last_error, self._online_mid, self._ready = None, value, value is None
                if value is not None:
                    self._topics[value] = self.status_topic
                self.outbox.outage_over()
                self._up.set()  # last: whoever waits for it sees the rest
            elif kind == "disconnected":
                if self.connected and not self._closing:
                    self._last_error = "connection lost"  # a refusal's reason is kept as it is
                elif not self._closing and not (self._last_error or "").startswith("broker refused"):
                    self._last_error = closed_early_text(self.broker)  # before its CONNACK: TLS or not?
                    self._warn_once(f"MQTT broker {self.broker.address}: {self._last_error}; retrying")
                self._up.clear()
                self._ready, self._online_mid = False, None
                if self.qos == 0:
                    self.outbox.forget_in_flight()  # QoS 0 messages are not re-sent: they are lost
            elif kind == "refused":
                self._up.clear()
                self._ready = False
                self._warn_once(f"MQTT broker {self.broker.address} refused the connection: {refusal_text(value)}; "
                                "retrying")
                self._last_error = f"broker refused the connection: {value}"  # last: waiters on it see the rest
            elif kind == "unreachable":
                if value is not None:
                    self._warn_once(f"MQTT broker {self.broker.address}: {value}; retrying")
                self._last_error = value or "cannot connect"

    def _acknowledged(self, mid: int, reason_code: Any) -> None:
        topic = self._topics.pop(mid, None)
        if getattr(reason_code, "is_failure", False):  # refused (e.g. by an ACL): done with, counted, said once
            self._refused += 1
            self._warn_once(f"MQTT broker {self.broker.address} refused a message on {topic or 'a topic'}: "
                            f"{refusal_text(reason_code, publish=True)}; such messages are dropped "
                            "(see SensorPublisher.refused)")
        if mid == self._online_mid:
            self._ready, self._online_mid = self.connected, None
        else:
            self.outbox.acknowledged(mid)

    def _send(self, topic: str, payload: bytes, retain: bool) -> int | None:
        info = self._client.publish(topic, payload, qos=self.qos, retain=retain)
        if self.qos > 0:  # paho keeps QoS>0 messages and re-sends them itself
            self._topics[info.mid] = topic
            return info.mid
        if info.rc == 0:
            return info.mid
        self._ready = False  # QoS 0 and not sent: keep it first in line until the next connect
        return None

    def _send_loop(self) -> None:
        while not self._stopped:
            self._wake.wait(0.5)
            self._wake.clear()
            self._handle_inbox()
            while not self._stopped and self._ready and self.outbox.hand_over(self._send, _WINDOW):
                self._handle_inbox()

    def _stop_sender(self, *, close_outbox: bool = True) -> None:
        self._stopped = True
        if close_outbox:
            self.outbox.close()
        self._wake.set()
        if self._sender is not threading.current_thread():
            self._sender.join(timeout=5.0)


class SensorPublisher:
    """Publishes one sensor's decisions to an MQTT broker (see the module docstring for topics and payloads).

    The connection is made in the background: the constructor returns at once, even when the broker is
    down; :meth:`publish` never blocks on the network.  Use it as a context manager or call :meth:`close`.
    """

    def __init__(self, host: str, port: int, sensor_id: str, *,
                 model: Mapping[str, Any] | None = None, window_seconds: float = 10.0, hop_seconds: float = 1.0,
                 username: str | None = None, password: str | None = None, keepalive: int = 30,
                 client_id: str | None = None, queue_limit: int = 1000, qos: int = 1,
                 reconnect_min: float = 1.0, reconnect_max: float = 60.0, broker: BrokerSettings | None = None,
                 spool: str | Path | None = None, spool_max_mb: float = DEFAULT_SPOOL_MB):
        self.sensor_id = check_sensor_id(sensor_id)
        self.broker = _publisher_broker(host, port, username, password, broker)
        if qos not in (0, 1, 2):
            raise SoundsceneError(f"MQTT qos must be 0, 1 or 2, got {qos!r}")
        if isinstance(keepalive, bool) or not isinstance(keepalive, int) or keepalive < 1:
            raise SoundsceneError(f"MQTT keepalive must be a whole number of seconds >= 1, got {keepalive!r}")
        self.model = _model_info(model)
        self.window_seconds = _positive("window_seconds", window_seconds)
        self.hop_seconds = _positive("hop_seconds", hop_seconds)
        reconnect_min = _positive("reconnect_min", reconnect_min)
        reconnect_max = max(_positive("reconnect_max", reconnect_max), reconnect_min)
        self.host, self.port, self.qos, self.queue_limit = self.broker.host, self.broker.port, qos, queue_limit
        self.topics = topics(self.sensor_id)
        self.client_id = client_id or f"soundscene-{self.sensor_id}-{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()  # numbers the messages and puts them in the outbox in that order
        self._seq = 0
        self.boot = uuid.uuid4().hex  # this run's id: (sensor_id, boot, seq) names each message once
        self._last_label: str | None = None
        self._closed = False
        where = f"MQTT broker {self.broker.address}"
        self._outbox = Outbox(queue_limit, where=where) if spool is None else _spool(spool, spool_max_mb, where)
        self._link = Link(self._outbox, self.broker, client_id=self.client_id, status_topic=self.topics["status"],
                          qos=qos, keepalive=keepalive, reconnect_min=reconnect_min, reconnect_max=reconnect_max,
                          thread_name=f"soundscene-mqtt-{self.sensor_id}")

    @classmethod
    def for_broker(cls, broker: BrokerSettings, sensor_id: str, **options: Any) -> "SensorPublisher":
        """A publisher to the broker of ``broker`` (TLS, certificates, credentials: e.g. from
        :func:`~soundscene.apps.broker.broker_settings`); ``options`` are the constructor's."""
        if not isinstance(broker, BrokerSettings):
            raise SoundsceneError(f"broker must be BrokerSettings, got {type(broker).__name__}")
        return cls(broker.host, broker.port, sensor_id, broker=broker, **options)

    @property
    def connected(self) -> bool:
        """True while connected to the broker."""
        return self._link.connected

    @property
    def queued(self) -> int:
        """Messages waiting to be handed to the broker (bounded by ``queue_limit``, or the spool's size)."""
        return self._outbox.queued

    @property
    def undelivered(self) -> int:
        """Messages waiting or handed to the broker and not yet acknowledged (in the spool, with one)."""
        return self._outbox.undelivered

    @property
    def spool(self) -> Spool | None:
        """The spool that keeps the messages on disk until acknowledged (None: they wait in memory)."""
        return self._outbox if isinstance(self._outbox, Spool) else None

    @property
    def bytes(self) -> int | None:
        """Bytes of the messages in the spool (None without one)."""
        return self._outbox.bytes if isinstance(self._outbox, Spool) else None

    @property
    def disk_free(self) -> int | None:
        """Bytes free where the spool lives (None without one)."""
        return self._outbox.disk_free if isinstance(self._outbox, Spool) else None

    @property
    def problem(self) -> str | None:
        """The spool's disk problem now (a full disk), or None."""
        return self._outbox.problem if isinstance(self._outbox, Spool) else None

    @property
    def dropped(self) -> int:
        """Messages dropped so far because the queue was full (the oldest go first)."""
        return self._outbox.dropped

    @property
    def refused(self) -> int:
        """Messages the broker refused (e.g. 0x87 Not authorized: its ACL does not let this user publish on the
        topic); each is done with, not sent again.  Only QoS 1 refusals are seen (see :class:`Link`)."""
        return self._link.refused

    @property
    def last_error(self) -> str | None:
        """The last connection problem (``cannot connect``, ``connection lost``, ``broker refused the
        connection: Not authorized``, a TLS problem), None while connected and before the first attempt."""
        return self._link.last_error

    def publish(self, decision: Mapping[str, Any], *, timestamp: datetime | None = None) -> int:
        """Queue one decision for ``scene`` (and ``event`` when ``decision["changed"]``); returns its seq.

        Never blocks on the network.  The timestamp (default: now) is taken here, not when sent.  A
        decision without ``previous`` gets, at a change, the label this publisher published last.
        """
        if self._closed:
            raise SoundsceneError("this MQTT publisher is closed")
        stamp = utc_timestamp(timestamp)
        with self._lock:
            if isinstance(decision, Mapping) and "previous" not in decision:
                decision = {**decision, "previous": self._last_label if decision.get("changed") else None}
            payload = scene_payload(decision, sensor_id=self.sensor_id, model=self.model, seq=self._seq + 1,
                                    timestamp=stamp, window_seconds=self.window_seconds,
                                    hop_seconds=self.hop_seconds, boot=self.boot)
            data = dumps(payload)
            messages = [(self.topics["scene"], data, True)]
            if payload["changed"]:
                messages.append((self.topics["event"], data, False))
            self._seq = payload["seq"]
            if not payload["silent"]:
                self._last_label = payload["label"]
            self._outbox.put(messages)
        self._link.wake()
        return payload["seq"]

    def publish_levels(self, levels: Mapping[str, Any], seconds: float, *, end: datetime | None = None) -> int:
        """Queue the ``levels`` record of the interval of ``seconds`` that ends at ``end`` (default: now) on the
        ``levels`` topic; returns its seq.  (Its signature is ``listen``'s ``on_levels`` callback's.)"""
        if self._closed:
            raise SoundsceneError("this MQTT publisher is closed")
        end = datetime.now(timezone.utc) if end is None else end
        start = end - timedelta(seconds=float(seconds))
        with self._lock:
            payload = levels_payload(levels, sensor_id=self.sensor_id, boot=self.boot, seq=self._seq + 1,
                                     timestamp=utc_timestamp(end), start=utc_timestamp(start),
                                     end=utc_timestamp(end))
            self._outbox.put([(self.topics["levels"], dumps(payload), False)])
            self._seq = payload["seq"]
        self._link.wake()
        return payload["seq"]

    def publish_health(self, measured: Mapping[str, Any], *, timestamp: datetime | None = None) -> int:
        """Queue a ``health`` record (retained: the latest is what a new subscriber sees) from ``measured``
        (:meth:`soundscene.apps.sensor.health.HealthReporter.measure`); returns its seq."""
        if self._closed:
            raise SoundsceneError("this MQTT publisher is closed")
        with self._lock:
            payload = health_payload(measured, sensor_id=self.sensor_id, boot=self.boot, seq=self._seq + 1,
                                     timestamp=utc_timestamp(timestamp))
            self._outbox.put([(self.topics["health"], dumps(payload), True)])
            self._seq = payload["seq"]
        self._link.wake()
        return payload["seq"]

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` s for a connection; True when connected."""
        return self._link.wait_connected(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` s until every queued message is acknowledged by the broker; True if so."""
        return self._outbox.wait_empty(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to ``timeout`` s when connected), publish ``offline``, disconnect, stop."""
        if self._closed:
            return
        self._closed = True
        lost = self._link.close(timeout)
        if lost:
            warn(f"MQTT: {lost} messages were not delivered to {self.broker.address} before closing")

    def __enter__(self) -> "SensorPublisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _publisher_broker(host: Any, port: Any, username: str | None, password: str | None,
                      broker: BrokerSettings | None) -> BrokerSettings:
    """The publisher's broker: ``broker`` (whose host and port must be ``host`` and ``port``), else the checked
    ``host``, ``port``, ``username`` and ``password``."""
    if broker is not None:
        if not isinstance(broker, BrokerSettings) or (broker.host, broker.port) != (host, port):
            raise SoundsceneError("give SensorPublisher.for_broker(broker, sensor_id, ...) the BrokerSettings")
        if username is not None or password is not None:
            raise SoundsceneError("the user name and password of a broker given as BrokerSettings are its own")
        return broker
    if not isinstance(host, str) or not host.strip():
        raise SoundsceneError("MQTT broker host must be a non-empty string")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise SoundsceneError(f"MQTT broker port must be a number from 1 to 65535, got {port!r}")
    return BrokerSettings(host.strip(), port, username=username, password=password)


def _spool(folder: str | Path, max_mb: float, where: str) -> Spool:
    problem = SPOOL_MB.refusal(max_mb)
    if problem:
        raise SoundsceneError(f"--spool-max-mb {problem}")
    return Spool(folder, max_bytes=int(max_mb * 2**20), where=where)


def _model_info(model: Mapping[str, Any] | None) -> dict[str, Any]:
    """The model's description with ``name`` and ``version`` as text and ``classes`` as a list of text."""
    model = dict(model or {})
    for key in ("name", "version"):
        if model.get(key) is not None:
            model[key] = str(model[key])
    if model.get("classes") is not None:
        model["classes"] = [str(c) for c in model["classes"]]
    return model
