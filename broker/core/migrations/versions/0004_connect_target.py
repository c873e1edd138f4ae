"""Sessions: a connect target (address and port) of their own, separate from the
displayed ``ip_address`` and empty until the tunnel grant is recorded, so the
upstreams can never connect to the display placeholder.

Active sessions whose grant is recorded (a grant id, or the ``direct``
provider's grant) keep their address as the target, so viewers of sessions
running across the upgrade still connect.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("target_host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("target_port", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE sessions SET target_host = ip_address, target_port = port "
        "WHERE status = 'active' AND (grant_id IS NOT NULL OR tunnel_status = 'direct')"
    )


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("target_port")
        batch.drop_column("target_host")
