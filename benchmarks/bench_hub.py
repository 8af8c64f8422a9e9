"""The soundscape hub at scale: ingest from a simulated fleet, storage per sensor-day, query times.

    python benchmarks/bench_hub.py [--sensors 1000] [--hop 5] [--seconds 150] [--query-sensors 100]
                                   [--query-days 7] [--skip ingest shared queries] [--quick]

Everything is real: Mosquitto (Debian's), the hub as its own process (``soundscene hub``), SQLite and a
PostgreSQL server started here from Debian's package.  Figures, each beside its reference:

* ingest, per database: N simulated sensors (``hub simulate``'s Fleet: real MQTT messages, a scene decision
  every hop and a levels message every 60 s per sensor) for the given time: messages published and stored
  (target: every one, exactly once), publish-to-stored lag p50/p99 (target p99 < 2 s), the hub's CPU
  (cores) and peak memory, and database bytes per sensor-day (raw decisions, levels, segments and indexes);
* shared: the same fleet into two hub processes sharing the subscription (MQTT 5 ``$share/``) on one
  PostgreSQL: each message stored exactly once;
* queries, per database, with ``--query-days`` of decisions (one per 5 s) for ``--query-sensors`` sensors:
  one sensor-day timeline (target < 100 ms), the fleet summary over the whole range by hour (target < 1 s),
  and the page's first load (the page, its files, the fleet, the alerts; in process).

The simulator runs in this process beside the hub on the same machine: on 2 cores the figures include
that competition.  ``--quick`` is a smoke run (50 sensors, 20 s, 10 sensors x 1 day): it proves the script
works; its figures are not the targets' figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' throwaway PostgreSQL server and free ports

from hub_support import Postgres  # noqa: E402
from helpers import free_port, wait_for  # noqa: E402


# ---- the parts ---------------------------------------------------------------------------------------------

class Mosquitto:
    def __init__(self, folder: Path):
        self.port = free_port()
        config = folder / "mosquitto.conf"
        config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                          "max_queued_messages 1000000\nmax_inflight_messages 1000\nlog_dest none\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(config)])
        import socket

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_for(up, 10, "mosquitto")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class HubProc:
    def __init__(self, folder: Path, mqtt_port: int, db: str, *extra: str):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(folder / f"hub-{self.port}.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "soundscene.cli", "hub", "--mqtt",
                                      f"127.0.0.1:{mqtt_port}", "--db", db, "--port", str(self.port), *extra],
                                     stdout=log, stderr=log)

        def up():
            try:
                return httpx.get(self.url + "/healthz", timeout=1).json()["mqtt"] == "connected"
            except (httpx.HTTPError, ValueError, KeyError):
                return False
        wait_for(up, 60, "the hub")
        self.cpu0, self.t0 = self.cpu(), time.monotonic()

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cores(self) -> float:
        return (self.cpu() - self.cpu0) / (time.monotonic() - self.t0)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def db_bytes(url: str) -> int:
    """The database's size: the SQLite file after a WAL checkpoint, or pg_database_size."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            size = conn.execute(text("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"))
        else:
            size = conn.execute(text("SELECT pg_database_size(current_database())"))
        size = int(size.scalar())
    engine.dispose()
    return size


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# ---- ingest --------------------------------------------------------------------------------------------------

