"""The soundscape hub (soundscene.apps.hub): storage, ingest, API, alerts.

Storage tests run twice, on a SQLite file and on a real PostgreSQL server started by the tests.
"""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import text

from soundscene.apps.hub import db
from soundscene.apps.hub.messages import BadMessage, parse
from soundscene.apps.hub.writer import Refused, store_batch
from soundscene.errors import SoundsceneError

from helpers import wait_for
from hub_support import (T0, Postgres, Publisher, encoded, full_levels, health_fields, health_message,
                         levels_message, scene, topic)


@pytest.fixture(scope="module")
def postgres():
    server = Postgres().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    return request.getfixturevalue("postgres").database()


@pytest.fixture
def engine(db_url):
    engine = db.open_database(db_url)
    yield engine
    engine.dispose()


def store(engine, *payloads, kind="scene", now=None):
    """Parse and store sensor payloads (dicts) as the ingest would."""
    items = []
    for p in payloads:
        raw = encoded(p)
        try:
            items.append(parse(topic(p["sensor_id"], kind), raw))
        except BadMessage as exc:
            items.append(Refused(topic(p["sensor_id"], kind), raw, str(exc)))
    return store_batch(engine, items, now=T0 + 1000 if now is None else now)


def rows(engine, query: str):
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(query))]


def segment_rows(engine, sensor="s1"):
    return rows(engine, f"SELECT label, start, \"end\", count, first_seq, last_seq FROM segments "
                        f"WHERE sensor_id = '{sensor}' ORDER BY start")


# --- the schema and its migrations -------------------------------------------------------------------------

def test_an_empty_database_gets_the_newest_schema(engine):
    assert db.current_revision(engine) == db.head_revision()
    with engine.connect() as conn:
        names = set(db.metadata.tables)
        assert names <= set(conn.dialect.get_table_names(conn))


def test_a_database_of_the_previous_schema_is_upgraded_keeping_its_data(db_url):
    engine = db.make_engine(db_url)
    db.upgrade(engine, "r0001")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO sensors (id, status) VALUES ('old', 'online')"))
        for seq in (1, 2, 4):
            conn.execute(text("INSERT INTO decisions (sensor_id, boot, seq, t, stored, label, silent) "
                              "VALUES ('old', '', :seq, :t, :t, 'park', false)"), {"seq": seq, "t": T0 + seq})
    engine.dispose()
    engine = db.open_database(db_url)
    assert db.current_revision(engine) == db.head_revision()
    assert rows(engine, "SELECT id, received, lost FROM sensors") == [("old", 3, 1)]
    assert rows(engine, "SELECT COUNT(*) FROM decisions") == [(3,)]
    engine.dispose()


def test_a_database_from_a_newer_soundscene_is_refused_in_one_line(engine, db_url):
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'r9999'"))
    with pytest.raises(SoundsceneError, match="newer soundscene") as caught:
        db.open_database(db_url)
    assert "\n" not in str(caught.value)


def test_an_unreachable_database_is_one_line(tmp_path):
    with pytest.raises(SoundsceneError, match="does not exist"):
        db.open_database(str(tmp_path / "missing" / "hub.db"))
    with pytest.raises(SoundsceneError, match="cannot open the database"):
        db.open_database(f"postgresql+psycopg://nobody@127.0.0.1:{_closed_port()}/x")


def _closed_port() -> int:
    from helpers import free_port

    return free_port()


# --- each message once -------------------------------------------------------------------------------------

def test_a_replay_changes_nothing(engine):
    messages = [scene("s1", seq, "park" if seq < 6 else "metro") for seq in range(1, 11)]
    first = store(engine, *messages)
    assert first.stored == 10 and first.duplicates == 0
    before = (rows(engine, "SELECT COUNT(*) FROM decisions"), segment_rows(engine),
              rows(engine, "SELECT received, lost, label FROM sensors"))
    again = store(engine, *messages[3:])  # a replay after a reconnect, or the retained scene at restart
    assert again.stored == 0 and again.duplicates == 7
    after = (rows(engine, "SELECT COUNT(*) FROM decisions"), segment_rows(engine),
             rows(engine, "SELECT received, lost, label FROM sensors"))
    assert before == after
    assert after[2] == [(10, 0, "metro")]


def test_out_of_order_delivery_gives_the_same_segments_as_in_order(engine, db_url):
    labels = ["park"] * 4 + ["metro"] * 3 + [None] * 2 + ["park"] * 5 + ["street_traffic"] * 2
    messages = [scene("s1", seq, label) for seq, label in enumerate(labels, start=1)]
    shuffled = messages[:]
    random.Random(4).shuffle(shuffled)
    for k in range(0, len(shuffled), 3):  # in several batches, as an ingest would
        store(engine, *shuffled[k:k + 3])
    got = segment_rows(engine)
    assert [(label, count) for label, _, _, count, _, _ in got] == [
        ("park", 4), ("metro", 3), (None, 2), ("park", 5), ("street_traffic", 2)]
    assert got[0][1] == pytest.approx(T0) and got[-1][2] == pytest.approx(T0 + 16)
    assert all(a[2] == pytest.approx(b[1]) for a, b in zip(got, got[1:])), "segments follow without gaps"
    assert rows(engine, "SELECT label, lost, received FROM sensors") == [("street_traffic", 0, 16)]


def test_gaps_in_seq_are_counted_as_lost_and_a_late_message_fills_its_gap(engine):
    store(engine, *[scene("s1", seq, "park") for seq in (1, 2, 6)])
    assert rows(engine, "SELECT lost FROM sensors") == [(3,)]
    store(engine, scene("s1", 4, "park"))
    assert rows(engine, "SELECT lost FROM sensors") == [(2,)]
    # a new boot starts its numbering again at 1: not a replay, and no loss
    store(engine, *[scene("s1", seq, "metro", boot="c" * 32, t=T0 + 100 + seq) for seq in (1, 2)])
    assert rows(engine, "SELECT lost, received, label FROM sensors") == [(2, 6, "metro")]
    # level messages share the sensor's numbering
    store(engine, levels_message("s1", 4, -40.0, start=T0 + 100, boot="c" * 32), kind="levels")
    assert rows(engine, "SELECT lost, received FROM sensors") == [(3, 7)]
    assert rows(engine, "SELECT laeq FROM levels") == [(-40.0,)]


def test_an_outage_splits_a_segment(engine):
    store(engine, *[scene("s1", seq, "park") for seq in range(1, 4)])
    store(engine, *[scene("s1", seq, "park", t=T0 + 3600 + seq) for seq in range(4, 6)])
    assert [r[3] for r in segment_rows(engine)] == [3, 2]


def test_messages_without_boot_or_levels_are_accepted(engine):
    plain = scene("s1", 1, "park")
    del plain["boot"]
    assert store(engine, plain).stored == 1
    assert rows(engine, "SELECT boot FROM decisions") == [("",)]


def test_a_decision_with_levels_stores_its_laeq_as_the_level(engine):
    """And what it is relative to: an uncalibrated sensor's level is never shown as dB SPL."""
    store(engine, scene("s1", 1, "park", levels=full_levels(61.5, calibrated=True)))
    store(engine, scene("s2", 1, "park", levels=full_levels(-30.2)))
    store(engine, scene("s3", 1, "park"))  # no levels: the decision's RMS level, in dBFS
    assert rows(engine, "SELECT id, level, level_reference FROM sensors ORDER BY id") == [
        ("s1", 61.5, "dB SPL"), ("s2", -30.2, "dBFS"), ("s3", -30.0, "dBFS")]
    assert rows(engine, "SELECT level_reference FROM decisions ORDER BY sensor_id") == [("dB SPL",), ("dBFS",),
                                                                                      ("dBFS",)]


# --- bad messages ------------------------------------------------------------------------------------------

def deep(payload: dict, depth: int = 20000) -> bytes:
    """``payload`` with a list nested ``depth`` deep in its model object: 41 kB at 20,000, under the size limit."""
    return encoded({**payload, "model": {**payload["model"], "deep": "@"}}).replace(b'"@"', b"[" * depth + b"]" * depth)



