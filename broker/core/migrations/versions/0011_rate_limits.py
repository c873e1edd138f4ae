"""Rate-limit buckets shared by the workers of ``broker serve --workers`` (and
replicas on the same database), so a limit holds for the host, not once per
process (`broker.core.ratebuckets`). UNLOGGED on PostgreSQL: no WAL for a
counter written on every limited request; a crash empties it, which only
refills every bucket.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    unlogged = ["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else []
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("full_at", sa.Float(), nullable=False),
        prefixes=unlogged,
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
