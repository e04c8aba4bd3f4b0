"""Per-portal variants: which reading of a docs/code disagreement each portal showed the doctor.

Revision ID: 0005_portal_variants
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_portal_variants"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create `portal_variants`."""
    op.create_table(
        "portal_variants",
        sa.Column("portal", sa.String(255), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("portal", "name", name="pk_portal_variants"),
    )


def downgrade() -> None:
    """Drop `portal_variants`."""
    op.drop_table("portal_variants")