BAD = [
    (topic("s1"), b"{not json", "not JSON"),
    (topic("s1"), b"\xff\xfe", "not UTF-8"),
    (topic("s1"), b"[1, 2]", "JSON object"),
    (topic("s1"), b"x" * 70000, "limit"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "seq": "one"}), "schema"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "extra": 1}), "schema"),
    (topic("s1"), encoded(scene("s2", 1, "park")), "does not match"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "boot": "../x"}), "boot"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "timestamp": "yesterday"}), "timestamp"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "levels": {"LAeq": "loud"}}), "LAeq"),
    (topic("s1", "status"), b"sleeping", "online or offline"),
    (topic("s1", "levels"), encoded({"sensor_id": "s1", "seq": 1}), "levels_message"),
    ("soundscene/a b/scene", b"{}", "sensor id"),
    # one message must never stop the hub: what both databases store and the API shows, or a one-line refusal
    (topic("s1"), deep(scene("s1", 1, "park")), "nested deeper than 16"),  # 41 kB: under the size limit
    (topic("s1"), deep(scene("s1", 1, "park"), 15), "nested deeper than 16"),  # 17 levels: JSON can read it
    (topic("s1"), encoded({**scene("s1", 1, "park"), "seq": 2**63}), "seq: 9223372036854775808 is out of range"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "seq": 10**30}), "seq: 1000000000000000000000000000000 is out"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "hop_seconds": 0.5}).replace(b"0.5", b"1e999"), "1e999 is out"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "hop_seconds": 0}), "hop_seconds must be above 0"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "window_seconds": 1e6}), "window_seconds must be above 0"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "level_dbfs": 400}), "level_dbfs must be from -3300 to 300"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "probabilities": {"park": 7, "metro": -5}}),
     "probabilities\\['park'\\] must be from 0 to 1"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "probabilities": {"park": 0.5, "metro": -5}}),
     "probabilities\\['metro'\\] must be from 0 to 1"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "confidence": 7}), "schema: confidence"),
    (topic("s1"), encoded(scene("s1", 1, "park", levels={**full_levels(50.0), "bands": {"250": 1e4}})),
     "levels.bands\\['250'\\] must be from"),
    (topic("s1"), encoded(scene("s1", 1, "park", levels={**full_levels(50.0), "LCeq": -1e4})), "levels.LCeq must be"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "label": "x" * 10000}), "label must be text of at most 200"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "label": "pa\x00rk"}), "control characters"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "probabilities": {"p" * 201: 0.5}}), "a class name must be"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "label": "\ud800"}), "lone surrogate"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "timestamp": "9999-12-31T23:59:59-14:00"}),
     "timestamp 9999-12-31T23:59:59-14:00 is more than 24 hours ahead of the hub's clock"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "timestamp": "9999-12-31T23:59:59Z"}), "ahead of the hub"),
    (topic("s1"), encoded({**scene("s1", 1, "park"), "timestamp": "1970-01-01T00:00:10Z"}),
     "more than 3660 days behind the hub's clock"),
    (topic("s1", "levels"), encoded(levels_message("s1", 1, -40.0, start=T0, seconds=2 * 86400)), "more than a day"),
    (topic("s1", "health"), encoded({**health_message("s1", 1, t=T0), "seq": 2**64}), "seq: 18446744073709551616"),
    (topic("s1", "health"), encoded({**health_message("s1", 1, t=T0), "temperature_c": 1e9}), "temperature_c must"),
]



@pytest.mark.parametrize("where, payload, reason", BAD, ids=[b[2] for b in BAD])
def test_a_bad_message_is_refused_with_one_line(where, payload, reason):
    with pytest.raises(BadMessage, match=reason) as caught:
        parse(where, payload)
    assert "\n" not in str(caught.value)


def test_refused_messages_are_stored_as_ingest_errors_with_their_first_bytes(engine):
    items = [Refused(t, p, r) for t, p, r in BAD[:4]] + [parse(topic("s1"), encoded(scene("s1", 1, "park")))]
    result = store_batch(engine, items, now=T0 + 1000)
    assert result.errors == 4 and result.stored == 1
    kept = rows(engine, "SELECT topic, payload, reason FROM ingest_errors ORDER BY id")
    assert [bytes(p) for _, p, _ in kept] == [p[:512] for _, p, _ in BAD[:4]]


def numbered(sensor: str, seq: int, label: str, *, t: float | None = None, **kw) -> dict:
    """A scene of ``seq`` at ``t`` (default: a minute ago), whatever the seq: its time since the stream started and
    its timestamp stay plausible, only the numbering is odd."""
    import time as _time

    return {**scene(sensor, seq, label, t=_time.time() - 60 if t is None else t, **kw), "time": 10.0}


def test_an_absurd_seq_jump_is_refused_and_a_long_silence_still_counts_its_loss(engine):
    """seq 1 then 10**12 on one boot is not 999,999,999,998 lost messages: more than 10**6 plus 100 a second since
    the sensor was last heard is refused; a sensor silent for a day may have lost millions."""
    store(engine, numbered("s1", 1, "park", t=T0 + 1))
    jump = store(engine, numbered("s1", 10**12, "park", t=T0 + 2), numbered("s1", 2, "park", t=T0 + 3))
    assert (jump.stored, jump.errors) == (1, 1)
    store(engine, numbered("s2", 3_000_000, "park", t=T0 + 1))  # behind the boot's lowest by more than 10**6
    behind = store(engine, numbered("s2", 1, "park", t=T0 + 2), numbered("s2", 2_500_000, "park", t=T0 + 3))
    assert (behind.stored, behind.errors) == (1, 1)
    store(engine, numbered("s3", 1, "park", t=T0 + 1), now=T0 + 2 * 86400)
    late = store(engine, numbered("s3", 5_000_000, "park", t=T0 + 86400), now=T0 + 2 * 86400)
    assert (late.stored, late.errors) == (1, 0)
    assert rows(engine, "SELECT id, lost FROM sensors ORDER BY id") == [("s1", 0), ("s2", 499_999), ("s3", 4_999_998)]
    reasons = [r for (r,) in rows(engine, "SELECT reason FROM ingest_errors ORDER BY id")]
    assert reasons[0] == (f"seq {10**12} is {10**12 - 1} ahead of 1, the highest of boot {'b' * 32}: more than the "
                          "1000100 a sensor could have sent since it was last heard (a corrupt or forged number)")
    assert reasons[1].startswith(f"seq 1 is 2999999 behind 3000000, the lowest of boot {'b' * 32}")
    assert rows(engine, "SELECT topic FROM ingest_errors") == [(topic("s1"),), (topic("s2"),)]


def test_the_writer_refuses_a_time_more_than_a_day_ahead_of_its_clock(engine):
    """What parse refuses, the writer refuses too, for its other callers (hub import): the API could not show it."""
    later = parse(topic("s1"), encoded(scene("s1", 1, "park", t=T0 + 3 * 86400)), now=T0 + 3 * 86400)
    result = store_batch(engine, [later], now=T0)
    assert (result.stored, result.errors) == (0, 1)
    assert "ahead of the hub's clock" in rows(engine, "SELECT reason FROM ingest_errors")[0][0]
    assert rows(engine, "SELECT id FROM sensors") == []


# --- ingest through a real broker ----------------------------------------------------------------------------

def persistent_broker(broker_factory):
    """Mosquitto keeping sessions on disk and queueing enough for an offline hub (as the README recommends)."""
    import os

    b = broker_factory()
    keep = f"persistence true\npersistence_location {b.folder}/\nmax_queued_messages 100000\n"
    if os.geteuid() == 0 and "user root" not in b.config.read_text():  # else it cannot write its database here
        keep += "user root\n"
    b.config.write_text(b.config.read_text().replace("persistence false\n", keep))
    return b.start()


@pytest.fixture
def hub_factory():
    from soundscene.apps.hub.service import Hub

    made = []

    def make(engine, port, **options) -> Hub:
        """A started, connected hub on the plain listener ``port`` of 127.0.0.1, or on BrokerSettings."""
        from soundscene.apps.broker import BrokerSettings

        options.setdefault("client_id", f"hub-{len(made)}-{random.randrange(1 << 30)}")
        broker = port if isinstance(port, BrokerSettings) else ("127.0.0.1", port)
        hub = Hub(engine, broker=broker, **options).start()
        made.append(hub)
        assert hub.ingest.connected.wait(10), "the hub did not connect"
        return hub
    yield make
    for hub in made:
        hub.stop()


def now_scene(sensor, seq, label, **kw):
    import time as _time

    return scene(sensor, seq, label, t=_time.time() - 100 + seq * 0.01, **kw)


def count(engine, query):
    found = rows(engine, query)
    return found[0][0] if found else None


def test_the_hub_stores_each_message_once_through_replays_and_retained_redelivery(tmp_path, broker, hub_factory):
    engine = db.open_database(str(tmp_path / "hub.db"))
    hub = hub_factory(engine, broker.port)
    pub = Publisher(broker.port)
    messages = [now_scene("kerb", seq, "street_traffic" if seq % 7 else "park") for seq in range(1, 31)]
    for m in messages:
        pub.send(topic("kerb"), m, retain=True)  # the scene topic is retained, as sensors publish it
    wait_for(lambda: count(engine, "SELECT received FROM sensors") == 30, 10, "30 stored")
    for m in messages[10:20]:  # a sensor replaying after a reconnect
        pub.send(topic("kerb"), m)
    pub.send(topic("kerb"), b"{broken")  # a malformed message on the way
    wait_for(lambda: count(engine, "SELECT COUNT(*) FROM ingest_errors") == 1, 10, "the error stored")
    hub.stop()  # the hub returns without its session (expired, or a broker that lost it): a new subscription,
    hub2 = hub_factory(engine, broker.port)  # so the broker delivers the retained scene again
    wait_for(lambda: hub2.ingest.totals["duplicates"] == 1, 10, "the retained scene, again")
    pub.send(topic("kerb"), now_scene("kerb", 31, "park"))
    wait_for(lambda: count(engine, "SELECT received FROM sensors") == 31, 10, "31 stored")
    assert count(engine, "SELECT COUNT(*) FROM decisions") == 31
    assert rows(engine, "SELECT lost, label FROM sensors") == [(0, "park")]
    assert count(engine, "SELECT SUM(count) FROM segments") == 31
    metrics = hub2.metrics_text().decode()
    assert "soundscene_hub_messages_total{result=\"duplicate\"}" in metrics
    assert 'soundscene_hub_sensors{status="online"} 1.0' in metrics
    pub.close()


