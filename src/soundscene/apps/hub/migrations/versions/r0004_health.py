"""The sensors' health records (``soundscene/<id>/health``), numbered by the same boot and seq as their
decisions and level messages, so that storing them keeps a sensor's lost-message count right.

Revision ID: r0004
Revises: r0003
"""

import sqlalchemy as sa
from alembic import op

revision = "r0004"
down_revision = "r0003"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "health",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("sensor_id", sa.String(200), nullable=False),
        sa.Column("boot", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("t", sa.Float, nullable=False),
        sa.Column("stored", sa.Float, nullable=False),
        sa.Column("record", sa.JSON, nullable=False),
        sa.UniqueConstraint("sensor_id", "boot", "seq", name="uq_health_message"),
    )
    op.create_index("ix_health_sensor_t", "health", ["sensor_id", "t"])


def downgrade() -> None:
    op.drop_index("ix_health_sensor_t", table_name="health")
    op.drop_table("health")
