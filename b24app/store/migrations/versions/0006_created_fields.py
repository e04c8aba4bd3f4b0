"""Custom fields b24app created on a portal (policy "create missing custom fields").

Revision ID: 0006
Revises: 0005_portal_variants
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005_portal_variants"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create `created_fields`."""
    op.create_table(
        "created_fields",
        sa.Column("portal", sa.String(255), nullable=False),
        sa.Column("entity", sa.String(16), nullable=False),
        sa.Column("lead_field", sa.String(64), nullable=False),
        sa.Column("field_name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("job_id", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("portal", "entity", "lead_field", name="pk_created_fields"),
    )


def downgrade() -> None:
    """Drop `created_fields`."""
    op.drop_table("created_fields")