def test_the_hub_ingests_over_tls_as_its_own_user(tmp_path, broker_factory, certificates, hub_factory):
    """mqtts:// with a CA, a user and a password file, and an ACL: sensors write their own topics, the hub reads."""
    import warnings

    from helpers import SENSOR_ACL
    from soundscene.apps.broker import broker_settings
    from soundscene.apps.hub.ingest import Ingest
    from soundscene.apps.mqtt import SensorPublisher
    from soundscene.errors import SoundsceneWarning

    users = {"hub": "hub pass 9", "kitchen-1": "kitchen pass 1", "sim-1": "sim pass"}
    b = broker_factory(users=users, certificates=certificates, acl=SENSOR_ACL).start()

    def settings(user, password):
        (tmp_path / user).write_text(password + "\n")
        return broker_settings(f"mqtts://127.0.0.1:{b.tls_port}", ca=certificates.ca, username=user,
                               password_file=tmp_path / user, environ={})

    engine = db.open_database(str(tmp_path / "hub.db"))
    hub = hub_factory(engine, settings("hub", users["hub"]))
    assert hub.ingest.broker.tls and hub.health()["mqtt"] == "connected"
    with SensorPublisher.for_broker(settings("kitchen-1", users["kitchen-1"]), "kitchen-1", window_seconds=1,
                                    hop_seconds=1) as pub:
        pub.publish({"time": 1.0, "label": "park", "confidence": 0.9, "probabilities": {"park": 0.9}})
        assert pub.flush(10) and pub.refused == 0
    wait_for(lambda: count(engine, "SELECT COUNT(*) FROM decisions") == 1, 20, "the decision stored")
    assert rows(engine, "SELECT sensor_id, label FROM decisions") == [("kitchen-1", "park")]

    with warnings.catch_warnings(record=True) as got:  # a hub with the wrong password: said once, retried
        warnings.simplefilter("always")
        refused = Ingest(engine, settings("hub", "wrong pass"), client_id="hub-wrong").start()
        try:
            wait_for(lambda: b.log_lines("not authorised") >= 2, 30, "two refused logins of the hub")
            wait_for(lambda: [w for w in got if issubclass(w.category, SoundsceneWarning)], 10, "the warning")
        finally:
            refused.stop()
    lines = [str(w.message) for w in got if issubclass(w.category, SoundsceneWarning)]
    assert len(lines) == 1 and "refused the hub: Not authorized (0x87)" in lines[0] and "wrong pass" not in lines[0]
    assert not refused.connected.is_set()

    import numpy as np  # hub simulate over TLS too: a simulated sensor whose user is its id

    from soundscene.apps.hub.simulate import DEFAULT_CLASSES, Fleet, scene_walk

    tracks = scene_walk(DEFAULT_CLASSES, 2, np.random.default_rng(0))
    fleet = Fleet(settings("sim-1", users["sim-1"]), 1, tracks, DEFAULT_CLASSES, {"name": "walk", "version": "0"},
                  hop=0.1, level_interval=0, prefix="sim")
    fleet.run(seconds=0.5)
    decisions = fleet.sensors[0].decisions
    assert decisions >= 1
    wait_for(lambda: count(engine, "SELECT COUNT(*) FROM decisions WHERE sensor_id = 'sim-1'") == decisions, 20,
             "the simulated sensor's decisions stored")


