"""Viewer tokens and app cookies record what the launching JWT proved (roles,
admin, MFA), so the workspace's rules hold at every connect; viewer tokens
expire with that JWT.

Rows from before have nothing recorded: they prove no role and no MFA (they
open only workspaces open to everyone while MFA is not required) and do not
expire before their session ends.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("viewer_tokens", "app_cookies")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("roles", sa.JSON(), nullable=True))
            batch.add_column(sa.Column("is_admin", sa.Boolean(), nullable=True))
            batch.add_column(sa.Column("mfa_verified", sa.Boolean(), nullable=True))
        op.execute(f"UPDATE {table} SET roles = '[]', is_admin = false, mfa_verified = false")
        with op.batch_alter_table(table) as batch:
            batch.alter_column("roles", existing_type=sa.JSON(), nullable=False)
            batch.alter_column("is_admin", existing_type=sa.Boolean(), nullable=False)
            batch.alter_column("mfa_verified", existing_type=sa.Boolean(), nullable=False)
    with op.batch_alter_table("viewer_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("viewer_tokens") as batch:
        batch.drop_column("expires_at")
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("mfa_verified")
            batch.drop_column("is_admin")
            batch.drop_column("roles")
