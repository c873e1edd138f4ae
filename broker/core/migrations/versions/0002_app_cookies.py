"""HTML5 workspaces: app cookies, and when a viewer token was exchanged for one.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("viewer_tokens", sa.Column("exchanged_at", TS, nullable=True))
    op.create_table(
        "app_cookies",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(36), sa.ForeignKey("sessions.id"), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_app_cookies_session_id", "app_cookies", ["session_id"])


def downgrade() -> None:
    op.drop_table("app_cookies")
    with op.batch_alter_table("viewer_tokens") as batch:
        batch.drop_column("exchanged_at")