def test_a_sensors_last_will_turns_it_offline(tmp_path, broker, hub_factory):
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    engine = db.open_database(str(tmp_path / "hub.db"))
    hub_factory(engine, broker.port)
    code = textwrap.dedent(f"""
        import time
        from soundscene.apps.mqtt import SensorPublisher
        pub = SensorPublisher("127.0.0.1", {broker.port}, "doomed", keepalive=1, window_seconds=1, hop_seconds=1)
        assert pub.wait_connected(10), pub.last_error
        pub.publish({{"time": 1.0, "label": "metro", "confidence": 0.9, "probabilities": {{"metro": 0.9}}}})
        assert pub.flush(10)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_for(lambda: rows(engine, "SELECT status, label FROM sensors") == [("online", "metro")], 30,
                 "the sensor online with its scene")
        os.kill(proc.pid, signal.SIGKILL)
        wait_for(lambda: rows(engine, "SELECT status FROM sensors") == [("offline",)], 10, "the last will")
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_the_broker_going_down_and_up_loses_nothing(tmp_path, broker_factory, hub_factory):
    b = persistent_broker(broker_factory)
    engine = db.open_database(str(tmp_path / "hub.db"))
    hub = hub_factory(engine, b.port)
    pub = Publisher(b.port)
    for seq in range(1, 6):
        pub.send(topic("s1"), now_scene("s1", seq, "park"))
    wait_for(lambda: count(engine, "SELECT COUNT(*) FROM decisions") == 5, 10, "5 stored")
    b.proc.terminate()  # a broker restart (it saves its sessions)
    b.proc.wait(timeout=10)
    wait_for(lambda: not hub.ingest.connected.is_set() and not pub.client.is_connected(), 10,
             "the hub and the sensor to notice")
    for seq in range(6, 11):  # the sensor keeps publishing; its client queues
        pub.client.publish(topic("s1"), encoded(now_scene("s1", seq, "metro")), qos=1)
    b.start()
    wait_for(lambda: count(engine, "SELECT COUNT(*) FROM decisions") == 10, 30, "10 stored after the restart")
    assert rows(engine, "SELECT lost, received, label FROM sensors") == [(0, 10, "metro")]
    pub.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_of_the_hub_during_a_burst_loses_nothing(backend, tmp_path, broker_factory, request):
    from hub_support import HubProcess

    b = persistent_broker(broker_factory)
    url = str(tmp_path / "hub.db") if backend == "sqlite" else request.getfixturevalue("postgres").database()
    hub = HubProcess(tmp_path, b.port, url).start()
    engine = db.open_database(url)
    pub = Publisher(b.port)
    total, sensors_ = 1500, 5
    try:
        for seq in range(1, total // sensors_ + 1):
            for k in range(sensors_):
                last = pub.client.publish(topic(f"s{k}"),
                                          encoded(now_scene(f"s{k}", seq, "park" if seq % 50 else "metro")), qos=1)
            if seq == 60:  # mid-burst, while it stores
                wait_for(lambda: count(engine, "SELECT COUNT(*) FROM decisions") > 50, 20, "storing to begin")
                hub.kill()
        last.wait_for_publish(30)  # the broker has the whole burst; the hub is down
        hub = HubProcess(tmp_path, b.port, url).start()  # same client id: the broker kept its session
        wait_for(lambda: count(engine, "SELECT COUNT(*) FROM decisions") == total, 60, f"{total} stored")
        assert rows(engine, "SELECT SUM(received), SUM(lost) FROM sensors") == [(total, 0)]
        assert count(engine, "SELECT SUM(count) FROM segments") == total
    finally:
        hub.stop()
        pub.close()
        engine.dispose()


def test_two_hubs_sharing_the_subscription_store_every_message_once(postgres, broker, hub_factory):
    url = postgres.database()
    engines = [db.open_database(url) for _ in range(2)]
    for k, engine in enumerate(engines):
        hub_factory(engine, broker.port, share="hubs", client_id=f"shared-hub-{k}")
    pub = Publisher(broker.port)
    total = 600
    for seq in range(1, total // 4 + 1):
        for k in range(4):
            pub.client.publish(topic(f"s{k}"), encoded(now_scene(f"s{k}", seq, ("park", "metro")[seq // 20 % 2])),
                               qos=1)
    engine = engines[0]
    wait_for(lambda: count(engine, "SELECT COUNT(*) FROM decisions") == total, 60, f"{total} stored")
    assert rows(engine, "SELECT SUM(received), SUM(lost) FROM sensors") == [(total, 0)]
    assert rows(engine, "SELECT sensor_id, label, count FROM segments ORDER BY sensor_id, first_seq")[:4] == [
        ("s0", "park", 19), ("s0", "metro", 20), ("s0", "park", 20), ("s0", "metro", 20)]
    assert count(engine, "SELECT SUM(count) FROM segments") == total
    pub.close()
    for e in engines:
        e.dispose()


# --- one message never stops the hub (a real hub on a real Mosquitto, on SQLite and on PostgreSQL) -----------

def reasons(engine) -> list[str]:
    return [r for (r,) in rows(engine, "SELECT reason FROM ingest_errors ORDER BY id")]


def send_then_wait(engine, port: int, messages, last: dict) -> None:
    """Publish ``messages`` ((topic, payload) pairs), then the good scene ``last``, and wait until ``last`` is
    stored: the hub took the messages before it in order, so it is past them."""
    pub = Publisher(port)
    for where, payload in messages:
        pub.send(where, payload)
    pub.send(topic(last["sensor_id"]), last)
    query = f"SELECT COUNT(*) FROM decisions WHERE sensor_id = '{last['sensor_id']}' AND seq = {last['seq']}"
    wait_for(lambda: count(engine, query) == 1, 30, f"{last['sensor_id']} seq {last['seq']} stored")
    pub.close()


def assert_alive(hub) -> None:
    state = hub.health()
    assert hub.ingest.failure is None and state["ok"] and state["ingest"] == "ok", state


def test_deeply_nested_json_is_an_ingest_error_acknowledged_once(engine, broker, hub_factory):
    """1,000s deep (41 kB) killed the worker with a RecursionError, and came again at every restart."""
    client_id = f"hub-nesting-{random.randrange(1 << 30)}"
    hub = hub_factory(engine, broker.port, client_id=client_id)
    nested = deep(now_scene("s1", 1, "park"))
    send_then_wait(engine, broker.port, [(topic("s1"), nested)], now_scene("s1", 2, "park"))
    assert reasons(engine) == ["payload is JSON nested deeper than 16 levels"]
    assert bytes(rows(engine, "SELECT payload FROM ingest_errors")[0][0]) == nested[:512]
    assert_alive(hub)
    hub.stop()  # the same client id again: its session kept nothing unacknowledged, so nothing comes again
    hub = hub_factory(engine, broker.port, client_id=client_id)
    send_then_wait(engine, broker.port, [], now_scene("s1", 3, "park"))
    assert count(engine, "SELECT COUNT(*) FROM ingest_errors") == 1
    assert count(engine, "SELECT COUNT(*) FROM decisions") == 2
    assert_alive(hub)


def test_a_seq_beyond_64_bits_or_gaps_that_overflow_the_lost_counter_are_refused(engine, broker, hub_factory):
    """On SQLite these raised OverflowError in the worker; PostgreSQL refused them without a word about seq."""
    hub = hub_factory(engine, broker.port)
    huge = [(topic("s1"), encoded(numbered("s1", seq, "park"))) for seq in (2**63, 10**30)]
    gaps = []  # three boots of 1 then 2**62 + 1: lost 3 * 2**62 is over 2**63 - 1
    for boot in ("c" * 32, "d" * 32, "e" * 32):
        gaps += [(topic("s2"), encoded(numbered("s2", seq, "park", boot=boot))) for seq in (1, 2**62 + 1)]
    send_then_wait(engine, broker.port, huge + gaps, now_scene("s2", 2, "metro", boot="e" * 32))
    got = reasons(engine)
    assert got[:2] == ["seq: 9223372036854775808 is out of range (beyond a 64-bit integer)",
                       "seq: 1000000000000000000000000000000 is out of range (beyond a 64-bit integer)"]
    assert len(got) == 5 and all(r.startswith(f"seq {2**62 + 1} is {2**62} ahead of 1, the highest of boot ")
                                 for r in got[2:]), got
    assert rows(engine, "SELECT id, lost, received FROM sensors") == [("s2", 0, 4)]
    assert_alive(hub)


def test_times_far_in_the_future_or_past_are_refused_and_the_fleet_stays_readable(engine, broker, hub_factory):
    """9999-12-31T23:59:59-14:00 made GET /v1/sensors 500 for the whole fleet; ...Z froze the sensor's scene."""
    from fastapi.testclient import TestClient

    from soundscene.apps.hub.api import create_app

    hub = hub_factory(engine, broker.port)
    far = [(topic("s1"), encoded({**now_scene("s1", 1, "park"), "timestamp": "9999-12-31T23:59:59-14:00"})),
           (topic("s2"), encoded({**now_scene("s2", 1, "metro"), "timestamp": "9999-12-31T23:59:59Z"})),
           (topic("s2"), encoded({**now_scene("s2", 2, "metro"), "timestamp": "1970-01-01T00:00:10Z"})),
           (topic("s2", "health"), encoded({**health_message("s2", 3, t=T0), "timestamp": "9999-12-31T23:59:59Z"}))]
    send_then_wait(engine, broker.port, far, now_scene("s2", 4, "park"))
    assert reasons(engine) == [
        "timestamp 9999-12-31T23:59:59-14:00 is more than 24 hours ahead of the hub's clock (check the sensor's clock)",
        "timestamp 9999-12-31T23:59:59Z is more than 24 hours ahead of the hub's clock (check the sensor's clock)",
        "timestamp 1970-01-01T00:00:10Z is more than 3660 days behind the hub's clock (check the sensor's clock)",
        "timestamp 9999-12-31T23:59:59Z is more than 24 hours ahead of the hub's clock (check the sensor's clock)"]
    with TestClient(create_app(hub), raise_server_exceptions=False) as client:
        fleet = client.get("/v1/sensors")
        assert fleet.status_code == 200, fleet.text
        assert [(s["id"], s["label"]) for s in fleet.json()] == [("s2", "park")]  # the newest scene is current
    assert_alive(hub)


def test_a_seq_jump_of_a_trillion_is_refused_not_counted_as_lost(engine, broker, hub_factory):
    """seq 1 then 10**12 on one boot counted 999,999,999,998 lost messages."""
    hub = hub_factory(engine, broker.port)
    spoofed = [(topic("s1"), encoded(numbered("s1", seq, "park"))) for seq in (1, 10**12)]
    send_then_wait(engine, broker.port, spoofed, now_scene("s1", 2, "park"))
    assert [r.split(":")[0] for r in reasons(engine)] == [f"seq {10**12} is {10**12 - 1} ahead of 1, the highest "
                                                          f"of boot {'b' * 32}"]
    assert rows(engine, "SELECT lost, received FROM sensors") == [(0, 2)]
    assert_alive(hub)


def test_numbers_that_are_not_finite_or_out_of_range_are_refused(engine, broker, hub_factory):
    """1e999 was read as infinity and stored (hop, level, probabilities, bands); probabilities 7 and -5 too."""
    hub = hub_factory(engine, broker.port)

    def text(payload: dict, old: bytes, new: bytes) -> bytes:
        assert old in encoded(payload)
        return encoded(payload).replace(old, new)
    bad = [text({**now_scene("s1", 1, "park"), "hop_seconds": 0.125}, b"0.125", b"1e999"),
           text(now_scene("s1", 2, "park", level=-31.5), b"-31.5", b"1e999"),
           encoded({**now_scene("s1", 3, "park"), "probabilities": {"park": 7, "metro": -5}}),
           text(now_scene("s1", 4, "park", levels=full_levels(50.0)), b'"250": 40.0', b'"250": -1e999'),
           encoded(now_scene("s1", 5, "park", levels={**full_levels(50.0), "LAeq": 1e6}))]
    send_then_wait(engine, broker.port, [(topic("s1"), p) for p in bad], now_scene("s1", 6, "park"))
    assert reasons(engine) == ["number 1e999 is out of range (over 1.8e308)"] * 2 + [
        "probabilities['park'] must be from 0 to 1, got 7", "number -1e999 is out of range (over 1.8e308)",
        "levels.LAeq must be from -3300 to 300, got 1000000.0"]
    assert rows(engine, "SELECT seq, hop, level FROM decisions") == [(6, 1.0, -30.0)]
    assert_alive(hub)


def test_a_label_over_the_column_is_refused_alike_on_sqlite_and_postgresql(engine, broker, hub_factory):
    """A 10-kB label was stored on SQLite (String(200) is not enforced there) and refused on PostgreSQL."""
    hub = hub_factory(engine, broker.port)
    send_then_wait(engine, broker.port, [(topic("s1"), encoded({**now_scene("s1", 1, "park"), "label": "x" * 10000}))],
                   now_scene("s1", 2, "park"))
    assert reasons(engine) == ["label must be text of at most 200 characters, got 10000 characters"]
    assert rows(engine, "SELECT seq, label FROM decisions") == [(2, "park")]
    assert_alive(hub)


def refuse_rows(engine, table: str, condition: str = "true") -> None:
    """A real database fault: a trigger that makes inserting into ``table`` fail where ``condition`` holds."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} WHEN {condition} "
                              f"BEGIN SELECT RAISE(ABORT, '{table} refuses this row'); END"))
            return
        conn.execute(text(f"CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF "
                          f"{condition} THEN RAISE EXCEPTION '{table} refuses this row'; END IF; RETURN NEW; END $$"))
        conn.execute(text(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW "
                          f"EXECUTE FUNCTION refuse_{table}()"))


def test_a_message_the_database_refuses_is_stored_alone_as_an_ingest_error(engine, broker, hub_factory):
    """A batch that fails is stored one message at a time: the poison one is an ingest error, the others stored."""
    refuse_rows(engine, "decisions", "NEW.label = 'poison'")
    hub = hub_factory(engine, broker.port)
    batch = [(topic("s1"), encoded(now_scene("s1", seq, label))) for seq, label in ((1, "park"), (2, "poison"))]
    send_then_wait(engine, broker.port, batch, now_scene("s1", 3, "park"))
    (reason,) = reasons(engine)
    assert reason.startswith("could not be stored: ") and "decisions refuses this row" in reason
    assert rows(engine, "SELECT seq FROM decisions ORDER BY seq") == [(1,), (3,)]
    assert_alive(hub)


@pytest.mark.filterwarnings("ignore:the hub's ingest stopped")
def test_a_dead_ingest_worker_fails_healthz_and_ends_the_hub_process(engine, db_url, broker, hub_factory, tmp_path):
    """When even ingest_errors cannot be written, the worker dies: /healthz says 503 degraded and `soundscene hub`
    exits non-zero for its supervisor to restart it, never a hub that serves on with a silently dead thread."""
    from fastapi.testclient import TestClient

    from hub_support import HubProcess
    from soundscene.apps.hub.api import create_app

    refuse_rows(engine, "ingest_errors")
    hub = hub_factory(engine, broker.port)
    pub = Publisher(broker.port)
    pub.send(topic("s1"), b"{broken")
    with TestClient(create_app(hub)) as client:
        got = wait_for(lambda: (lambda r: r if r.status_code == 503 else None)(client.get("/healthz")), 30,
                       "/healthz to answer 503")
    assert got.json()["ok"] is False
    assert got.json()["ingest"].startswith("degraded: ") and "ingest_errors refuses this row" in got.json()["ingest"]
    pub.send(topic("s2"), b"{broken", retain=True)  # what a new subscription gets at once
    process = HubProcess(tmp_path, broker.port, db_url).launch()
    try:
        wait_for(lambda: process.proc.poll() is not None, 60, "the hub process to exit")
        said = process.log.read_text()
        assert process.proc.returncode == 2 and "error: the hub's ingest stopped (" in said, said[-3000:]
        assert "Traceback" not in said, said[-3000:]
    finally:
        process.stop()
        pub.close()


# --- the API -------------------------------------------------------------------------------------------------

TOKEN = "s3cret-token-0123456789"


@pytest.fixture
def api(db_url):
    from fastapi.testclient import TestClient

    from soundscene.apps.hub.api import create_app
    from soundscene.apps.hub.service import Hub

    engine = db.open_database(db_url)
    labels = ["park"] * 30 + ["metro"] * 20 + [None] * 10
    store(engine, *[scene("s1", seq, label, hop=5.0) for seq, label in enumerate(labels, start=1)],
          now=T0 + 400)
    store(engine, *[levels_message("s1", 100 + k, -40.0 + k % 5, start=T0 + 10 * k) for k in range(30)],
          kind="levels", now=T0 + 400)
    hub = Hub(engine, broker=("127.0.0.1", 1), token=TOKEN, writes_open=False)
    with TestClient(create_app(hub)) as client:
        yield client
    engine.dispose()


def test_the_fleet_and_a_sensors_timeline(api):
    fleet = api.get("/v1/sensors").json()
    assert [(s["id"], s["status"], s["label"], s["received"]) for s in fleet] == [("s1", "online", None, 90)]
    got = api.get("/v1/sensors/s1/timeline", params={"from": T0, "to": T0 + 86400}).json()
    assert [(s["label"], s["decisions"]) for s in got["segments"]] == [("park", 30), ("metro", 20), (None, 10)]
    assert got["segments"][0]["start"] == "2026-05-28T20:26:40.000Z"
    assert got["level"]["source"] == "levels" and 0 < len(got["level"]["points"]) <= 2000
    assert sum(p["n"] for p in got["level"]["points"]) == 30


def test_a_long_level_series_is_downsampled_to_at_most_2000_points(tmp_path):
    from soundscene.apps.hub import store as hub_store

    engine = db.open_database(str(tmp_path / "hub.db"))
    store(engine, *[scene("s1", seq, "park", hop=1.0) for seq in range(1, 2601)], now=T0 + 3000)
    got = hub_store.timeline(engine, "s1", T0, T0 + 2601)
    assert len(got["level"]["points"]) <= 2000 and sum(p["n"] for p in got["level"]["points"]) == 2600
    assert got["level"]["source"] == "decisions"


def test_day_levels_from_a_sensors_interval_laeqs(engine, api):
    """Lday/Levening/Lnight/Lden per local day (core.daylevels) from the levels messages: a steady 60 dB over a
    whole day and night is Lden 66.4; the time zone decides which day an hour belongs to."""
    from datetime import datetime, timezone

    from soundscene.apps.hub import store as hub_store
    from soundscene.core.daylevels import Periods

    start = datetime(2026, 5, 28, 7, tzinfo=timezone.utc).timestamp()
    store(engine, *[levels_message("s9", k + 1, 60.0, start=start + 3600 * k, seconds=3600) for k in range(24)],
          kind="levels", now=start + 86400)
    got = hub_store.day_levels(engine, "s9", start - 3600, start + 86400, periods=Periods(), zone=timezone.utc)
    assert got["reference"] == "dBFS" and [d["date"] for d in got["days"]] == ["2026-05-28"]
    (day,) = got["days"]
    assert (day["Lday"], day["Levening"], day["Lnight"], day["Lden"]) == (60.0, 60.0, 60.0, 66.4)
    assert day["coverage"] == {"day": 1.0, "evening": 1.0, "night": 1.0}
    from zoneinfo import ZoneInfo

    helsinki = hub_store.day_levels(engine, "s9", start - 3600, start + 86400, periods=Periods(),
                                    zone=ZoneInfo("Europe/Helsinki"))  # UTC+3: 10:00 to 10:00 local
    first, second = helsinki["days"]
    assert (first["date"], first["coverage"]) == ("2026-05-28", {"day": 0.75, "evening": 1.0, "night": 1.0})
    assert (second["date"], second["coverage"]["day"], second["Lden"]) == ("2026-05-29", 0.25, None)
    assert api.get("/v1/sensors/s1/day-levels", params={"tz": "Mars/Olympus"}).status_code == 400
    assert api.get("/v1/sensors/s1/day-levels", params={"day": 7, "evening": 3}).status_code == 400
    got = api.get("/v1/sensors/s1/day-levels", params={"from": T0, "to": T0 + 86400}).json()
    assert got["days"][0]["coverage"]["evening"] > 0 and got["days"][0]["Levening"] < -35


def test_summary_shares_and_hour_profile(api):
    got = api.get("/v1/summary", params={"from": T0, "to": T0 + 86400, "bucket": "hour"}).json()
    share = got["buckets"][0]["share"]
    assert share == pytest.approx({"metro": 20 / 60, "park": 30 / 60, "silence": 10 / 60}, abs=1e-3)
    assert len(got["hour_of_day"]) == 24


def test_exports_csv_and_parquet(api):
    import io

    import pyarrow.parquet as pq

    text_ = api.get("/v1/segments.csv", params={"from": T0, "to": T0 + 86400}).text
    assert text_.splitlines()[0] == "sensor_id,start,end,label,confidence,decisions,silent"
    assert len(text_.splitlines()) == 4
    table = pq.read_table(io.BytesIO(api.get("/v1/segments.parquet", params={"from": T0, "to": T0 + 86400}).content))
    assert table.column("label").to_pylist() == ["park", "metro", None]


def test_writes_need_the_token(api):
    body = {"name": "Kerb, north", "latitude": 60.17, "longitude": 24.94, "tags": ["street"]}
    assert api.put("/v1/sensors/s1", json=body).status_code == 401
    assert api.put("/v1/sensors/s1", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = api.put("/v1/sensors/s1", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["location"] == {"latitude": 60.17, "longitude": 24.94}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert api.put("/v1/sensors/s1", json={"latitude": 91}, headers=auth).status_code == 400
    assert api.put("/v1/sensors/s1", json={"owner": "x"}, headers=auth).status_code == 400
    assert api.put("/v1/sensors/s1", content=b"x" * 20000, headers=auth).status_code == 413


@pytest.mark.parametrize("url", ["/v1/sensors/a%20b/timeline", "/v1/summary?bucket=week",
                                 "/v1/summary?from=yesterday", "/v1/sensors/s1/timeline?from=5&to=4",
                                 "/v1/segments.csv?from=0&to=99999999999"])
def test_bad_parameters_are_one_line_400s(api, url):
    got = api.get(url)
    assert got.status_code == 400 and "\n" not in got.json()["error"]


def test_unknown_sensor_is_404_and_the_openapi_has_the_record_schema(api):
    assert api.get("/v1/sensors/nobody/timeline").status_code == 404
    assert "sensor_message" in api.get("/openapi.json").json()["components"]["schemas"]


def test_off_loopback_the_hub_refuses_to_start_without_a_token(tmp_path):
    from soundscene.cli import main

    code = main(["hub", "--mqtt", "127.0.0.1:1", "--host", "0.0.0.0", "--db", str(tmp_path / "h.db")])
    assert code == 2
    short = tmp_path / "token"
    short.write_text("short\n")
    assert main(["hub", "--mqtt", "127.0.0.1:1", "--host", "0.0.0.0", "--token-file", str(short)]) == 2


# --- alert rules ---------------------------------------------------------------------------------------------

def test_rule_mistakes_are_reported_one_line_each(tmp_path, capsys):
    from soundscene.cli import main

    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "a b"\nkind = "scene"\nlabels = []\n\n[[rule]]\nname = "x"\nkind = "level"\n'
                     'above = "loud"\nseconds = 5\nwebhook = "ftp://x"\n')
    assert main(["hub", "--mqtt", "127.0.0.1:1", "--rules", str(rules)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines), lines
    rules.write_text("a = " + "[" * 100000 + "]" * 100000)  # tomllib recurses: one line, not a traceback
    assert main(["hub", "--mqtt", "127.0.0.1:1", "--rules", str(rules)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: --rules {rules}: nested too deeply to be a "
                                                             "rules file"]


class Receiver:
    """A local HTTP server receiving webhook POSTs; the first ``fail`` requests get a 503."""

    def __init__(self, fail: int):
        import http.server
        import threading

        self.bodies, self.attempts, self.fail = [], 0, fail
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                outer.attempts += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.attempts <= outer.fail:
                    self.send_response(503)
                else:
                    outer.bodies.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *_args):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_scene_rule_fires_once_at_start_and_once_at_end_with_webhook_retries(tmp_path, broker, hub_factory,
                                                                                subscribers):
    from soundscene.apps.hub.alerts import AlertEngine, parse_rules

    receiver = Receiver(fail=2)
    rules = parse_rules({"defaults": {"backoff_seconds": 0.05}, "rule": [
        {"name": "metro-alarm", "kind": "scene", "labels": ["metro"], "min_seconds": 0.0, "webhook": receiver.url,
         "mqtt": True},
        {"name": "loud", "kind": "level", "above": -20.0, "seconds": 0.0}]})
    engine = db.open_database(str(tmp_path / "hub.db"))
    hub_factory(engine, broker.port, alerts=AlertEngine(rules))
    watcher = subscribers(broker.port, "alerts")  # soundscene/alerts/#
    pub = Publisher(broker.port)
    labels = ["park"] * 3 + ["metro"] * 5 + ["park"] * 3
    for seq, label in enumerate(labels, start=1):
        pub.send(topic("s1"), now_scene("s1", seq, label, level=-10.0 if seq == 2 else -30.0))
    wait_for(lambda: len(receiver.bodies) == 2, 20, "the start and end notifications")
    assert [b["phase"] for b in receiver.bodies] == ["start", "end"]
    assert receiver.attempts == 4  # two failures, then the start, then the end
    kept = rows(engine, "SELECT rule, sensor_id, ended IS NOT NULL, start_notified IS NOT NULL, "
                        "end_notified IS NOT NULL FROM alerts ORDER BY id")
    assert kept == [("loud", "s1", True, True, True), ("metro-alarm", "s1", True, True, True)]
    wait_for(lambda: len(watcher.on("metro-alarm")) == 2, 10, "the MQTT alert messages")
    pub.close()
    receiver.server.shutdown()


# --- hub simulate ----------------------------------------------------------------------------------------------

def test_simulated_sensors_replay_a_classifiers_probabilities_and_are_stored_once(tmp_path, broker, hub_factory,
                                                                                  tiny_run):
    from helpers import write_tone
    from soundscene.apps.hub.simulate import Fleet, tracks_from_model

    for k in range(2):
        write_tone(tmp_path / f"clip{k}.wav", sample_rate=8000, seconds=4.0, frequency=300 + 500 * k)
    tracks, classes, info = tracks_from_model(tiny_run.model_path, [tmp_path])
    assert len(tracks) == 2 and set(tracks[0][0]["probabilities"]) == set(classes)
    engine = db.open_database(str(tmp_path / "hub.db"))
    hub_factory(engine, broker.port)
    fleet = Fleet(("127.0.0.1", broker.port), 3, tracks, classes, info, hop=0.1, level_interval=0.5, prefix="sim")
    sent = fleet.run(seconds=1.5)
    decisions = sum(s.decisions for s in fleet.sensors)
    wait_for(lambda: count(engine, "SELECT SUM(received) FROM sensors") == sent - 6, 20, "every message stored")
    assert count(engine, "SELECT COUNT(*) FROM decisions") == decisions
    assert count(engine, "SELECT COUNT(*) FROM levels") == sent - 6 - decisions > 0
    # each sensor said offline at its clean close; that message may be stored just after the last data
    wait_for(lambda: rows(engine, "SELECT DISTINCT status, lost FROM sensors") == [("offline", 0)], 10,
             "every simulated sensor offline, none with a loss")
    assert set(r[0] for r in rows(engine, "SELECT DISTINCT label FROM decisions")) <= set(classes)


def test_the_hub_loads_neither_training_nor_torch():
    import subprocess
    import sys

    code = ("import sys, soundscene.apps.hub.service, soundscene.apps.hub.api, soundscene.apps.hub.alerts, "
            "soundscene.apps.hub.simulate\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning', 'sklearn') "
            "or m.startswith('soundscene.training')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_old_decisions_are_pruned_and_their_segments_stay(engine):
    from soundscene.apps.hub.writer import prune

    store(engine, *[scene("s1", seq, "park") for seq in range(1, 11)])
    assert prune(engine, keep_days=1, now=T0 + 2 * 86400) == 10
    assert count(engine, "SELECT COUNT(*) FROM decisions") == 0
    assert count(engine, "SELECT SUM(count) FROM segments") == 10
    # a message older than the retention is not stored again (it would build a segment twice)
    late = store_batch(engine, [parse(topic("s1"), encoded(scene("s1", 3, "park")))], keep_days=1, now=T0 + 2 * 86400)
    assert late.expired == 1 and late.stored == 0


def test_a_time_of_day_window_may_wrap_midnight():
    from soundscene.apps.hub.alerts import parse_rules

    rule = parse_rules({"rule": [{"name": "night", "kind": "scene", "labels": ["park"], "window": "22:00-06:00"}]}
                       ).rules[0]
    day = 1_780_012_800.0  # 2026-05-29T00:00Z
    assert [rule.in_window(day + h * 3600) for h in (0, 5, 6, 12, 21, 22, 23)] == [
        True, True, False, False, False, True, True]
    helsinki = parse_rules({"rule": [{"name": "night", "kind": "scene", "labels": ["park"], "window": "22:00-06:00",
                                      "timezone": "Europe/Helsinki"}]}).rules[0]  # UTC+3 in summer
    assert [helsinki.in_window(day + h * 3600) for h in (0, 2, 3, 19, 20)] == [True, True, False, True, True]
    with pytest.raises(SoundsceneError, match="IANA"):
        parse_rules({"rule": [{"name": "x", "kind": "scene", "labels": ["park"], "timezone": "Mars/Olympus"}]})


def test_an_offline_rule_opens_after_its_seconds_and_closes_when_the_sensor_returns(tmp_path, broker, hub_factory):
    from soundscene.apps.hub.alerts import AlertEngine, parse_rules

    rules = parse_rules({"rule": [{"name": "down", "kind": "offline", "seconds": 0.5}]})
    engine = db.open_database(str(tmp_path / "hub.db"))
    hub_factory(engine, broker.port, alerts=AlertEngine(rules))
    pub = Publisher(broker.port)
    pub.send(topic("s1", "status"), "online")
    pub.send(topic("s1", "status"), "offline")
    wait_for(lambda: rows(engine, "SELECT rule, ended IS NULL FROM alerts") == [("down", True)], 10, "the alert")
    pub.send(topic("s1", "status"), "online")
    wait_for(lambda: rows(engine, "SELECT rule, ended IS NULL, end_notified IS NOT NULL FROM alerts")
             == [("down", False, True)], 10, "the alert's end")
    pub.close()


@pytest.mark.filterwarnings("ignore:database unavailable")
def test_the_database_going_away_holds_messages_unacknowledged_until_it_returns(broker, hub_factory):
    server = Postgres().start()  # a server of its own: this test stops it
    try:
        engine = db.open_database(server.database())
        hub = hub_factory(engine, broker.port)
        pub = Publisher(broker.port)
        pub.send(topic("s1"), now_scene("s1", 1, "park"))
        wait_for(lambda: count(engine, "SELECT COUNT(*) FROM decisions") == 1, 10, "the first message")
        server._run(str(server.bin / "pg_ctl"), "-D", str(server.data), "-m", "fast", "stop")
        for seq in range(2, 6):
            pub.send(topic("s1"), now_scene("s1", seq, "metro"))
        wait_for(lambda: hub.ingest.waiting == 0 and hub.ingest.totals["stored"] == 1, 10, "the batch held")
        server.start_again()
        wait_for(lambda: count(engine, "SELECT COUNT(*) FROM decisions") == 5, 30, "everything stored")
        assert rows(engine, "SELECT lost, received, label FROM sensors") == [(0, 5, "metro")]
        pub.close()
        engine.dispose()
    finally:
        server.stop()


def test_the_site_plan_is_served_and_refused_when_not_an_image(tmp_path):
    from fastapi.testclient import TestClient

    from soundscene.apps.hub.api import create_app
    from soundscene.apps.hub.service import Hub, read_site_plan

    png = tmp_path / "plan.png"
    import matplotlib.image

    matplotlib.image.imsave(png, [[0.0, 1.0], [1.0, 0.0]])
    plan = read_site_plan(png)
    assert plan[1] == "image/png"
    (tmp_path / "plan.txt").write_text("not an image")
    with pytest.raises(SoundsceneError, match="not a PNG"):
        read_site_plan(tmp_path / "plan.txt")
    engine = db.open_database(str(tmp_path / "hub.db"))
    with TestClient(create_app(Hub(engine, broker=("127.0.0.1", 1), site_plan=plan))) as client:
        assert client.get("/v1/config").json()["site_plan"] is True
        got = client.get("/site-plan")
        assert got.content == png.read_bytes() and got.headers["content-type"] == "image/png"
        page = client.get("/")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/static/../db.py").status_code == 404
    engine.dispose()


# --- archives: a batch result on the dashboard -------------------------------------------------------------

def test_hub_import_loads_a_batch_result_once(tiny_run, tmp_path, capsys):
    """`soundscene hub import DIR`: the windows of files with a start time become their sensors' decisions (one
    boot per file, a seq per window), with segments and levels as live sensors have; twice stores once."""
    import numpy as np
    import soundfile as sf

    from soundscene.apps.batch import read_table, run_batch
    from soundscene.cli import main
    from soundscene.training.synth import synthesize_scene

    for name, scene_name in (("a.wav", "park"), ("b.wav", "street_traffic"), ("c.wav", "rain")):
        sf.write(str(tmp_path / name), synthesize_scene(scene_name, sample_rate=8000, seconds=12.0, seed=3), 8000)
    (tmp_path / "m.csv").write_text("path,sensor_id,start_time\n"
                                    "a.wav,archive-1,2026-03-01T23:59:55Z\n"
                                    "b.wav,archive-1,\n"  # consecutive: 00:00:07
                                    "c.wav,,\n")  # no start time: cannot be placed
    assert run_batch(tiny_run.model_path, [tmp_path / "m.csv"], tmp_path / "out", workers=1).failed == 0
    windows = read_table(tmp_path / "out", "windows").to_pylist()
    timed = [w for w in windows if w["end_time"] is not None]
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    assert main(["hub", "import", str(tmp_path / "out"), "--db", url]) == 0
    said = capsys.readouterr().out
    assert f"imported {len(timed)} windows (0 already there)" in said
    assert f"{len(windows) - len(timed)} windows without a start time" in said
    assert main(["hub", "import", str(tmp_path / "out"), "--db", url]) == 0
    assert f"imported 0 windows ({len(timed)} already there)" in capsys.readouterr().out
    engine = db.open_database(url)
    assert rows(engine, "SELECT COUNT(*), COUNT(DISTINCT boot) FROM decisions") == [(len(timed), 2)]
    assert rows(engine, "SELECT id, lost, level_reference FROM sensors") == [("archive-1", 0, "dBFS")]
    last = max(timed, key=lambda w: w["end_time"])
    assert rows(engine, "SELECT MAX(t) FROM decisions") == [(last["end_time"].timestamp(),)]
    levels = rows(engine, "SELECT level FROM decisions ORDER BY t")
    assert np.allclose([v for (v,) in levels], [w["LAeq"] for w in sorted(timed, key=lambda w: w["end_time"])])
    segments = rows(engine, 'SELECT MIN(start), MAX("end") FROM segments')
    assert segments[0][1] == pytest.approx(last["end_time"].timestamp())
    engine.dispose()
    (tmp_path / "empty").mkdir()  # no windows/: not "imported 0 windows" and exit 0
    assert main(["hub", "import", str(tmp_path / "empty"), "--db", url]) == 2
    assert "has no windows/ folder" in capsys.readouterr().err


# --- health records ----------------------------------------------------------------------------------------

def test_the_migrations_give_the_tables_the_hub_declares(engine):
    """The revision scripts (r0004: health) and db.metadata describe the same schema, on either database."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
        assert "health" in conn.dialect.get_table_names(conn)


