"""The root of the migration tree; each table module adds a revision on top.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing: the tables arrive in the revisions that follow."""


def downgrade() -> None:
    """Nothing to undo."""
