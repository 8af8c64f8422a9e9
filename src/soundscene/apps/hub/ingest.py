"""The hub's MQTT subscriber: messages in, stored, and only then acknowledged.

:class:`Ingest` holds a paho-mqtt 2 client with a fixed client id and a persistent MQTT 5 session
(``clean_start=False`` and a session expiry), subscribed with QoS 1 to the sensors' ``scene``, ``levels``
and ``status`` topics (through ``$share/<group>/`` when several hubs share the work).  While the hub is down
the broker keeps what the sensors publish and delivers it when the hub returns.

Acknowledgement is manual (``manual_ack_set(True)``): paho's network thread only queues each message; the
worker thread takes what is waiting (up to ``batch_max``), parses it, stores it in ONE transaction
(:func:`.writer.store_batch`), commits, and then acknowledges every message of the batch in order.  A hub
killed at any moment (SIGKILL included) has acknowledged only committed messages; the broker redelivers the
rest, and the (sensor, boot, seq) uniqueness makes the redelivered ones that were already committed count
once.  The broker's in-flight window (the Receive Maximum sent at connect) bounds the queue, so memory does
not grow with the message rate.

When the database is unreachable the batch is retried with backoff (nothing is acknowledged meanwhile);
a message that makes the store fail for another reason is stored alone as an ingest error, never stopping
the hub.  Listeners registered with :meth:`Ingest.listen` receive each batch's events after its commit.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from ...errors import SoundsceneError, warn
from ..broker import (BrokerSettings, WarnOnce, as_settings, closed_early_text, connect_failure, make_client,
                      refusal_text)
from .messages import MAX_MESSAGE_BYTES, BadMessage, parse, subscriptions
from .writer import DEFAULT_KEEP_DAYS, BatchResult, Refused, store_batch

DEFAULT_CLIENT_ID = "soundscene-hub"
SESSION_EXPIRY_SECONDS = 7 * 86400  # the broker keeps the hub's session (and its messages) a week
RECEIVE_MAXIMUM = 1000  # unacknowledged messages the broker may send at once


class Ingest:
    """Subscribe, store, acknowledge.  :meth:`start` returns at once; the client reconnects by itself.

    ``broker`` is a :class:`~soundscene.apps.broker.BrokerSettings` (TLS, certificates, user and password), or a
    host name with ``port``, ``username`` and ``password``.  A refused login or a TLS problem is warned about once
    per reason and retried with backoff.
    """

    def __init__(self, engine: Engine, broker: BrokerSettings | str, port: int | None = None, *,
                 client_id: str = DEFAULT_CLIENT_ID, share: str | None = None, keep_days: float = DEFAULT_KEEP_DAYS,
                 max_bytes: int = MAX_MESSAGE_BYTES, batch_max: int = 500, username: str | None = None,
                 password: str | None = None):
        if not client_id or len(client_id) > 100:
            raise SoundsceneError("--client-id must be 1 to 100 characters")
        if share is not None and (not share or any(c in share for c in "/+#")):
            raise SoundsceneError(f"--share {share!r}: a group name without '/', '+' or '#'")
        self.broker = as_settings(broker, port, username=username, password=password)
        self.engine, self.host, self.port = engine, self.broker.host, self.broker.port
        self.client_id, self.share, self.keep_days = client_id, share, keep_days
        self.max_bytes, self.batch_max = max_bytes, batch_max
        self._warn_once = WarnOnce()
        self._refused = False  # the last CONNACK refused the hub (paho's network thread alone uses it)
        self._inbox: queue.Queue = queue.Queue()
        self._listeners: list[Callable[[BatchResult], None]] = []
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.connected = threading.Event()
        self.client = None
        self.totals = {"stored": 0, "duplicates": 0, "errors": 0, "expired": 0, "batches": 0}

    def listen(self, callback: Callable[[BatchResult], None]) -> None:
        """Call ``callback(result)`` after each committed batch (in the worker thread; keep it short)."""
        self._listeners.append(callback)

    # ---- MQTT ---------------------------------------------------------------------------------------------
    def start(self) -> "Ingest":
        client = make_client(self.broker, client_id=self.client_id, protocol="5")
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        client.manual_ack_set(True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self.client = client
        self._worker = threading.Thread(target=self._work, name="hub-ingest", daemon=True)
        self._worker.start()
        client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        client.loop_start()
        return self

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        self._refused = reason_code.is_failure
        if reason_code.is_failure:  # paho retries with backoff; each reason is said once
            self._warn_once(f"MQTT broker {self.broker.address} refused the hub: {refusal_text(reason_code)}; "
                            "retrying")
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        # retained scenes only for a subscription the session did not have: not again at every reconnect
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        client.subscribe([(topic, options) for topic in subscriptions(self.share)])
        self.connected.set()

    def _on_disconnect(self, _client, _userdata, _flags, _reason_code, _properties) -> None:
        if not self.connected.is_set() and not self._refused and not self._stop.is_set():
            self._warn_once(f"MQTT broker {self.broker.address}: {closed_early_text(self.broker)}; retrying")
        self.connected.clear()

    def _on_connect_fail(self, client, _userdata) -> None:
        problem = connect_failure(client)
        if problem is not None:
            self._warn_once(f"MQTT broker {self.broker.address}: {problem}; retrying")

    def _on_message(self, _client, _userdata, message) -> None:
        self._inbox.put((message.mid, message.qos, message.topic, bytes(message.payload)))

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish (QoS 1, not retained) through the hub's connection, e.g. an alert."""
        if self.client is not None:
            self.client.publish(topic, payload, qos=1)

    def stop(self) -> None:
        """Stop the worker and disconnect; what was not committed stays unacknowledged, for the next start."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=10)
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    # ---- the worker -------------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.batch_max:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            result = self._store(batch)
            if result is None:  # stopping with the database down: nothing acknowledged
                return
            for mid, qos, _topic, _payload in batch:
                if qos > 0:
                    self.client.ack(mid, qos)
            self._count(result)
            for callback in self._listeners:
                try:
                    callback(result)
                except Exception as exc:  # noqa: BLE001 - a listener's failure never stops the ingest
                    warn(f"after storing a batch: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    def _parsed(self, batch) -> list:
        items = []
        for _mid, _qos, topic, payload in batch:
            try:
                items.append(parse(topic, payload, max_bytes=self.max_bytes))
            except BadMessage as exc:
                items.append(Refused(topic, payload, str(exc)))
        return items

    def _store(self, batch) -> BatchResult | None:
        items = self._parsed(batch)
        delay, warned = 0.5, False
        while True:
            try:
                return store_batch(self.engine, items, keep_days=self.keep_days)
            except OperationalError as exc:
                if not warned:
                    warn(f"database unavailable, retrying (messages stay unacknowledged): "
                         f"{str(exc.orig or exc).strip().splitlines()[0]}")
                    warned = True
            except SQLAlchemyError:
                try:
                    return self._one_by_one(items, batch)
                except OperationalError:
                    pass  # the database went away meanwhile: the whole batch again
            if self._stop.wait(delay):
                return None
            delay = min(delay * 2, 10.0)

    def _one_by_one(self, items, batch) -> BatchResult:
        """A batch that the store refused: each message alone, a failing one kept as an ingest error."""
        total = BatchResult(events=[])
        for item, (_mid, _qos, topic, payload) in zip(items, batch):
            try:
                part = store_batch(self.engine, [item], keep_days=self.keep_days)
            except OperationalError:
                raise
            except SQLAlchemyError as exc:
                reason = f"could not be stored: {str(getattr(exc, 'orig', None) or exc).splitlines()[0][:300]}"
                part = store_batch(self.engine, [Refused(topic, payload, reason)], keep_days=self.keep_days)
            total.events += part.events
            total.lags += part.lags
            for key in ("stored", "duplicates", "expired", "errors"):
                setattr(total, key, getattr(total, key) + getattr(part, key))
        return total

    def _count(self, result: BatchResult) -> None:
        self.totals["batches"] += 1
        for key in ("stored", "duplicates", "errors", "expired"):
            self.totals[key] += getattr(result, key)

    @property
    def waiting(self) -> int:
        """Messages received and not yet stored."""
        return self._inbox.qsize()