def test_a_database_of_r0003_gets_the_health_table_keeping_its_data(db_url):
    engine = db.make_engine(db_url)
    db.upgrade(engine, "r0003")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO sensors (id, status) VALUES ('old', 'online')"))
    engine.dispose()
    engine = db.open_database(db_url)
    assert db.current_revision(engine) == "r0004" == db.head_revision()
    assert rows(engine, "SELECT id FROM sensors") == [("old",)]
    assert store(engine, health_message("old", 1, t=T0), kind="health").stored == 1
    engine.dispose()


def test_the_hub_subscribes_to_health():
    from soundscene.apps.hub.messages import subscriptions

    assert "soundscene/+/health" in subscriptions()
    assert "$share/hubs/soundscene/+/health" in subscriptions("hubs")


def test_a_health_message_is_parsed_with_its_record():
    from soundscene.apps.hub.messages import HealthMessage

    sent = health_message("s1", 7, t=T0, boot="c" * 32)
    got = parse(topic("s1", "health"), encoded(sent))
    assert got == HealthMessage("s1", "c" * 32, 7, T0, sent)
    del sent["boot"]
    assert parse(topic("s1", "health"), encoded(sent)).boot == ""


BAD_HEALTH = [
    ({"cpu_percent": "high"}, "health schema: cpu_percent"),
    ({"clipping_fraction": 2.0}, "health schema: clipping_fraction"),
    ({"extra": 1}, "health schema: message"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"timestamp": "2026-05-28T20:26:40"}, "time zone"),
    ({"seq": 0}, "seq must be at least 1"),
    ({"seq": "one"}, "health schema: seq"),
    ({"boot": "../x"}, "boot"),
    ({"sensor_id": "s2"}, "does not match"),
]


