"""The hub's database: SQLAlchemy 2 tables, the engine, and the schema migrations applied at start.

Times are stored as seconds since 1970 UTC (double precision): portable between SQLite and PostgreSQL,
cheap to compare and to bucket.  The tables:

* ``sensors``: one row per sensor id: name, location (latitude/longitude or x/y on the site plan), tags,
  the model it runs, first/last seen, status (online/offline from its status topic and last will), its
  current scene, confidence and level, and ``lost``: messages missing from its ``seq`` numbering.
* ``boots``: one row per (sensor, boot): the lowest and highest ``seq`` seen and how many messages were
  stored; ``lost`` of a boot is ``max_seq - min_seq + 1 - received``.
* ``decisions``: every scene decision, unique per (sensor, boot, seq); kept ``keep_days`` days.
* ``segments``: runs of one scene per sensor and boot, built as decisions arrive (see :mod:`.segments`).
* ``levels``: the sensors' level messages (LAeq and the full ``levels`` object), unique per (sensor, boot, seq).
* ``health``: the sensors' health records (the whole record as JSON), unique per (sensor, boot, seq): they
  share the sensor's numbering with decisions and level messages.
* ``alerts``: each alert from start to end, with when its start and end were notified.
* ``ingest_errors``: what could not be stored: topic, first 512 bytes, reason, time.

The schema is versioned by Alembic; :func:`open_database` upgrades an older database to the newest revision
and refuses, in one line, a database written by a newer soundscene.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import (JSON, BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, LargeBinary,
                        MetaData, String, Table, Text, UniqueConstraint, create_engine, event, text)
from sqlalchemy.engine import Engine

from ...errors import SoundsceneError

ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only
SENSOR_ID = String(200)
BOOT = String(64)

metadata = MetaData()

sensors = Table(
    "sensors", metadata,
    Column("id", SENSOR_ID, primary_key=True),
    Column("name", String(200)),
    Column("latitude", Float), Column("longitude", Float),
    Column("x", Float), Column("y", Float),
    Column("tags", JSON),
    Column("model_name", String(200)), Column("model_version", String(200)),
    Column("classes", JSON),
    Column("first_seen", Float), Column("last_seen", Float),
    Column("status", String(16), nullable=False, server_default="unknown"),
    Column("status_since", Float),
    Column("label", String(200)), Column("confidence", Float), Column("level", Float),
    Column("level_reference", String(16)),  # "dB SPL" or "dBFS": what level is relative to
    Column("silent", Boolean),
    Column("lost", BigInteger, nullable=False, server_default="0"),
    Column("received", BigInteger, nullable=False, server_default="0"),
    Column("scene_t", Float),  # the time of the decision that label/confidence/level come from
)

boots = Table(
    "boots", metadata,
    Column("sensor_id", SENSOR_ID, ForeignKey("sensors.id", ondelete="CASCADE"), primary_key=True),
    Column("boot", BOOT, primary_key=True),
    Column("min_seq", BigInteger, nullable=False),
    Column("max_seq", BigInteger, nullable=False),
    Column("received", BigInteger, nullable=False),
    Column("first_seen", Float, nullable=False),
)

decisions = Table(
    "decisions", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("sensor_id", SENSOR_ID, nullable=False),
    Column("boot", BOOT, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("t", Float, nullable=False),
    Column("stored", Float, nullable=False),
    Column("hop", Float),
    Column("label", String(200)),
    Column("confidence", Float),
    Column("level", Float),
    Column("level_reference", String(16)),  # "dB SPL" or "dBFS"
    Column("silent", Boolean, nullable=False),
    Column("probabilities", JSON),
    UniqueConstraint("sensor_id", "boot", "seq", name="uq_decisions_message"),
    Index("ix_decisions_sensor_t", "sensor_id", "t"),
    Index("ix_decisions_t", "t"),
)

segments = Table(
    "segments", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("sensor_id", SENSOR_ID, nullable=False),
    Column("boot", BOOT, nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    Column("label", String(200)),
    Column("confidence_sum", Float, nullable=False),
    Column("count", Integer, nullable=False),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Index("ix_segments_sensor_boot_seq", "sensor_id", "boot", "first_seq"),
    Index("ix_segments_sensor_end", "sensor_id", "end"),
    Index("ix_segments_end", "end"),
)

levels = Table(
    "levels", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("sensor_id", SENSOR_ID, nullable=False),
    Column("boot", BOOT, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    Column("stored", Float, nullable=False),
    Column("laeq", Float),
    Column("levels", JSON),
    UniqueConstraint("sensor_id", "boot", "seq", name="uq_levels_message"),
    Index("ix_levels_sensor_end", "sensor_id", "end"),
)

health = Table(
    "health", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("sensor_id", SENSOR_ID, nullable=False),
    Column("boot", BOOT, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("t", Float, nullable=False),  # the record's timestamp
    Column("stored", Float, nullable=False),
    Column("record", JSON, nullable=False),
    UniqueConstraint("sensor_id", "boot", "seq", name="uq_health_message"),
    Index("ix_health_sensor_t", "sensor_id", "t"),
)

alerts = Table(
    "alerts", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("rule", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("sensor_id", SENSOR_ID, nullable=False),
    Column("started", Float, nullable=False),
    Column("ended", Float),
    Column("detail", JSON),
    Column("start_notified", Float),
    Column("end_notified", Float),
    Index("ix_alerts_started", "started"),
    Index("ix_alerts_open", "rule", "sensor_id", "ended"),
)

ingest_errors = Table(
    "ingest_errors", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("topic", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_ingest_errors_time", "time"),
)


MIGRATIONS = Path(__file__).with_name("migrations")


def database_url(db: str | Path | None) -> str:
    """A SQLAlchemy URL from ``--db``: a URL as given, a plain path as a SQLite file (default ``hub.db``)."""
    text = str(db) if db is not None else "hub.db"
    if "://" in text:
        if not text.startswith(("sqlite", "postgresql")):
            raise SoundsceneError(f"--db {text.split('://')[0]}://...: use a SQLite file or "
                                  "postgresql+psycopg://USER@HOST/NAME")
        return text
    return f"sqlite:///{Path(text).expanduser()}"


def make_engine(url: str) -> Engine:
    """The engine for ``url``: SQLite in WAL mode with a busy timeout and foreign keys; PostgreSQL as is."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001 (SQLAlchemy's hook)
            dbapi_connection.create_function("floor", 1, math.floor, deterministic=True)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


