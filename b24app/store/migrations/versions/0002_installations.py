"""Installations (one row per portal, secrets encrypted) and their history.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create `installations` and `installation_history`."""
    op.create_table(
        "installations",
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("client_endpoint", sa.String(512), nullable=False),
        sa.Column("server_endpoint", sa.String(512), nullable=True),
        sa.Column("access_token", sa.Text, nullable=True),
        sa.Column("refresh_token", sa.Text, nullable=True),
        sa.Column("application_token", sa.Text, nullable=True),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("scope", sa.String(1024), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("installed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("member_id", name="pk_installations"),
    )
    op.create_index("ix_installations_domain", "installations", ["domain"])
    op.create_table(
        "installation_history",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(512), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_installation_history"),
    )
    op.create_index("ix_installation_history_member_id", "installation_history", ["member_id"])


def downgrade() -> None:
    """Drop both tables."""
    op.drop_index("ix_installation_history_member_id", "installation_history")
    op.drop_table("installation_history")
    op.drop_index("ix_installations_domain", "installations")
    op.drop_table("installations")