def ingest(name: str, url: str, args, folder: Path, hubs: int = 1) -> dict:
    import numpy as np
    from sqlalchemy import create_engine, text

    from soundscene.apps.hub.simulate import DEFAULT_CLASSES, Fleet, scene_walk

    broker = Mosquitto(folder)
    extra = ["--share", "bench"] if hubs > 1 else []
    procs = [HubProc(folder, broker.port, url, "--client-id", f"bench-hub-{k}", *extra) for k in range(hubs)]
    empty = db_bytes(url)
    tracks = scene_walk(DEFAULT_CLASSES, 64, np.random.default_rng(0))
    fleet = Fleet(("127.0.0.1", broker.port), args.sensors, tracks, DEFAULT_CLASSES,
                  {"name": "scene-walk", "version": "bench"}, hop=args.hop, level_interval=60.0, prefix=name)
    t0 = time.monotonic()
    sent = fleet.run(seconds=args.seconds)
    publish_seconds = time.monotonic() - t0
    expected = sent - 2 * args.sensors  # every message but the online and offline statuses
    engine = create_engine(url)

    def stored():
        with engine.connect() as conn:
            return conn.execute(text("SELECT COALESCE(SUM(received), 0) FROM sensors")).scalar()
    try:
        wait_for(lambda: stored() >= expected, 600, f"{expected} messages stored")
    except AssertionError:
        pass  # reported below as missing
    cores = [p.cores() for p in procs]
    peaks = [p.peak_mb() for p in procs]
    with engine.connect() as conn:
        decisions, unique = conn.execute(text(
            "SELECT COUNT(*), COUNT(DISTINCT sensor_id || ':' || boot || ':' || seq) FROM decisions")).one()
        levels_rows = conn.execute(text("SELECT COUNT(*) FROM levels")).scalar()
        lost = int(conn.execute(text("SELECT SUM(lost) FROM sensors")).scalar() or 0)
        lags = [r[0] for r in conn.execute(text("SELECT stored - t FROM decisions"))]
    engine.dispose()
    for p in procs:
        p.stop()
    broker.stop()
    # the growth, per sensor-day of data at this hop (decisions stored x hop = seconds of sensor time)
    sensor_days = decisions * args.hop / 86400
    size = db_bytes(url) - empty
    return {"database": name, "hubs": hubs, "sensors": args.sensors, "seconds": round(publish_seconds, 1),
            "published": expected, "stored": decisions + levels_rows, "duplicates": decisions - unique,
            "lost": lost, "rate_per_s": round(expected / publish_seconds, 1),
            "lag_p50_s": round(statistics.median(lags), 3) if lags else None,
            "lag_p99_s": round(percentile(lags, 0.99), 3), "hub_cores": [round(c, 2) for c in cores],
            "hub_peak_mb": [round(m) for m in peaks],
            "db_bytes_per_sensor_day": round(size / sensor_days) if sensor_days else None}


# ---- queries --------------------------------------------------------------------------------------------------

def fill(engine, sensors: int, days: float, hop: float = 5.0, seed: int = 0) -> int:
    """``days`` of decisions (one per hop) and their segments for ``sensors`` sensors, written in bulk with the
    hub's tables (the segments as the ingest would make them: runs of one scene, cut at a change)."""
    import numpy as np
    from sqlalchemy import insert

    from soundscene.apps.hub.db import decisions, segments, sensors as sensor_table

    rng = np.random.default_rng(seed)
    classes = ["street_traffic", "park", "metro", "shopping_mall", "public_square"]
    end = time.time()
    start = end - days * 86400
    n = int(days * 86400 / hop)
    total = 0
    for k in range(sensors):
        sid = f"q-{k + 1}"
        run_lengths = rng.integers(30, 400, size=n // 30 + 2)
        labels = np.repeat(rng.integers(0, len(classes), size=len(run_lengths)), run_lengths)[:n]
        t = start + hop * np.arange(1, n + 1)
        conf = rng.uniform(0.4, 0.95, size=n)
        level = rng.normal(-30, 5, size=n)
        with engine.begin() as conn:
            conn.execute(insert(sensor_table).values(id=sid, status="online", lost=0, received=n, first_seen=start,
                                                     last_seen=end, latitude=60.17 + k * 1e-3, longitude=24.94,
                                                     label=classes[labels[-1]], scene_t=float(t[-1])))
            for a in range(0, n, 20000):
                conn.execute(insert(decisions), [
                    {"sensor_id": sid, "boot": "bench", "seq": i + 1, "t": float(t[i]), "stored": float(t[i]),
                     "hop": hop, "label": classes[labels[i]], "confidence": float(conf[i]),
                     "level": round(float(level[i]), 1), "silent": False, "probabilities": None}
                    for i in range(a, min(n, a + 20000))])
            cuts = np.flatnonzero(np.diff(labels)) + 1
            bounds = np.concatenate([[0], cuts, [n]])
            conn.execute(insert(segments), [
                {"sensor_id": sid, "boot": "bench", "start": float(t[i] - hop), "end": float(t[j - 1]),
                 "label": classes[labels[i]], "confidence_sum": float(conf[i:j].sum()), "count": int(j - i),
                 "first_seq": int(i + 1), "last_seq": int(j)} for i, j in zip(bounds[:-1], bounds[1:])])
        total += n
    return total


def queries(name: str, url: str, args) -> dict:
    from fastapi.testclient import TestClient

    from soundscene.apps.hub import store
    from soundscene.apps.hub.api import create_app
    from soundscene.apps.hub.db import open_database
    from soundscene.apps.hub.service import Hub

    engine = open_database(url)
    t = time.perf_counter()
    rows = fill(engine, args.query_sensors, args.query_days)
    fill_s = time.perf_counter() - t
    if engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    now = time.time()

    def timed(fn, repeats=5):
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)
    day = timed(lambda: store.timeline(engine, "q-1", now - 86400 * 1.5, now - 86400 * 0.5))
    summary = timed(lambda: store.summary(engine, now - args.query_days * 86400, now, bucket="hour"), repeats=3)
    hub = Hub(engine, broker=("127.0.0.1", 1))
    with TestClient(create_app(hub)) as client:
        def first_load():
            for path in ("/", "/static/hub.js", "/static/hub.css", "/v1/config", "/v1/sensors", "/v1/alerts"):
                assert client.get(path).status_code == 200
        page = timed(first_load)
    engine.dispose()
    return {"database": name, "sensors": args.query_sensors, "days": args.query_days, "decisions": rows,
            "fill_s": round(fill_s, 1), "sensor_day_timeline_ms": round(day * 1000, 1),
            "fleet_summary_ms": round(summary * 1000, 1), "page_first_load_ms": round(page * 1000, 1)}


