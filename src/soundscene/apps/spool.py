"""A spool on disk for a sensor's outgoing messages: :class:`Spool`, a drop-in for :class:`.mqtt.Outbox`.

An :class:`~soundscene.apps.mqtt.Outbox` holds the messages waiting for the broker in memory: a power cut
while the network is down loses them.  A :class:`Spool` has the same methods, semantics and thread safety
(so :class:`~soundscene.apps.mqtt.Link` takes either) but keeps every message in an SQLite file,
``<directory>/spool.db``, until the broker acknowledged it::

    spool = Spool("/var/lib/soundscene/spool", max_bytes=50 * 2**20)
    spool.put([(topic, payload, retain)])       # on disk (fsynced) when put() returns

Messages left by a previous run (killed, power cut) are waiting again when a spool opens, oldest first, and go
out before new ones.  A message is deleted from the file only once :meth:`~Spool.acknowledged`; one in flight
at a crash is sent again after the restart (at least once: each payload carries its sensor, boot and seq, by
which the receiver drops a repeat).

Durability: write-ahead logging (``journal_mode=WAL``) with ``synchronous=FULL``: every :meth:`~Spool.put`
is one transaction, written and fsynced before it returns, so a power cut loses at most the put under way.
Acknowledged messages are deleted in the next put's transaction (or after ``_DELETE_BATCH``
acknowledgements, and at :meth:`~Spool.close`), which keeps the cost to about one fsync per message; a crash
before that deletion sends those messages once more.

Trouble with the disk never stops live publishing and never raises:

* A damaged file (not a database, malformed, cut short), found when it opens (``PRAGMA quick_check``) or later,
  is renamed aside to ``spool.db.damaged-<UTC time>`` (with its ``-wal`` and ``-shm``), one warning names both
  paths, and a fresh spool starts.
* A full disk or an I/O error: one warning; the messages are kept in memory (sent live, but lost at a power
  cut) and writing is tried again on a put after :attr:`~Spool.retry_seconds`, or sooner once the disk has
  more room; when it works, the messages held in memory go to disk and one warning says so.

The stored payload bytes are bounded by ``max_bytes``: beyond it the oldest messages not in flight are
dropped, counted in :attr:`~Spool.dropped`, with one warning per outage.  :attr:`~Spool.bytes`,
:attr:`~Spool.disk_free`, :attr:`~Spool.problem` and :attr:`~Spool.path` are for health reports.

Opening checks the whole file (``PRAGMA quick_check`` reads every page: about 4 s for a full spool of 100 MiB
on a server's disk, cache cold).  The file keeps its largest size (SQLite reuses the freed pages; it is not vacuumed).  While
rows on disk cannot be read, the messages held in memory go ahead of them.

``Spool._connection`` (the SQLite connection, None while the spool has none) is the hook of the tests and the
benchmark, e.g. ``PRAGMA max_page_count`` to make SQLite answer "database or disk is full" as a full disk does.
"""

from __future__ import annotations

import collections
import os
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

from ..errors import SoundsceneError, warn

Message = tuple[str, bytes, bool]  # (topic, payload, retain), as in mqtt.Outbox
FILE_NAME = "spool.db"
DEFAULT_MAX_BYTES = 100 * 2**20
_COLUMNS = ["id", "topic", "payload", "retain"]
_SCHEMA = ("CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
           "payload BLOB NOT NULL, retain INTEGER NOT NULL)")
_INSERT = "INSERT INTO messages (topic, payload, retain) VALUES (?, ?, ?)"
_DELETE = "DELETE FROM messages WHERE id = ?"
_DELETE_BATCH = 100      # acknowledged messages deleted at once when no put comes to take them along
_MORE_ROOM = 2**20       # this much more free space than at the failure: try writing again at once
_TROUBLE = (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)  # the disk's trouble (at start: others raise)


class _Damaged(sqlite3.DatabaseError):
    """The file opens but is not a sound spool (quick_check fails, other tables or columns)."""


