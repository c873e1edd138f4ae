"""Indexes on when viewer tokens and app cookies were made, so the retention
pruner reads only the credentials older than its cutoff (a credential is
made while its session is active, so one of a session that ended before the
cutoff is older than it), not every credential of the last day.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_viewer_tokens_created_at", "viewer_tokens", ["created_at"])
    op.create_index("ix_app_cookies_created_at", "app_cookies", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_app_cookies_created_at", table_name="app_cookies")
    op.drop_index("ix_viewer_tokens_created_at", table_name="viewer_tokens")
