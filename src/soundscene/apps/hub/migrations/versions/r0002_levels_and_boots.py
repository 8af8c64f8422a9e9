"""Sensor boots and lost-message counts (the levels contract's ``boot`` and shared ``seq``), and level messages.

Revision ID: r0002
Revises: r0001
"""

import sqlalchemy as sa
from alembic import op

revision = "r0002"
down_revision = "r0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("sensors") as batch:
        batch.add_column(sa.Column("lost", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("received", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("scene_t", sa.Float))
    op.create_table(
        "boots",
        sa.Column("sensor_id", sa.String(200), sa.ForeignKey("sensors.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("boot", sa.String(64), primary_key=True),
        sa.Column("min_seq", sa.BigInteger, nullable=False),
        sa.Column("max_seq", sa.BigInteger, nullable=False),
        sa.Column("received", sa.BigInteger, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
    )
    # what the first schema stored counts as received, with no loss known
    op.execute("INSERT INTO boots (sensor_id, boot, min_seq, max_seq, received, first_seen) "
               "SELECT sensor_id, boot, MIN(seq), MAX(seq), COUNT(*), MIN(stored) FROM decisions "
               "GROUP BY sensor_id, boot")
    op.execute("UPDATE sensors SET received = (SELECT COUNT(*) FROM decisions WHERE decisions.sensor_id = sensors.id)")
    op.execute("UPDATE sensors SET scene_t = (SELECT MAX(t) FROM decisions WHERE decisions.sensor_id = sensors.id)")
    op.execute("UPDATE sensors SET lost = COALESCE((SELECT SUM(max_seq - min_seq + 1 - received) FROM boots "
               "WHERE boots.sensor_id = sensors.id), 0)")
    op.create_table(
        "levels",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("sensor_id", sa.String(200), nullable=False),
        sa.Column("boot", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("start", sa.Float, nullable=False),
        sa.Column("end", sa.Float, nullable=False),
        sa.Column("stored", sa.Float, nullable=False),
        sa.Column("laeq", sa.Float),
        sa.Column("levels", sa.JSON),
        sa.UniqueConstraint("sensor_id", "boot", "seq", name="uq_levels_message"),
    )
    op.create_index("ix_levels_sensor_end", "levels", ["sensor_id", "end"])


def downgrade() -> None:
    op.drop_table("levels")
    op.drop_table("boots")
    with op.batch_alter_table("sensors") as batch:
        batch.drop_column("scene_t")
        batch.drop_column("received")
        batch.drop_column("lost")
