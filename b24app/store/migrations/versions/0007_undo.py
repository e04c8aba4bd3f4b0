"""Undo of conversion jobs: what each lead's conversion did, and each undo's per-lead state.

Revision ID: 0007
Revises: 0005_portal_variants
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create `conversion_records` and `undo_leads`."""
    op.create_table(
        "conversion_records",
        sa.Column("portal", sa.String(255), nullable=False),
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("lead_id", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("portal", "job_id", "lead_id", name="pk_conversion_records"),
    )
    op.create_table(
        "undo_leads",
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("portal", sa.String(255), nullable=False),
        sa.Column("source_job_id", sa.Integer, nullable=False),
        sa.Column("lead_id", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("state", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "lead_id", name="pk_undo_leads"),
    )
    op.create_index("ix_undo_leads_source", "undo_leads", ["portal", "source_job_id", "status"])


def downgrade() -> None:
    """Drop both."""
    op.drop_index("ix_undo_leads_source", table_name="undo_leads")
    op.drop_table("undo_leads")
    op.drop_table("conversion_records")
