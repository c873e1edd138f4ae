"""Session limits: when a viewer was last attached to a session.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("last_viewer_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE sessions SET last_viewer_at = started_at")
    with op.batch_alter_table("sessions") as batch:
        batch.alter_column("last_viewer_at", nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("last_viewer_at")
