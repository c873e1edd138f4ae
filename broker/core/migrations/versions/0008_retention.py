"""Retention: an index on when sessions ended, so the pruner finds the ended
sessions past their age through an index range (never a scan of the whole
history) and deletes them in small batches by primary key. Audit entries are
found through the existing index on ``audit_events.at``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sessions_ended_at", "sessions", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_ended_at", table_name="sessions")