MIGRATION_LOCK = 0x53_53_48_42  # "SSHB": the PostgreSQL advisory lock key the migrating hub holds
_ALEMBIC = threading.Lock()  # alembic.context and alembic.op are process-wide proxies: one command at a time


def _config(connection=None):
    """Alembic's configuration, built here: the package's ``migrations`` folder and, for ``env.py``, the
    connection to migrate and the declared tables."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    config.attributes["target_metadata"] = metadata
    return config


def _script():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


@contextmanager
def _migration_lock(connection):
    """Hold, on PostgreSQL, the session advisory lock ``MIGRATION_LOCK`` on ``connection``, so that hubs
    starting together migrate one after the other (the later ones find the schema current). SQLite's own
    database lock serialises its writers."""
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
    connection.commit()
    try:
        yield
    finally:
        if not connection.invalidated:  # a lost connection has lost its session's locks with it
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (default: the newest); refuse one from a newer soundscene.

    Runs ``alembic.command.upgrade`` with the revision scripts in ``migrations/versions`` (package data) and
    ``migrations/env.py``, on one connection, in one transaction, under :func:`_migration_lock`.
    """
    from alembic import command

    known = {s.revision for s in _script().walk_revisions()}
    with engine.connect() as connection, _migration_lock(connection), connection.begin():
        current = _current(connection)
        if current is not None and current not in known:
            raise SoundsceneError(f"the database {engine.url.render_as_string(hide_password=True)} has schema "
                                  f"revision {current!r}, written by a newer soundscene: upgrade soundscene "
                                  "to use it")
        with _ALEMBIC:
            command.upgrade(_config(connection), revision)


def _current(connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision (None for an empty database)."""
    with engine.connect() as connection:
        return _current(connection)


def head_revision() -> str:
    """The newest schema revision this soundscene knows."""
    return _script().get_current_head()


def open_database(db: str | Path | None) -> Engine:
    """The engine of ``--db``, its schema brought up to date; SoundsceneError (one line) when it cannot be."""
    from sqlalchemy.exc import SQLAlchemyError

    url = database_url(db)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        folder = Path(url[len("sqlite:///"):]).parent
        if not folder.is_dir():
            raise SoundsceneError(f"--db: folder {folder} does not exist")
    engine = make_engine(url)
    try:
        upgrade(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        reason = str(exc.orig if getattr(exc, "orig", None) is not None else exc).strip().splitlines()[0]
        raise SoundsceneError(f"cannot open the database {engine.url.render_as_string(hide_password=True)}: "
                              f"{reason}") from None
    except SoundsceneError:
        engine.dispose()
        raise
    return engine