@pytest.mark.parametrize("change, reason", BAD_HEALTH, ids=[b[1] for b in BAD_HEALTH])
def test_a_bad_health_message_is_refused_with_one_line(change, reason):
    payload = {**health_message("s1", 1, t=T0), **change}
    with pytest.raises(BadMessage, match=reason) as caught:
        parse(topic("s1", "health"), encoded(payload))
    assert "\n" not in str(caught.value)


def test_a_health_message_failing_the_schema_is_an_ingest_error(engine):
    missing = health_message("s1", 1, t=T0)
    del missing["memory_mb"]
    result = store(engine, {**health_message("s1", 2, t=T0), "cpu_percent": -1}, missing, kind="health")
    assert result.errors == 2 and result.stored == 0
    kept = rows(engine, "SELECT topic, reason FROM ingest_errors ORDER BY id")
    assert [t for t, _ in kept] == [topic("s1", "health")] * 2
    assert [r.split(":")[0] for _, r in kept] == ["health schema", "health schema"]
    assert "cpu_percent" in kept[0][1] and "memory_mb" in kept[1][1]
    assert all("\n" not in r for _, r in kept)
    assert count(engine, "SELECT COUNT(*) FROM health") == 0
    assert rows(engine, "SELECT id FROM sensors") == []  # a refused message makes no sensor


