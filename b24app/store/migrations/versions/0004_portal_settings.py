"""Per-portal settings: the saved policy, the CRM mode last observed, the last sweep.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create `portal_settings`."""
    op.create_table(
        "portal_settings",
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("policy", sa.Text, nullable=True),
        sa.Column("policy_by", sa.String(255), nullable=True),
        sa.Column("policy_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mode", sa.String(16), nullable=True),
        sa.Column("mode_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("swept_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("member_id", name="pk_portal_settings"),
    )


def downgrade() -> None:
    """Drop `portal_settings`."""
    op.drop_table("portal_settings")