# ---- the run -------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--hop", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--query-sensors", type=int, default=100)
    parser.add_argument("--query-days", type=float, default=7.0)
    parser.add_argument("--skip", nargs="*", default=[], choices=["ingest", "shared", "queries"])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 50 sensors for 20 s, 10 x 1 day")
    args = parser.parse_args()
    if args.quick:
        args.sensors, args.hop, args.seconds, args.query_sensors, args.query_days = 50, 1.0, 20.0, 10, 1.0
    folder = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    pg = Postgres().start()
    try:
        if "ingest" not in args.skip:
            for name, url in (("sqlite", f"sqlite:///{folder / 'ingest.db'}"), ("postgresql", pg.database())):
                r = ingest(name, url, args, folder)
                print(json.dumps(r))
                print(f"  {name}: {r['stored']} of {r['published']} messages stored, {r['duplicates']} twice "
                      f"(target: all, none twice); lag p50 {r['lag_p50_s']} s, p99 {r['lag_p99_s']} s (target p99 "
                      f"< 2 s); hub {r['hub_cores'][0]} cores, {r['hub_peak_mb'][0]} MB peak; "
                      f"{r['db_bytes_per_sensor_day'] / 1e6:.2f} MB per sensor-day at one decision per {args.hop:g} s",
                      flush=True)
        if "shared" not in args.skip:
            r = ingest("pg2", pg.database(), args, folder, hubs=2)
            print(json.dumps(r))
            print(f"  two hubs, one PostgreSQL: {r['stored']} of {r['published']} stored, {r['duplicates']} twice "
                  f"(target: all, none twice); lag p99 {r['lag_p99_s']} s", flush=True)
        if "queries" not in args.skip:
            for name, url in (("sqlite", f"sqlite:///{folder / 'query.db'}"), ("postgresql", pg.database())):
                r = queries(name, url, args)
                print(json.dumps(r))
                print(f"  {name}, {r['sensors']} sensors x {r['days']:g} days: sensor-day timeline "
                      f"{r['sensor_day_timeline_ms']} ms (target < 100 ms), fleet summary {r['fleet_summary_ms']} ms "
                      f"(target < 1000 ms), page first load {r['page_first_load_ms']} ms", flush=True)
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