def test_scene_levels_and_health_share_one_numbering_and_the_api_serves_the_health(engine, api):
    store(engine, scene("h1", 1, "park", t=T0 + 1))
    store(engine, levels_message("h1", 2, -40.0, start=T0 - 8), kind="levels")
    first = health_message("h1", 3, t=T0 + 3, cpu_percent=10.0)
    assert store(engine, first, kind="health").stored == 1
    store(engine, scene("h1", 4, "park", t=T0 + 4))
    latest = health_message("h1", 5, t=T0 + 60, cpu_percent=20.0, dead_input=True)
    result = store(engine, latest, kind="health")
    assert [(e.kind, e.data["seq"], e.data["record"]) for e in result.events] == [("health", 5, latest)]
    assert rows(engine, "SELECT lost, received FROM sensors WHERE id = 'h1'") == [(0, 5)]
    assert rows(engine, "SELECT min_seq, max_seq, received FROM boots WHERE sensor_id = 'h1'") == [(1, 5, 5)]

    one = api.get("/v1/sensors/h1").json()
    assert one["health"] == latest and (one["lost"], one["received"]) == (0, 5)
    assert one["last_seen"] == "2026-05-28T20:27:40.000Z"  # the health record's time, the newest heard
    fleet = {s["id"]: s for s in api.get("/v1/sensors").json()}
    assert set(one) - set(fleet["h1"]) == {"health"}, "the fleet's shape is as it was"
    assert api.get("/v1/sensors/s1").json()["health"] is None

    day = {"from": T0, "to": T0 + 86400}
    listed = api.get("/v1/sensors/h1/health", params=day).json()
    assert listed["records"] == [first, latest] and listed["truncated"] is False  # newest last
    assert listed["from"] == "2026-05-28T20:26:40.000Z"
    newest = api.get("/v1/sensors/h1/health", params={**day, "limit": 1}).json()
    assert newest["records"] == [latest] and newest["truncated"] is True
    later = api.get("/v1/sensors/h1/health", params={"from": T0 + 10, "to": T0 + 86400}).json()
    assert later["records"] == [latest]
    assert api.get("/v1/sensors/nobody/health").status_code == 404
    for bad in ({"limit": 0}, {"limit": "many"}, {"limit": 2001}, {"from": 5, "to": 4}):
        got = api.get("/v1/sensors/h1/health", params=bad)
        assert got.status_code == 400 and "\n" not in got.json()["error"]


def test_a_replayed_health_message_is_stored_once(engine):
    messages = [health_message("h1", seq, t=T0 + 60 * seq) for seq in (1, 2, 3)]
    assert store(engine, *messages, kind="health").stored == 3
    again = store(engine, *messages[1:], kind="health")  # the retained health again, a replay after a reconnect
    assert (again.stored, again.duplicates, again.events) == (0, 2, [])
    assert count(engine, "SELECT COUNT(*) FROM health") == 3
    assert rows(engine, "SELECT lost, received FROM sensors") == [(0, 3)]


def test_old_health_records_are_pruned(engine):
    from soundscene.apps.hub.writer import prune

    old, recent = health_message("h1", 1, t=T0), health_message("h1", 2, t=T0 + 2 * 86400 - 100)
    store(engine, old, recent, kind="health", now=T0 + 2 * 86400)
    assert prune(engine, keep_days=1, now=T0 + 2 * 86400) == 1
    assert rows(engine, "SELECT seq FROM health") == [(2,)]
    late = store_batch(engine, [parse(topic("h1", "health"), encoded(old))], keep_days=1, now=T0 + 2 * 86400)
    assert late.expired == 1 and late.stored == 0


def test_a_sensors_health_through_the_broker_counts_no_lost_message(tmp_path, broker, hub_factory):
    """A SensorPublisher's scene, levels and health messages, numbered by one counter, all reach the hub."""
    from soundscene.apps.mqtt import SensorPublisher

    engine = db.open_database(str(tmp_path / "hub.db"))
    hub = hub_factory(engine, broker.port)
    with SensorPublisher("127.0.0.1", broker.port, "kerb", window_seconds=1, hop_seconds=1) as pub:
        pub.publish({"time": 1.0, "label": "park", "confidence": 0.9, "probabilities": {"park": 0.9}})
        pub.publish_levels(full_levels(-40.0), 1.0)
        pub.publish_health(health_fields())
        pub.publish({"time": 2.0, "label": "park", "confidence": 0.9, "probabilities": {"park": 0.9}})
        assert pub.flush(10)
    wait_for(lambda: count(engine, "SELECT received FROM sensors") == 4, 20, "4 messages stored")
    assert rows(engine, "SELECT lost FROM sensors") == [(0,)]
    assert rows(engine, "SELECT seq FROM health") == [(3,)]
    hub.stop()
    hub2 = hub_factory(engine, broker.port)  # a new subscription: the retained scene and health come again
    wait_for(lambda: hub2.ingest.totals["duplicates"] == 2, 20, "the retained scene and health, again")
    assert rows(engine, "SELECT lost, received FROM sensors") == [(0, 4)]


