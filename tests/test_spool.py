"""The spool on disk (soundscene.apps.spool.Spool): the contract of the in-memory Outbox, kept across restarts,
a killed writer, damaged files and a full disk.  Real SQLite files in tmp_path throughout; the full disk is
SQLite's own "database or disk is full", raised through ``PRAGMA max_page_count`` on the spool's connection."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

from helpers import free_port
from soundscene.apps.mqtt import Link, Outbox
from soundscene.apps.spool import FILE_NAME, Spool
from soundscene.errors import SoundsceneError, SoundsceneWarning


def _message(k: int, size: int | None = None) -> tuple[str, bytes, bool]:
    payload = str(k).encode() if size is None else str(k).encode().ljust(size, b".")
    return (f"t/{k}", payload, k % 2 == 0)


class FakeSender:
    """send(topic, payload, retain) -> a message id (1, 2, ...), recording what it was given; refuses if told."""

    def __init__(self):
        self.sent: list[tuple[str, bytes, bool]] = []
        self.refuse = False

    def __call__(self, topic, payload, retain):
        if self.refuse:
            return None
        self.sent.append((topic, payload, retain))
        return len(self.sent)


def _drain(box, send=None, window: int = 10**6) -> list[tuple[str, bytes, bool]]:
    """Hand over everything queued; returns what was handed over (in order)."""
    send = send or FakeSender()
    before = len(send.sent)
    while box.hand_over(send, window=window):
        pass
    return send.sent[before:]


def _waiting(directory: Path) -> list[tuple[str, bytes, bool]]:
    """What a spool opened on ``directory`` hands over (it is closed again after)."""
    spool = Spool(directory)
    try:
        return _drain(spool)
    finally:
        spool.close()


def _rows_in(path: Path) -> int:
    """The messages in the spool file ``path``, counted by a connection of our own."""
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        db.close()


def _warnings_from(action) -> list[str]:
    """The SoundsceneWarnings that ``action()`` gives, every one (no deduplication)."""
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        action()
    return [str(w.message) for w in got if issubclass(w.category, SoundsceneWarning)]


# -- the Outbox's contract, for both -------------------------------------------------------------------------

@pytest.fixture(params=["outbox", "spool"])
def make_box(request, tmp_path):
    """make_box(limit, where=...) -> an Outbox of ``limit`` messages, or a Spool of ``limit`` bytes (the messages of
    these tests have payloads of one byte, so the bounds are the same)."""
    made = []

    def make(limit: int, **kwargs):
        made.append(Outbox(limit, **kwargs) if request.param == "outbox"
                    else Spool(tmp_path / f"spool{len(made)}", max_bytes=limit, **kwargs))
        return made[-1]

    make.kind = request.param
    yield make
    for box in made:
        box.close()


def test_keeps_order_and_hands_over_within_the_window(make_box):
    box, send = make_box(10), FakeSender()
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
    assert box.forget_in_flight() == 2 and box.in_flight == 0
    # the one difference: an Outbox loses what it forgets, a Spool queues it again, first in line
    assert box.undelivered == (0 if make_box.kind == "outbox" else 2)
    with pytest.raises(SoundsceneError):
        make_box(0)


def test_is_bounded_drops_the_oldest_and_warns_once_per_outage(make_box):
    box, send = make_box(3, where="MQTT broker b:1"), FakeSender()
    assert _warnings_from(lambda: box.put([_message(k) for k in range(3)])) == []
    got = _warnings_from(lambda: box.put([_message(3), _message(4)]))
    assert len(got) == 1 and got[0].startswith("MQTT broker b:1 unreachable and 3 ")
    assert "dropping the oldest" in got[0]
    assert (box.queued, box.dropped) == (3, 2)
    assert _warnings_from(lambda: box.put([_message(5)])) == []  # once per outage
    assert box.dropped == 3
    assert _drain(box, send) == [_message(3), _message(4), _message(5)]  # the newest, in order
    for mid in range(1, 4):
        box.acknowledged(mid)
    box.outage_over()
    assert len(_warnings_from(lambda: box.put([_message(k) for k in range(6, 10)]))) == 1  # a new outage
    assert box.dropped == 4 and box.queued == 3


def test_is_thread_safe_and_waits_for_acknowledgements(make_box):
    box = make_box(10_000)
    putters = [threading.Thread(target=lambda n=n: [box.put([_message(n * 1000 + k)]) for k in range(250)])
               for n in range(4)]
    for th in putters:
        th.start()
    for th in putters:
        th.join()
    assert (box.queued, box.dropped) == (1000, 0)
    send = FakeSender()
    _drain(box, send)
    for n in range(4):  # each thread's messages keep their order
        mine = [int(p) for _, p, _ in send.sent if int(p) // 1000 == n]
        assert mine == [n * 1000 + k for k in range(250)]
    assert not box.wait_empty(0.01)
    acker = threading.Thread(target=lambda: [box.acknowledged(mid) for mid in range(1, 1001)])
    acker.start()
    assert box.wait_empty(60) and box.undelivered == 0
    acker.join()
    box.put([_message(0)])
    box.close()  # nothing more will be sent: waiting answers at once
    start = time.monotonic()
    assert not box.wait_empty(60) and time.monotonic() - start < 30


# -- the spool on disk --------------------------------------------------------------------------------------

def test_settings_are_checked(tmp_path):
    for bad in (0, -1, 1.5, "10", True, None):
        with pytest.raises(SoundsceneError) as info:
            Spool(tmp_path / "s", max_bytes=bad)
        assert "max_bytes" in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SoundsceneError) as info:
        Spool(tmp_path / "a-file")
    assert "a-file" in str(info.value) and "\n" not in str(info.value)


def test_messages_wait_across_a_reopen_in_order_before_new_ones(tmp_path):
    spool = Spool(tmp_path / "deep" / "spool")  # the folder is made
    assert spool.path == tmp_path / "deep" / "spool" / FILE_NAME and spool.path.is_file()
    spool.put([_message(0), _message(1)])
    spool.put([_message(2, size=100)])
    assert (spool.queued, spool.bytes, spool.problem) == (3, 102, None)
    spool.close()
    spool = Spool(tmp_path / "deep" / "spool")
    assert (spool.queued, spool.in_flight, spool.bytes, spool.dropped) == (3, 0, 102, 0)
    assert 0 < spool.disk_free
    spool.put([_message(3)])
    assert _drain(spool) == [_message(0), _message(1), _message(2, size=100), _message(3)]
    spool.close()


def test_only_acknowledged_messages_leave_the_disk(tmp_path):
    spool, send = Spool(tmp_path), FakeSender()
    spool.put([_message(k) for k in range(6)])
    assert _drain(spool, send, window=4) == [_message(k) for k in range(4)]  # message ids 1 to 4
    spool.acknowledged(2)
    spool.acknowledged(3)
    assert (spool.queued, spool.in_flight, spool.undelivered, spool.bytes) == (2, 2, 4, 4)
    spool.close()
    # 0 and 3 were in flight, never acknowledged: sent again, in their place
    assert _waiting(tmp_path) == [_message(0), _message(3), _message(4), _message(5)]


def test_acknowledged_messages_are_deleted_in_batches_without_puts(tmp_path):
    spool = Spool(tmp_path)
    spool.put([_message(k) for k in range(250)])
    _drain(spool)
    for mid in range(1, 251):
        spool.acknowledged(mid)
    assert _rows_in(spool.path) < 100  # deleted by hundreds while the spool is open, the rest at close
    spool.close()
    assert _rows_in(spool.path) == 0


def test_forgotten_messages_are_sent_again_first_in_line(tmp_path):
    spool, send = Spool(tmp_path), FakeSender()
    spool.put([_message(k) for k in range(5)])
    _drain(spool, send, window=3)
    spool.acknowledged(2)
    assert spool.forget_in_flight() == 2 and (spool.in_flight, spool.queued) == (0, 4)
    assert _drain(spool, send) == [_message(0), _message(2), _message(3), _message(4)]
    spool.close()


_WRITER = textwrap.dedent("""
    import sys
    from soundscene.apps.spool import Spool
    spool = Spool(sys.argv[1])
    seq = 0
    while True:
        seq += 1
        payload = ('{"seq": %d, "boot": "b", "label": "park", "probabilities": [%s]}'
                   % (seq, ", ".join(["0.1234"] * 60))).encode()
        spool.put([("soundscene/s1/scene", payload, True)])
        print(seq, flush=True)
