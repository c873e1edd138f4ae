"""An index for the admin listing filtered by an ended status
(``?status=terminated``): newest first within one status, so a page reads
its own rows in order instead of walking everyone's history past the rows of
other statuses (a third of them or more). ``?status=active`` keeps reading the
partial index of active sessions.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sessions_status_started_id", "sessions", ["status", "started_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_sessions_status_started_id", table_name="sessions")
