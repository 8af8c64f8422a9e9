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

When the database is unreachable the batch is retried with backoff (nothing is acknowledged meanwhile; what
arrives meanwhile joins the batch, up to ``batch_max``).  One message never stops the hub: a message that
cannot be parsed, for whatever reason, is an ingest error; when a batch fails to store for any other reason
than an unreachable database, its messages are stored one by one and the one that fails is stored as an
ingest error (``ingest_errors``: topic, first bytes, one-line reason), acknowledged like the others.

The worker thread never dies silently: an exception that escapes it (say ``ingest_errors`` itself cannot be
written) is :attr:`Ingest.failure`, warned about, set on :attr:`Ingest.failed` and passed to the callbacks of
:meth:`Ingest.when_failed`: the hub's ``/healthz`` then answers 503 (``"ingest": "degraded: ..."``) and
``soundscene hub`` exits non-zero, so that its supervisor (systemd, a container runtime) restarts it; the
messages of the failed batch were not acknowledged and come again.  Listeners registered with
:meth:`Ingest.listen` receive each batch's events after its commit.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

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
        self._on_failure: list[Callable[[], None]] = []
        self.failed = threading.Event()  # set when the worker died of an unexpected exception
        self.failure: str | None = None  # that exception, in one line
        self.connected = threading.Event()  # connected and subscribed (the broker acknowledged the subscription)
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
        client.on_subscribe = self._on_subscribe
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

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties) -> None:
        """The broker has the subscription: from now on nothing published to the sensors' topics misses the hub."""
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            self._warn_once(f"MQTT broker {self.broker.address} refused {len(refused)} of the hub's subscriptions: "
                            f"{refusal_text(refused[0])}")
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
    def when_failed(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (from the worker thread) when the worker dies; at once if it has already died."""
        self._on_failure.append(callback)
        if self.failed.is_set():
            callback()

    def _work(self) -> None:
        """The worker thread.  It returns only when stopped: an exception that ends it is :attr:`failure`."""
        failure = "the worker ended"
        try:
            self._loop()
            failure = None
        except Exception as exc:  # noqa: BLE001 - never a silently dead thread: said, on /healthz, and the hub exits
            failure = _why(exc)
        finally:
            if failure is not None:
                self._fail(failure)

    def _fail(self, failure: str) -> None:
        self.failure = failure
        self.failed.set()
        warn(f"the hub's ingest stopped: {failure}")
        for callback in self._on_failure:
            callback()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                batch = [self._inbox.get(timeout=0.2)]
            except queue.Empty:
                continue
            self._more(batch)
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
                    warn(f"after storing a batch: {_why(exc)}")

    def _more(self, batch: list) -> list:
        """Add the messages waiting (up to ``batch_max`` in all) to ``batch``; the ones added."""
        added = []
        while len(batch) < self.batch_max:
            try:
                added.append(self._inbox.get_nowait())
            except queue.Empty:
                break
            batch.append(added[-1])
        return added

    def _parsed(self, batch) -> list:
        """Each message parsed, or Refused: one that cannot be parsed, for whatever reason, is an ingest error."""
        items = []
        for _mid, _qos, topic, payload in batch:
            try:
                items.append(parse(topic, payload, max_bytes=self.max_bytes))
            except BadMessage as exc:
                items.append(Refused(topic, payload, str(exc)))
            except Exception as exc:  # noqa: BLE001 - a message the checks did not foresee: refused, not fatal
                self._warn_once(f"a message could not be parsed ({type(exc).__name__}); kept in ingest_errors")
                items.append(Refused(topic, payload, f"could not be parsed: {_why(exc)}"))
        return items

    def _store(self, batch: list) -> BatchResult | None:
        """Store ``batch`` (growing with what arrives meanwhile while the database is down); None when stopped."""
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
            except Exception:  # noqa: BLE001 - a message the store refused (SQLAlchemyError, OverflowError...)
                try:
                    return self._one_by_one(items, batch)
                except OperationalError:
                    pass  # the database went away meanwhile: the whole batch again
            if self._stop.wait(delay):
                return None
            delay = min(delay * 2, 10.0)
            items += self._parsed(self._more(batch))

    def _one_by_one(self, items, batch) -> BatchResult:
        """A batch that the store refused: each message alone, a failing one kept as an ingest error.  When even
        that cannot be stored (ingest_errors refuses it) the exception ends the worker."""
        total = BatchResult(events=[])
        for item, (_mid, _qos, topic, payload) in zip(items, batch):
            try:
                part = store_batch(self.engine, [item], keep_days=self.keep_days)
            except OperationalError:
                raise
            except Exception as exc:  # noqa: BLE001 - this message alone fails: it becomes an ingest error
                reason = f"could not be stored: {_why(exc)}"
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


def _why(exc: BaseException) -> str:
    """An exception in one line: its type and first line (a database error's own message)."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")