class _Flight(NamedTuple):
    """A message handed over: its row (None when only in memory) and, when only in memory, the message."""
    rowid: int | None
    message: Message | None
    nbytes: int


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """SQLite's corrupt or not-a-database (plain DatabaseError), or our own finding; not a disk's trouble."""
    return isinstance(exc, _Damaged) or type(exc) is sqlite3.DatabaseError


def _trouble(exc: sqlite3.DatabaseError) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in _TROUBLE


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating) the spool file in WAL mode, synchronous FULL, checked and with its table."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    try:  # checked before anything is written to it
        verdict = [row[0] for row in connection.execute("PRAGMA quick_check")]
        if verdict != ["ok"]:
            raise _Damaged(f"quick_check: {verdict[0]}")
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables - {"messages", "sqlite_sequence"}:
            raise _Damaged(f"not a spool: it has the tables {', '.join(sorted(tables))}")
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use write-ahead logging (journal mode {mode})")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(_SCHEMA)
        columns = [row[1] for row in connection.execute("PRAGMA table_info(messages)")]
        if columns != _COLUMNS:
            raise _Damaged(f"not a spool: its messages have the columns {', '.join(columns)}")
    except sqlite3.Error:
        connection.close()
        raise
    return connection


def _insert(connection: sqlite3.Connection, message: Message) -> int:
    topic, payload, retain = message
    return connection.execute(_INSERT, (topic, payload, int(retain))).lastrowid