# --- migrations through Alembic's command API, once for hubs starting together -----------------------------

def _open_when_all_are_ready(barrier, url: str, results) -> None:
    """One hub process's start: wait for the others, open the database, report "ok" or the one-line error."""
    barrier.wait(timeout=60)
    try:
        db.open_database(url).dispose()
    except SoundsceneError as exc:
        results.put(str(exc))
        return
    results.put("ok")


def test_three_hubs_starting_together_on_one_postgresql_migrate_it_once(postgres):
    """Three hub processes released together by a barrier open a fresh database: the advisory lock lets one
    migrate while the others wait, then find the schema at head; the lock is released afterwards."""
    import multiprocessing

    url = postgres.database()
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(3), spawn.Queue()
    hubs = [spawn.Process(target=_open_when_all_are_ready, args=(barrier, url, results)) for _ in range(3)]
    for hub in hubs:
        hub.start()
    outcomes = sorted(results.get(timeout=120) for _ in hubs)
    for hub in hubs:
        hub.join(timeout=60)
    assert outcomes == ["ok"] * 3 and [hub.exitcode for hub in hubs] == [0] * 3
    engine = db.make_engine(url)
    assert rows(engine, "SELECT version_num FROM alembic_version") == [(db.head_revision(),)]
    assert rows(engine, "SELECT COUNT(*), COUNT(DISTINCT tablename) FROM pg_tables WHERE schemaname = 'public' "
                        "AND tablename <> 'alembic_version'") == [(len(db.metadata.tables),) * 2]
    assert rows(engine, f"SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' "
                        f"AND objid = {db.MIGRATION_LOCK}") == [(0,)]
    engine.dispose()


def test_the_migrations_run_through_alembics_command_api_with_the_packaged_env(db_url):
    """The env.py in the package's migrations folder is what Alembic runs; it migrates step by step."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db._config())
    assert script.env_py_location == str(db.MIGRATIONS / "env.py")
    engine = db.make_engine(db_url)
    db.upgrade(engine, "r0002")
    assert db.current_revision(engine) == "r0002"
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()
    engine.dispose()


# --- every HTTP error is one JSON line (issue 23, item 10) ------------------------------------------------------

def one_line_error(got, status: int) -> str:
    """The error of a response: ``status``, JSON, one object ``{"error": "<one line>"}``."""
    assert got.status_code == status, (got.status_code, got.text[:300])
    assert got.headers["content-type"].startswith("application/json"), got.headers["content-type"]
    body = got.json()
    assert list(body) == ["error"] and isinstance(body["error"], str)
    assert body["error"] and "\n" not in body["error"] and len(body["error"]) <= 300
    return body["error"]


@pytest.mark.parametrize("tz, said", [("Europe", "tz: unknown time zone 'Europe'"),
                                      ("Mars/Olympus", "tz: unknown time zone 'Mars/Olympus'"),
                                      ("x" * 3000, "tz: too long for a time zone"),
                                      ("../../etc/passwd", "tz: unknown time zone"),
                                      ("A\x00B", "tz: unknown time zone")])
def test_a_bad_time_zone_is_a_400_naming_tz_alone(api, tz, said):
    assert one_line_error(api.get("/v1/sensors/s1/day-levels", params={"tz": tz}), 400).startswith(said)


def test_day_levels_echo_the_time_zone_they_used(api):
    got = api.get("/v1/sensors/s1/day-levels", params={"tz": "Europe/Helsinki", "from": T0, "to": T0 + 86400})
    assert got.status_code == 200 and got.json()["tz"] == "Europe/Helsinki"
    assert api.get("/v1/sensors/s1/day-levels", params={"from": T0, "to": T0 + 86400}).json()["tz"] == "UTC"
    assert one_line_error(api.get("/v1/sensors/s1/day-levels", params={"evening": 3}), 400).startswith(
        "day, evening, night: ")


@pytest.mark.parametrize("query", ["from=0001-01-01T00:00:00%2B14:00", "to=9999-12-31T23:59:59-14:00",
                                   "from=0001-01-01T00:00:00-14:00&to=0001-01-02T00:00:00%2B14:00",
                                   "from=1969-12-31T00:00:00Z&to=1970-01-01T12:00:00Z"])
def test_times_beyond_what_the_hub_shows_are_one_line_400s(api, query):
    assert "out of range" in one_line_error(api.get(f"/v1/sensors/s1/timeline?{query}"), 400)


def test_fastapis_own_refusals_take_the_error_shape(api):
    assert one_line_error(api.get("/v1/nothing-here"), 404) == "Not Found"
    assert one_line_error(api.delete("/v1/sensors"), 405) == "Method Not Allowed"
    assert one_line_error(api.get("/v1/sensors/s1/day-levels", params={"day": "seven"}), 422).startswith("day: ")
    assert one_line_error(api.get("/v1/sensors/nobody/timeline"), 404) == "no sensor 'nobody'"


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}"])
def test_a_deeply_nested_put_body_is_a_one_line_400(api, body):
    got = api.put("/v1/sensors/s1", content=body, headers={"Authorization": f"Bearer {TOKEN}",
                                                            "Content-Type": "application/json"})
    assert one_line_error(got, 400) == "the body's JSON is nested too deeply"
    assert api.get("/v1/sensors/s1").json()["name"] == "s1"


def test_an_unexpected_exception_is_a_json_500_logged_once(api, monkeypatch, caplog):
    def broken():
        raise RuntimeError("a bug\nover two lines")
    monkeypatch.setattr(api.app.state.hub, "health", broken)
    with caplog.at_level("ERROR", logger="soundscene.hub"):
        assert one_line_error(api.get("/healthz"), 500) == "internal error"
    logged = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(logged) == 1 and logged[0].exc_info[0] is RuntimeError
    assert api.get("/v1/config").status_code == 200


def test_csv_booleans_are_true_and_false(api):
    lines = api.get("/v1/segments.csv", params={"from": T0, "to": T0 + 86400}).text.splitlines()
    assert [line.rsplit(",", 1)[1] for line in lines[1:]] == ["false", "false", "true"]


@pytest.mark.filterwarnings("ignore:database unavailable")
def test_the_api_answers_503_in_json_while_the_database_is_down():
    from fastapi.testclient import TestClient

    from soundscene.apps.hub.api import create_app
    from soundscene.apps.hub.service import Hub

    server = Postgres().start()  # a server of its own: this test stops it
    try:
        engine = db.open_database(server.database())
        store(engine, scene("s1", 1, "park"))
        with TestClient(create_app(Hub(engine, broker=("127.0.0.1", 1)))) as client:
            assert [s["id"] for s in client.get("/v1/sensors").json()] == ["s1"]
            server._run(str(server.bin / "pg_ctl"), "-D", str(server.data), "-m", "fast", "stop")
            for url in ("/v1/sensors", "/v1/sensors/s1", "/v1/sensors/s1/timeline", "/v1/alerts"):
                assert one_line_error(client.get(url), 503) == "the database is unavailable; try again later"
            assert client.get("/healthz").status_code == 503
            server.start_again()
            got = wait_for(lambda: (lambda r: r if r.status_code == 200 else None)(client.get("/v1/sensors")),
                           30, "the fleet again")
            assert [s["id"] for s in got.json()] == ["s1"]
        engine.dispose()
    finally:
        server.stop()


def test_rule_mistakes_suggest_the_key_and_the_label_and_name_the_clock(engine):
    """A misspelt key gets a suggestion; a window's message names the rule's own clock; a label no sensor of
    this hub knows is refused (with a suggestion) once sensors have reported their classes."""
    from soundscene.apps.hub.alerts import RulesError, check_labels, known_labels, parse_rules

    with pytest.raises(RulesError) as caught:
        parse_rules({"rule": [{"name": "a", "kind": "scene", "labels": ["park"], "min_second": 5,
                               "window": "25:00-06:00", "timezone": "Europe/Helsinki"}]})
    said = "\n".join(caught.value.mistakes)
    assert "has no 'min_second' (did you mean 'min_seconds'?)" in said
    assert "window must be HH:MM-HH:MM on the rule's timezone clock (Europe/Helsinki)" in said
    rules = parse_rules({"rule": [{"name": "night", "kind": "scene", "labels": ["stret_traffic"]}]})
    assert known_labels(engine) == set()
    check_labels(rules, known_labels(engine))  # a new hub knows no classes yet: nothing to hold them against
    with engine.begin() as conn:
        conn.execute(db.sensors.insert().values(id="s9", classes=["park", "street_traffic"], received=0, lost=0,
                                                status="offline"))
    with pytest.raises(RulesError, match=r"no sensor knows the scene 'stret_traffic' \(did you mean "
                                         r"'street_traffic'\?\)"):
        check_labels(rules, known_labels(engine))
