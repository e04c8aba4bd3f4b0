"""Undo of conversion jobs: what each undo did with the custom fields its conversion created.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create `undo_fields`."""
    op.create_table(
        "undo_fields",
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("portal", sa.String(255), nullable=False),
        sa.Column("entity", sa.String(16), nullable=False),
        sa.Column("field_name", sa.String(64), nullable=False),
        sa.Column("lead_field", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("field_id", sa.Integer, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("label", sa.String(255), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "entity", "field_name", name="pk_undo_fields"),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("undo_fields")
