"""Failed connections: the last error a viewer's try to reach the desktop met,
and when the first failed try since the last success happened (the reaper
ends the session ``connect_failed`` once that is too long ago).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("last_connect_error", sa.String(500), nullable=True))
        batch.add_column(
            sa.Column("connect_failing_since", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("connect_failing_since")
        batch.drop_column("last_connect_error")
