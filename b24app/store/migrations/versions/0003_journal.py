"""The conversion journal: jobs, each lead's conversion state, and each job's lead outcomes.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create `jobs`, `lead_states` and `job_leads`."""
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("portal", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("lead_ids", sa.Text, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("total", sa.Integer, nullable=True),
        sa.Column("converted", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_portal_status", "jobs", ["portal", "status"])
    op.create_table(
        "lead_states",
        sa.Column("portal", sa.String(255), nullable=False),
        sa.Column("lead_id", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("state", sa.Text, nullable=True),
        sa.Column("deal_id", sa.BigInteger, nullable=True),
        sa.Column("contact_id", sa.BigInteger, nullable=True),
        sa.Column("company_id", sa.BigInteger, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("job_id", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("portal", "lead_id", name="pk_lead_states"),
    )
    op.create_index("ix_lead_states_portal_status", "lead_states", ["portal", "status"])
    op.create_table(
        "job_leads",
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("lead_id", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("deal_id", sa.BigInteger, nullable=True),
        sa.Column("contact_id", sa.BigInteger, nullable=True),
        sa.Column("company_id", sa.BigInteger, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "lead_id", name="pk_job_leads"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_job_leads_job_id_jobs", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("job_leads")
    op.drop_index("ix_lead_states_portal_status", "lead_states")
    op.drop_table("lead_states")
    op.drop_index("ix_jobs_portal_status", "jobs")
    op.drop_table("jobs")
