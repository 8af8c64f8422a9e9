"""What a stored level is relative to: ``dB SPL`` (a calibrated sensor's LAeq) or ``dBFS`` (uncalibrated, or a
decision's RMS level), so that no page or API shows an uncalibrated level as a sound pressure level.

Revision ID: r0003
Revises: r0002
"""

import sqlalchemy as sa
from alembic import op

revision = "r0003"
down_revision = "r0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("sensors", "decisions"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("level_reference", sa.String(16)))
    # levels stored before this revision: a calibrated one would have said so in its levels message
    op.execute("UPDATE sensors SET level_reference = 'dBFS' WHERE level IS NOT NULL")
    op.execute("UPDATE decisions SET level_reference = 'dBFS' WHERE level IS NOT NULL")


def downgrade() -> None:
    for table in ("decisions", "sensors"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("level_reference")