class Spool:
    """A bounded, ordered, thread-safe queue of ``(topic, payload, retain)`` messages, on disk until acknowledged.

    The methods and their meaning are :class:`~soundscene.apps.mqtt.Outbox`'s (see the module docstring for
    the disk), with these differences: the bound is ``max_bytes`` of payload (in flight included); and
    :meth:`forget_in_flight` queues the forgotten messages again, first in line, rather than losing them.
    ``where`` names the destination in the warning about dropping.  It knows nothing of MQTT.
    """

    retry_seconds = 30.0  # after a disk failure, a put tries writing again this long after the last try

    def __init__(self, directory: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 where: str = "the MQTT broker"):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise SoundsceneError(f"spool max_bytes must be a positive whole number of bytes, got {max_bytes!r}")
        self.directory, self.max_bytes, self.where = Path(directory), max_bytes, where
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SoundsceneError(f"cannot make the spool folder {self.directory}: {exc.strerror or exc}") \
                from None
        self._path = self.directory / FILE_NAME
        self._lock = threading.Condition()
        self._connection: sqlite3.Connection | None = None
        self._cursor = 0                        # the last row handed over: rows after it are queued
        self._rows = 0                          # rows not acknowledged, in flight included
        self._flights: dict[int, _Flight] = {}  # message id -> what was handed over, in hand-over order
        self._flying_rows: set[int] = set()
        self._acked: set[int] = set()           # rows acknowledged, not yet deleted
        self._memory: collections.deque[Message] = collections.deque()  # queued, not on disk; after the rows
        self._bytes = 0
        self._dropped = 0
        self._warned = False                    # this outage's warning about dropping was given
        self._closed = False
        self._problem: str | None = None
        self._failed_at = 0.0                   # time.monotonic() of the last try that failed
        self._free_at_failure: int | None = None
        notes: list[str] = []
        with self._lock:
            self._open_disk(notes, strict=True)
        _warn_all(notes)

    # -- for health reports --------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The spool file, ``<directory>/spool.db``."""
        return self._path

    @property
    def bytes(self) -> int:
        """Payload bytes stored (queued and in flight), at most ``max_bytes`` but for what is in flight."""
        with self._lock:
            return self._bytes

    @property
    def disk_free(self) -> int | None:
        """Bytes free on the spool's file system (for an unprivileged user); None if that cannot be read."""
        try:
            stat = os.statvfs(self.directory)
        except OSError:
            return None
        return stat.f_bavail * stat.f_frsize

    @property
    def problem(self) -> str | None:
        """What keeps the spool from writing now (e.g. ``cannot write: database or disk is full``), else None."""
        return self._problem

    # -- Outbox's interface ------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Messages waiting to be handed over."""
        with self._lock:
            return self._queued()

    @property
    def in_flight(self) -> int:
        """Messages handed over and not yet acknowledged."""
        with self._lock:
            return len(self._flights)

    @property
    def dropped(self) -> int:
        """Messages dropped so far (by this object) because the spool was full (the oldest go first)."""
        return self._dropped

    @property
    def undelivered(self) -> int:
        """Messages waiting or in flight."""
        with self._lock:
            return self._queued() + len(self._flights)

    def put(self, messages: Iterable[Message]) -> int:
        """Append ``messages`` together, in order, in one transaction; returns how many old ones were dropped.

        When it returns the messages are on disk, unless the disk fails (see :attr:`problem`)."""
        batch = [(str(topic), bytes(payload), bool(retain)) for topic, payload, retain in messages]
        notes: list[str] = []
        with self._lock:
            dropped = self._store(batch, notes) if batch else 0
            self._dropped += dropped
            if dropped and not self._warned:  # once per outage
                self._warned = True
                notes.append(f"{self.where} unreachable and {self.max_bytes} bytes of messages in the spool "
                             f"{self._path}: dropping the oldest (see SensorPublisher.dropped)")
        _warn_all(notes)
        return dropped

    def outage_over(self) -> None:
        """The destination is reachable again: the next drop warns again."""
        with self._lock:
            self._warned = False

    def hand_over(self, send: Callable[[str, bytes, bool], int | None], window: int) -> bool:
        """Give the oldest message to ``send(topic, payload, retain)`` unless ``window`` are in flight.

        As :meth:`Outbox.hand_over <soundscene.apps.mqtt.Outbox.hand_over>`: ``send`` returns the message's id,
        kept in flight until :meth:`acknowledged`, or None when it did not take the message, which stays first
        in line; done under the lock (``send`` must not call back into this spool).  True when handed over.
        """
        notes: list[str] = []
        with self._lock:
            handed = False
            found = self._next(notes) if len(self._flights) < window else None
            if found is not None:
                rowid, message = found
                mid = send(*message)
                if mid is not None:
                    self._take(mid, rowid, message)
                    handed = True
        _warn_all(notes)
        return handed

    def acknowledged(self, mid: int) -> None:
        """The message with id ``mid`` was delivered: it leaves the disk (with the next put, at the latest)."""
        notes: list[str] = []
        with self._lock:
            flight = self._flights.pop(mid, None)
            if flight is not None:
                self._bytes -= flight.nbytes
                if flight.rowid is not None:
                    self._flying_rows.discard(flight.rowid)
                    self._rows -= 1
                    self._acked.add(flight.rowid)
                    if len(self._acked) >= _DELETE_BATCH and self._problem is None:
                        self._delete_acked(notes)
            self._lock.notify_all()
        _warn_all(notes)

    def forget_in_flight(self) -> int:
        """Messages in flight will never be acknowledged (QoS 0 at a disconnect): they are queued again, first in
        line (an Outbox loses them); returns how many."""
        with self._lock:
            lost = len(self._flights)
            rows = [f.rowid for f in self._flights.values() if f.rowid is not None]
            again = [flight.message for _, flight in self._held_flights()]
            self._bytes -= sum(f.nbytes for f in self._flights.values() if f.rowid is None and f.message is None)
            if rows:
                self._cursor = min(self._cursor, min(rows) - 1)
            self._memory.extendleft(reversed(again))
            self._flights.clear()
            self._flying_rows.clear()
            self._lock.notify_all()
            return lost

    def wait_empty(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until nothing is queued or in flight; True if so (False at once once closed)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._queued() or self._flights:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._lock.wait(left)
        return True

    def close(self) -> None:
        """Nothing more will be sent: wake every :meth:`wait_empty` and close the file; the messages stay in it.

        Messages held in memory (while the disk failed) get a last try to reach the disk.  Acknowledgements that
        come later are not written: those messages are sent once more by the next run."""
        notes: list[str] = []
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            if self._connection is not None:
                self._flush_at_close(notes)
                self._drop_connection()
        _warn_all(notes)

    # -- under the lock: the queue ----------------------------------------------------------------------

    def _queued(self) -> int:
        return self._rows - len(self._flying_rows) + len(self._memory)

    def _held_flights(self) -> list[tuple[int, _Flight]]:
        """The messages in flight that are held in memory only, ``(mid, flight)`` in hand-over order."""
        return [(mid, f) for mid, f in self._flights.items() if f.rowid is None and f.message is not None]

    def _next(self, notes: list[str]) -> tuple[int | None, Message] | None:
        """The next message to hand over, ``(rowid, message)`` (rowid None: from memory), or None.

        The rows on disk come first; when they cannot be read, the messages in memory go ahead of them."""
        if self._connection is not None and self._rows > len(self._flying_rows):
            found = self._read_next(notes)
            if found is not None:
                return found
        return (None, self._memory[0]) if self._memory else None

    def _read_next(self, notes: list[str]) -> tuple[int, Message] | None:
        try:
            while True:
                row = self._connection.execute("SELECT id, topic, payload, retain FROM messages WHERE id > ? "
                                               "ORDER BY id LIMIT 1", (self._cursor,)).fetchone()
                if row is None:
                    return None
                if not (isinstance(row[1], str) and isinstance(row[2], bytes) and isinstance(row[3], int)):
                    raise _Damaged(f"message {row[0]} reads as {row[1:]!r:.60}")  # zeros where a page was cut off
                if row[0] not in self._acked and row[0] not in self._flying_rows:
                    return row[0], (row[1], row[2], bool(row[3]))
                self._cursor = row[0]  # acknowledged (not yet deleted) or already in flight: not queued
        except sqlite3.OperationalError as exc:
            self._disk_failed(f"cannot read: {exc}", notes)
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            self._damage_found(str(exc), notes)
        return None

    def _take(self, mid: int, rowid: int | None, message: Message) -> None:
        if rowid is None:
            self._memory.popleft()
            self._flights[mid] = _Flight(None, message, len(message[1]))
        else:
            self._cursor = rowid
            self._flying_rows.add(rowid)
            self._flights[mid] = _Flight(rowid, None, len(message[1]))

    def _store(self, batch: list[Message], notes: list[str]) -> int:
        """Write ``batch`` (after the messages held in memory) to disk, or hold it in memory; returns the drops."""
        for _ in range(2):  # a second time on a fresh spool when the first found the file damaged
            if not self._disk_ready(notes):
                break
            done, plan = self._transaction(lambda connection: self._write(connection, batch), notes)
            if done:
                return self._written(plan, batch, notes)
        return self._keep_in_memory(batch, notes)

    def _write(self, connection: sqlite3.Connection, batch: list[Message]) -> dict:
        """In a transaction: insert what memory holds and ``batch``, delete the acknowledged and what is over the
        bound; returns what to change in memory once committed."""
        carried = self._held_flights()
        carried_rows = [_insert(connection, flight.message) for _, flight in carried]
        for message in (*self._memory, *batch):
            _insert(connection, message)
        acked = list(self._acked)
        connection.executemany(_DELETE, [(rowid,) for rowid in acked])
        over = self._bytes + sum(len(payload) for _, payload, _ in batch) - self.max_bytes
        doomed, freed = self._oldest_queued(connection, over, set(carried_rows))
        connection.executemany(_DELETE, [(rowid,) for rowid in doomed])
        return {"carried": list(zip(carried, carried_rows)), "acked": acked, "doomed": doomed, "freed": freed}

    def _written(self, plan: dict, batch: list[Message], notes: list[str]) -> int:
        """The transaction of :meth:`_write` is committed: the same in memory; returns how many were dropped."""
        for (mid, flight), rowid in plan["carried"]:
            self._flights[mid] = _Flight(rowid, None, flight.nbytes)
            self._flying_rows.add(rowid)
        recovered = len(plan["carried"]) + len(self._memory)
        self._rows += recovered + len(batch) - len(plan["doomed"])
        self._bytes += sum(len(payload) for _, payload, _ in batch) - plan["freed"]
        self._memory.clear()
        self._acked.difference_update(plan["acked"])
        if self._problem is not None:
            notes.append(f"the spool {self._path} writes again: {recovered} messages held in memory are on disk")
            self._problem, self._free_at_failure = None, None
        return len(plan["doomed"])

    def _oldest_queued(self, connection: sqlite3.Connection, over: int, skip: set[int]) -> tuple[list[int], int]:
        """The oldest queued rows whose payloads make ``over`` bytes or more (all if fewer), and their bytes."""
        doomed, freed = [], 0
        if over <= 0:
            return doomed, freed
        rows = connection.execute("SELECT id, length(payload) FROM messages WHERE id > ? ORDER BY id",
                                  (self._cursor,))
        for rowid, size in rows:
            if rowid in skip or rowid in self._flying_rows or rowid in self._acked:
                continue
            doomed.append(rowid)
            freed += size
            if freed >= over:
                break
        rows.close()
        return doomed, freed

    def _keep_in_memory(self, batch: list[Message], notes: list[str]) -> int:
        """Hold ``batch`` in memory (the disk fails); drop the oldest over the bound, on disk if it lets us."""
        self._memory.extend(batch)
        self._bytes += sum(len(payload) for _, payload, _ in batch)
        dropped = 0
        if self._bytes > self.max_bytes and self._connection is not None and self._rows > len(self._flying_rows):
            done, plan = self._transaction(lambda connection: self._drop_rows(connection), notes)
            if done:
                self._rows -= len(plan[0])
                self._bytes -= plan[1]
                dropped += len(plan[0])
        while self._bytes > self.max_bytes and self._memory:
            self._bytes -= len(self._memory.popleft()[1])
            dropped += 1
        return dropped

    def _drop_rows(self, connection: sqlite3.Connection) -> tuple[list[int], int]:
        doomed, freed = self._oldest_queued(connection, self._bytes - self.max_bytes, set())
        connection.executemany(_DELETE, [(rowid,) for rowid in doomed])
        return doomed, freed

    def _delete_acked(self, notes: list[str]) -> None:
        acked = list(self._acked)
        done, _ = self._transaction(lambda connection: connection.executemany(_DELETE, [(i,) for i in acked]),
                                    notes)
        if done:
            self._acked.difference_update(acked)

    def _flush_at_close(self, notes: list[str]) -> None:
        """Delete the acknowledged rows and write what memory holds, whatever the retry timer says."""
        held = len(self._memory) + len(self._held_flights())
        if not held and not self._acked:
            return
        done, plan = self._transaction(lambda connection: self._write(connection, []), notes)
        if done:
            self._written(plan, [], notes)
        elif held:
            notes.append(f"the spool {self._path}: {held} messages held in memory could not be written "
                         "before closing")

    # -- under the lock: the disk -----------------------------------------------------------------------

    def _transaction(self, work: Callable[[sqlite3.Connection], object], notes: list[str]) -> tuple[bool, object]:
        """``(True, work(connection))`` committed in one transaction, or ``(False, None)`` when the disk failed or
        the file was found damaged (both dealt with: noted, or set aside for a fresh spool)."""
        connection = self._connection
        if connection is None:
            return False, None
        try:
            connection.execute("BEGIN IMMEDIATE")
            result = work(connection)
            connection.execute("COMMIT")
            return True, result
        except sqlite3.OperationalError as exc:
            self._rollback()
            self._disk_failed(f"cannot write: {exc}", notes)
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            self._rollback()
            self._damage_found(str(exc), notes)
        return False, None

    def _rollback(self) -> None:
        try:
            if self._connection.in_transaction:  # SQLite may have rolled back already (a full disk)
                self._connection.execute("ROLLBACK")
        except sqlite3.DatabaseError:
            pass  # the disk or file that failed the transaction may fail this too; nothing was committed

    def _disk_ready(self, notes: list[str]) -> bool:
        """True when a write may be tried: no problem, or it is time to try again (the file reopened if need be)."""
        if self._closed:
            return False
        if self._problem is None:
            return self._connection is not None
        free = self.disk_free
        more_room = (free is not None and self._free_at_failure is not None
                     and free > self._free_at_failure + _MORE_ROOM)
        if not more_room and time.monotonic() - self._failed_at < self.retry_seconds:
            return False
        self._failed_at, self._free_at_failure = time.monotonic(), free  # this try restarts the clock
        return self._connection is not None or self._open_disk(notes, strict=False)

    def _disk_failed(self, text: str, notes: list[str]) -> None:
        """Writing (or reading) failed: one warning per problem; new messages are held in memory meanwhile."""
        if self._problem is None:
            self._failed_at, self._free_at_failure = time.monotonic(), self.disk_free
            notes.append(f"the spool {self._path}: {text}: holding new messages in memory only (lost at a power "
                         f"cut) and trying again every {self.retry_seconds:g} s")
        self._problem = text

    def _damage_found(self, reason: str, notes: list[str]) -> None:
        """The open file is damaged: forget its rows (in flight ones can still be acknowledged), set it aside and
        start a fresh spool."""
        waiting = self._rows - len(self._flying_rows)
        self._drop_connection()
        self._rows, self._cursor = 0, 0
        self._acked.clear()
        self._flying_rows.clear()
        self._flights = {mid: f if f.rowid is None else _Flight(None, None, f.nbytes)
                         for mid, f in self._flights.items()}
        self._bytes = sum(f.nbytes for f in self._flights.values()) + sum(len(m[1]) for m in self._memory)
        self._open_disk(notes, strict=False, damaged=reason + (f"; {waiting} messages waiting in it are not sent"
                                                               if waiting else ""))

    def _open_disk(self, notes: list[str], *, strict: bool, damaged: str | None = None) -> bool:
        """Open the spool file (made if need be), first setting it aside when ``damaged`` (why) or found so.

        False, with the problem noted, when the disk fails; at start (``strict``) a file that cannot be opened
        for another reason (permissions, locked by another process) is a one-line SoundsceneError."""
        for _ in range(3):
            try:
                if damaged is not None:
                    aside = self._set_aside()
                    notes.append(f"the spool {self._path} is damaged ({damaged}): set aside as {aside}; "
                                 "starting a fresh spool")
                    damaged = None
                self._connection = _connect(self._path)
                self._load()
                return True
            except sqlite3.DatabaseError as exc:
                self._drop_connection()
                if _damaged(exc):
                    damaged = str(exc)
                    continue
                if not strict or (isinstance(exc, sqlite3.OperationalError) and _trouble(exc)):
                    self._disk_failed(f"cannot open: {exc}", notes)
                    return False
                raise SoundsceneError(f"cannot open the spool {self._path}: {exc}") from None
            except OSError as exc:
                if strict:
                    raise SoundsceneError(f"cannot set the damaged spool {self._path} aside: {exc}") from None
                self._disk_failed(f"cannot set the damaged file aside: {exc}", notes)
                return False
        self._disk_failed("cannot open a fresh spool", notes)
        return False

    def _load(self) -> None:
        rows, nbytes = self._connection.execute("SELECT count(*), coalesce(sum(length(payload)), 0) "
                                                "FROM messages").fetchone()
        self._rows, self._cursor = rows, 0
        self._bytes += nbytes
        self._acked.clear()
        self._flying_rows.clear()

    def _set_aside(self) -> Path:
        """Rename the spool file (and its -wal and -shm) to ``spool.db.damaged-<UTC time>``; returns that path."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside, n = self._path.with_name(f"{FILE_NAME}.damaged-{stamp}"), 1
        while any(Path(f"{aside}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
            aside, n = self._path.with_name(f"{FILE_NAME}.damaged-{stamp}-{n}"), n + 1
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{self._path}{suffix}").exists():
                os.replace(f"{self._path}{suffix}", f"{aside}{suffix}")
        return aside

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except sqlite3.DatabaseError:
                pass  # closing a damaged or unwritable file: it is set aside or kept as it is


def _warn_all(notes: list[str]) -> None:
    """Give the warnings gathered under the lock, outside it."""
    for note in notes:
        warn(note)
