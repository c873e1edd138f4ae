"""Indexes for a long history, and counters kept in the database.

Every listing gets an index in its own order (``started_at, id`` after the
filter's column; ``id`` for the audit log), so a page costs the same however
deep it is; the revoke retry and every question about active sessions read
partial indexes holding only those rows. The indexes these replace go.

``session_counters`` holds the ended-session totals by reason, filled here
from the sessions already ended; from now on each end adds to it in its own
transaction.

On PostgreSQL the new indexes are built inside the migration's transaction,
which blocks writes to the two tables while they build (seconds per million
rows): run ``broker migrate`` at a quiet time.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ACTIVE = "status = 'active'"
PENDING_REVOKE = "status != 'active' AND revoked = false"


def _partial(name: str, columns: list[str], predicate: str) -> None:
    op.create_index(
        name,
        "sessions",
        columns,
        sqlite_where=sa.text(predicate),
        postgresql_where=sa.text(predicate),
    )


def upgrade() -> None:
    _partial("ix_sessions_active_started_id", ["started_at", "id"], ACTIVE)
    _partial("ix_sessions_active_user_started_id", ["user_id", "started_at", "id"], ACTIVE)
    _partial("ix_sessions_pending_revoke", ["ended_at"], PENDING_REVOKE)
    op.create_index("ix_sessions_started_id", "sessions", ["started_at", "id"])
    op.create_index(
        "ix_sessions_workspace_started_id", "sessions", ["workspace_id", "started_at", "id"]
    )
    op.create_index("ix_sessions_user_started_id", "sessions", ["user_id", "started_at", "id"])
    op.create_index("ix_sessions_email_started_id", "sessions", ["user_email", "started_at", "id"])
    # Each is the leading part of one above, or (status) what the partial
    # indexes now answer.
    op.drop_index("ix_sessions_user_id", "sessions")
    op.drop_index("ix_sessions_user_started", "sessions")
    op.drop_index("ix_sessions_status", "sessions")

    op.create_index("ix_audit_events_user_id_id", "audit_events", ["user_id", "id"])
    op.create_index("ix_audit_events_email_id", "audit_events", ["user_email", "id"])
    op.create_index("ix_audit_events_action_id", "audit_events", ["action", "id"])
    op.drop_index("ix_audit_events_user_id", "audit_events")
    op.drop_index("ix_audit_events_action", "audit_events")

    op.create_table(
        "session_counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("reason", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "INSERT INTO session_counters (name, reason, value) "
        "SELECT 'ended', end_reason, count(*) FROM sessions "
        "WHERE status != 'active' AND end_reason IS NOT NULL GROUP BY end_reason"
    )


def downgrade() -> None:
    op.drop_table("session_counters")
    op.create_index("ix_audit_events_action", "audit_events", ["action"])
    op.create_index("ix_audit_events_user_id", "audit_events", ["user_id"])
    op.drop_index("ix_audit_events_action_id", "audit_events")
    op.drop_index("ix_audit_events_email_id", "audit_events")
    op.drop_index("ix_audit_events_user_id_id", "audit_events")

    op.create_index("ix_sessions_status", "sessions", ["status"])
    op.create_index("ix_sessions_user_started", "sessions", ["user_id", "started_at"])
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    for name in (
        "ix_sessions_email_started_id",
        "ix_sessions_user_started_id",
        "ix_sessions_workspace_started_id",
        "ix_sessions_started_id",
        "ix_sessions_pending_revoke",
        "ix_sessions_active_user_started_id",
        "ix_sessions_active_started_id",
    ):
        op.drop_index(name, "sessions")