""")


def test_a_killed_writer_loses_at_most_the_message_being_written(tmp_path):
    with subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            printed = []
            while len(printed) < 300:
                line = proc.stdout.readline()
                assert line, f"the writer stopped: {proc.stderr.read()}"
                printed.append(int(line))
            os.kill(proc.pid, signal.SIGKILL)
            rest = proc.stdout.read()  # what it printed before it died
        finally:
            proc.kill()
    printed += [int(line) for line in rest.split("\n")[:-1]]  # whole lines only
    assert printed == list(range(1, len(printed) + 1)) and proc.returncode == -signal.SIGKILL
    seqs = [json.loads(payload)["seq"] for _, payload, _ in _waiting(tmp_path)]
    assert seqs == list(range(1, len(seqs) + 1))  # in order, no gap
    assert len(printed) <= len(seqs) <= len(printed) + 1  # every put that returned is there


def test_the_bound_drops_the_oldest_not_in_flight(tmp_path):
    spool, send = Spool(tmp_path, max_bytes=350, where="MQTT broker b:1"), FakeSender()
    assert _warnings_from(lambda: spool.put([_message(k, size=100) for k in range(3)])) == []
    assert spool.hand_over(send, window=10)  # 0 is in flight: it stays
    got = _warnings_from(lambda: spool.put([_message(3, size=100), _message(4, size=100)]))
    assert len(got) == 1 and str(spool.path) in got[0] and "dropping the oldest" in got[0]
    assert (spool.dropped, spool.bytes, spool.queued, spool.in_flight) == (2, 300, 2, 1)
    assert _warnings_from(lambda: spool.put([_message(5, size=100)])) == []  # once per outage
    assert (spool.dropped, spool.bytes) == (3, 300)
    spool.close()
    assert _waiting(tmp_path) == [_message(k, size=100) for k in (0, 4, 5)]


def _fill(directory: Path, count: int = 300) -> None:
    spool = Spool(directory)
    spool.put([_message(k, size=600) for k in range(count)])
    spool.close()  # checkpointed: all in spool.db


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _truncated(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2 + 777)  # cut mid-page, mid-record


def _header(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(os.urandom(100))


def _other_database(path: Path) -> None:
    path.unlink()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE recipes (name TEXT)")
    db.commit()
    db.close()


def _set_aside(directory: Path) -> list[Path]:
    """The damaged spool files set aside in ``directory`` (not their -wal and -shm)."""
    return [p for p in directory.iterdir()
            if p.name.startswith(f"{FILE_NAME}.damaged-") and not p.name.endswith(("-wal", "-shm"))]


@pytest.mark.parametrize("damage", [_garbage, _truncated, _header, _other_database])
def test_a_damaged_file_is_set_aside_with_one_warning(tmp_path, damage):
    _fill(tmp_path)
    damage(tmp_path / FILE_NAME)
    damaged = (tmp_path / FILE_NAME).read_bytes()
    spool = None

    def reopen():
        nonlocal spool
        spool = Spool(tmp_path)

    got = _warnings_from(reopen)
    aside = _set_aside(tmp_path)
    assert len(got) == 1 and len(aside) == 1, (got, aside)
    assert str(tmp_path / FILE_NAME) in got[0] and str(aside[0]) in got[0] and "\n" not in got[0]
    assert aside[0].read_bytes() == damaged
    assert (spool.queued, spool.bytes, spool.problem) == (0, 0, None)  # a fresh spool that works
    spool.put([_message(1)])
    spool.close()
    assert _waiting(tmp_path) == [_message(1)]


def test_damage_found_while_running_is_set_aside_too(tmp_path):
    spool, send = Spool(tmp_path), FakeSender()
    spool.put([_message(k, size=600) for k in range(300)])
    _drain(spool, send, window=2)
    spool._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _truncated(spool.path)
    spool._connection.execute("PRAGMA shrink_memory")  # no cached pages: SQLite reads the file again
    got = _warnings_from(lambda: spool.put([_message(1000)]))
    aside = _set_aside(tmp_path)
    assert len(got) == 1 and len(aside) == 1 and str(aside[0]) in got[0] and str(spool.path) in got[0]
    assert "298 messages waiting in it are not sent" in got[0]
    assert (spool.queued, spool.in_flight, spool.problem) == (1, 2, None)
    spool.acknowledged(1)  # what was in flight can still be acknowledged
    assert spool.forget_in_flight() == 1 and spool.bytes == 4
    assert _drain(spool, send) == [_message(1000)]
    spool.close()
    assert _waiting(tmp_path) == [_message(1000)]


def test_damage_found_while_handing_over(tmp_path):
    spool, send = Spool(tmp_path), FakeSender()
    spool.put([_message(k, size=600) for k in range(300)])
    spool._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _truncated(spool.path)
    spool._connection.execute("PRAGMA shrink_memory")
    got = _warnings_from(lambda: _drain(spool, send))  # the first rows are readable, the last are not
    assert 0 < len(send.sent) < 300 and send.sent == [_message(k, size=600) for k in range(len(send.sent))]
    assert len(got) == 1 and len(_set_aside(tmp_path)) == 1 and "damaged" in got[0]
    assert (spool.queued, spool.in_flight) == (0, len(send.sent))
    spool.put([_message(1000)])
    assert _drain(spool, send) == [_message(1000)]
    spool.close()
    assert _waiting(tmp_path) == [_message(1000)]


def test_the_bound_holds_while_the_disk_is_full(tmp_path):
    spool = Spool(tmp_path, max_bytes=5500)
    spool.put([_message(k, size=1000) for k in range(3)])
    spool._connection.execute("PRAGMA max_page_count = 1")
    put = 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SoundsceneWarning)
        while spool.problem is None or spool.dropped == 0:
            assert put < 100, "the disk never filled or nothing was dropped"
            spool.put([_message(put, size=1000)])
            put += 1
    assert spool.dropped + spool.queued == put and spool.bytes == 5000
    # the oldest went first, those on disk included
    assert _drain(spool) == [_message(k, size=1000) for k in range(spool.dropped, put)]
    got = _warnings_from(spool.close)  # in flight, held in memory only: the disk is still full
    assert len(got) == 1 and "messages held in memory could not be written before closing" in got[0]


def test_a_full_disk_warns_once_keeps_publishing_and_recovers(tmp_path):
    spool, send = Spool(tmp_path), FakeSender()
    spool.put([_message(k) for k in range(3)])
    spool._connection.execute("PRAGMA max_page_count = 1")  # the file may not grow: SQLITE_FULL, as a full disk
    full = [_message(k, size=1000) for k in range(3, 40)]
    got = _warnings_from(lambda: [spool.put([m]) for m in full])
    assert len(got) == 1 and str(spool.path) in got[0] and "database or disk is full" in got[0]
    assert spool.problem == "cannot write: database or disk is full" and spool.queued == 40
    spool.retry_seconds = 0.0  # every put tries again from now on, and fails: no more warnings
    assert _warnings_from(lambda: spool.put([_message(40, size=1000)])) == []
    live = _drain(spool, send, window=30)  # live publishing goes on, in order
    assert live == [_message(k) for k in range(3)] + full[:27]
    for mid in range(1, 21):
        spool.acknowledged(mid)
    spool._connection.execute("PRAGMA max_page_count = 1000000")  # room again
    got = _warnings_from(lambda: spool.put([_message(41)]))
    assert len(got) == 1 and "writes again" in got[0] and spool.problem is None
    assert (spool.queued, spool.in_flight, spool.bytes) == (12, 10, 21 * 1000 + 2)
    spool.close()
    # on disk: the 10 in flight (held in memory when handed over) and the 12 queued, in order
    assert _waiting(tmp_path) == [_message(k, size=1000) for k in range(20, 41)] + [_message(41)]


def test_link_sends_what_a_previous_run_left(tmp_path, broker, subscribers):
    before = Spool(tmp_path)  # a run that never reached its broker
    before.put([("soundscene/spool-1/scene", json.dumps({"seq": k}).encode(), True) for k in (1, 2, 3)])
    before.close()
    sub = subscribers(broker.port, "spool-1")
    spool = Spool(tmp_path)
    spool.put([("soundscene/spool-1/scene", json.dumps({"seq": 4}).encode(), True)])
    link = Link(spool, "127.0.0.1", broker.port, client_id=f"spool-test-{free_port()}",
                status_topic="soundscene/spool-1/status", qos=1)
    try:
        sub.wait("scene", 4, timeout=60)
        assert spool.wait_empty(60)
    finally:
        link.close(30)
    assert [m["seq"] for m in sub.json("scene")] == [1, 2, 3, 4] and spool.undelivered == 0
    assert _waiting(tmp_path) == []  # the acknowledged messages left the disk
