"""The first hub schema: sensors, decisions, segments, alerts and ingest errors.

Revision ID: r0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "sensors",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("latitude", sa.Float), sa.Column("longitude", sa.Float),
        sa.Column("x", sa.Float), sa.Column("y", sa.Float),
        sa.Column("tags", sa.JSON),
        sa.Column("model_name", sa.String(200)), sa.Column("model_version", sa.String(200)),
        sa.Column("classes", sa.JSON),
        sa.Column("first_seen", sa.Float), sa.Column("last_seen", sa.Float),
        sa.Column("status", sa.String(16), nullable=False, server_default="unknown"),
        sa.Column("status_since", sa.Float),
        sa.Column("label", sa.String(200)), sa.Column("confidence", sa.Float), sa.Column("level", sa.Float),
        sa.Column("silent", sa.Boolean),
    )
    op.create_table(
        "decisions",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("sensor_id", sa.String(200), nullable=False),
        sa.Column("boot", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("t", sa.Float, nullable=False),
        sa.Column("stored", sa.Float, nullable=False),
        sa.Column("hop", sa.Float),
        sa.Column("label", sa.String(200)),
        sa.Column("confidence", sa.Float),
        sa.Column("level", sa.Float),
        sa.Column("silent", sa.Boolean, nullable=False),
        sa.Column("probabilities", sa.JSON),
        sa.UniqueConstraint("sensor_id", "boot", "seq", name="uq_decisions_message"),
    )
    op.create_index("ix_decisions_sensor_t", "decisions", ["sensor_id", "t"])
    op.create_index("ix_decisions_t", "decisions", ["t"])
    op.create_table(
        "segments",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("sensor_id", sa.String(200), nullable=False),
        sa.Column("boot", sa.String(64), nullable=False),
        sa.Column("start", sa.Float, nullable=False),
        sa.Column("end", sa.Float, nullable=False),
        sa.Column("label", sa.String(200)),
        sa.Column("confidence_sum", sa.Float, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_segments_sensor_boot_seq", "segments", ["sensor_id", "boot", "first_seq"])
    op.create_index("ix_segments_sensor_end", "segments", ["sensor_id", "end"])
    op.create_index("ix_segments_end", "segments", ["end"])
    op.create_table(
        "alerts",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sensor_id", sa.String(200), nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("ended", sa.Float),
        sa.Column("detail", sa.JSON),
        sa.Column("start_notified", sa.Float),
        sa.Column("end_notified", sa.Float),
    )
    op.create_index("ix_alerts_started", "alerts", ["started"])
    op.create_index("ix_alerts_open", "alerts", ["rule", "sensor_id", "ended"])
    op.create_table(
        "ingest_errors",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_ingest_errors_time", "ingest_errors", ["time"])


def downgrade() -> None:
    for table in ("ingest_errors", "alerts", "segments", "decisions", "sensors"):
        op.drop_table(table)
