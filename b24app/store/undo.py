"""The undo journal: each undo job's per-lead state, beside the conversion journal.

An undo job is a row of `jobs` (kind "undo", policy `{"undo": <conversion job id>, "force": ...}`),
so the journal's one-live-job-per-portal rule keeps an undo away from a conversion and from a
second undo. `undo_leads` holds, per (undo job, lead): status (pending, reverting, reverted, kept,
failed), the undo's stored plan and progress while it is underway, and the reason or the
portal's text. A lead is reverted once per conversion job: `reverted` rows of every undo of that
job are consulted before planning. Reverting a lead also drops its `lead_states` row (its
conversion is gone, so a later convert takes it up afresh), in the same transaction.

`undo_fields` holds, per (undo job, created custom field): `sent` (committed before its
`userfield.delete` goes out), `removed`, `kept` (why), `gone` (deleted already), `failed` (the
portal's text). Recording a field removed or gone drops its `created_fields` row in the same
transaction, so a later conversion creates the field again if it needs it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    delete,
    select,
    update,
)

from b24app.store.created_fields import created_fields
from b24app.store.db import UtcDateTime, metadata, utc_now, write_lock
from b24app.store.journal import (
    JobCounts,
    JobRow,
    Journal,
    conversion_records,
    jobs,
    lead_states,
)

KIND = "undo"
PENDING, REVERTING, REVERTED, KEPT, FAILED = "pending", "reverting", "reverted", "kept", "failed"
FINAL = frozenset({REVERTED, KEPT, FAILED})

undo_leads = Table(
    "undo_leads",
    metadata,
    Column("job_id", Integer, primary_key=True),
    Column("portal", String(255), nullable=False),
    Column("source_job_id", Integer, nullable=False),
    Column("lead_id", BigInteger, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("state", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_undo_leads_source", "portal", "source_job_id", "status"),
)


undo_fields = Table(
    "undo_fields",
    metadata,
    Column("job_id", Integer, primary_key=True),
    Column("portal", String(255), nullable=False),
    Column("entity", String(16), primary_key=True),
    Column("field_name", String(64), primary_key=True),
    Column("lead_field", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("field_id", Integer, nullable=True),
    Column("reason", Text, nullable=True),
    Column("label", String(255), nullable=True),  # the field's label, for people
    Column("updated_at", UtcDateTime(), nullable=False),
)
FIELD_SENT, FIELD_REMOVED, FIELD_KEPT, FIELD_GONE, FIELD_FAILED = (
    "sent",
    "removed",
    "kept",
    "gone",
    "failed",
)
FIELD_FINAL = frozenset({FIELD_REMOVED, FIELD_KEPT, FIELD_GONE, FIELD_FAILED})


@dataclass(frozen=True)
class UndoFieldRow:
    """One created custom field of an undo job as stored."""

    entity: str
    field_name: str
    lead_field: str
    status: str
    field_id: int | None = None
    reason: str | None = None
    label: str = ""


@dataclass(frozen=True)
class UndoRow:
    """One lead of an undo job as stored."""

    lead_id: int
    status: str
    state: Mapping[str, Any] | None = None
    reason: str | None = None


class UndoStore:
    """Undo jobs of one portal, on the conversion journal's database."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.engine = journal.engine
        self.portal = journal.portal

    def records(self, job_id: int) -> dict[int, dict[str, Any]]:
        """What conversion job `job_id` did to each lead it converted (the stored LeadState)."""
        query = select(conversion_records.c.lead_id, conversion_records.c.state).where(
            conversion_records.c.portal == self.portal, conversion_records.c.job_id == job_id
        )
        found: dict[int, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for lead_id, state in conn.execute(query):
                try:
                    found[int(lead_id)] = json.loads(state)
                except ValueError:
                    continue
        return found

    def undo_jobs(self, source_job_id: int) -> list[JobRow]:
        """Every undo job of conversion job `source_job_id`, oldest first."""
        query = (
            select(jobs.c.id)
            .where(jobs.c.portal == self.portal, jobs.c.kind == KIND)
            .order_by(jobs.c.id)
        )
        with self.engine.connect() as conn:
            ids = [row.id for row in conn.execute(query)]
        found = [job for i in ids if (job := self.journal.job(i)) is not None]
        return [job for job in found if int(job.policy.get("undo") or 0) == source_job_id]

    def reverted(self, source_job_id: int) -> dict[int, int]:
        """Lead id -> the undo job that reverted it, for conversion job `source_job_id`."""
        query = select(undo_leads.c.lead_id, undo_leads.c.job_id).where(
            undo_leads.c.portal == self.portal,
            undo_leads.c.source_job_id == source_job_id,
            undo_leads.c.status == REVERTED,
        )
        with self.engine.connect() as conn:
            return {int(lead): int(job) for lead, job in conn.execute(query)}

    def rows(self, job_id: int) -> dict[int, UndoRow]:
        """The leads of undo job `job_id`, by lead id."""
        query = (
            select(undo_leads)
            .where(undo_leads.c.portal == self.portal, undo_leads.c.job_id == job_id)
            .order_by(undo_leads.c.lead_id)
        )
        found: dict[int, UndoRow] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                try:
                    state = json.loads(row.state) if row.state else None
                except ValueError:
                    state = None
                found[int(row.lead_id)] = UndoRow(int(row.lead_id), row.status, state, row.reason)
        return found

    def save(
        self,
        job_id: int,
        source_job_id: int,
        rows: Iterable[UndoRow],
        *,
        counts: JobCounts | None = None,
    ) -> None:
        """One transaction: the leads' undo rows (a reverted lead's conversion state dropped),
        the job's counts and heartbeat."""
        now = utc_now()
        values = [
            {
                "job_id": job_id,
                "portal": self.portal,
                "source_job_id": source_job_id,
                "lead_id": row.lead_id,
                "status": row.status,
                "state": None if row.state is None else json.dumps(row.state, sort_keys=True),
                "reason": row.reason,
                "updated_at": now,
            }
            for row in rows
        ]
        reverted = [row.lead_id for row in rows if row.status == REVERTED]
        with write_lock(self.engine) as conn:
            if values:
                self.journal._upsert(conn, undo_leads, values, ("job_id", "lead_id"))
            for chunk in _chunks(reverted):
                conn.execute(
                    delete(lead_states).where(
                        and_(
                            lead_states.c.portal == self.portal,
                            lead_states.c.lead_id.in_(chunk),
                            lead_states.c.status == "converted",
                        )
                    )
                )
            changed: dict[str, Any] = {"heartbeat_at": now}
            if counts is not None:
                changed |= {
                    "requests": counts.requests,
                    "converted": counts.converted,
                    "failed": counts.failed,
                    "skipped": counts.skipped,
                }
                if counts.total is not None:
                    changed["total"] = counts.total
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**changed))

    def fields(self, job_id: int) -> list[UndoFieldRow]:
        """The created custom fields undo job `job_id` has dealt with, in name order."""
        query = (
            select(undo_fields)
            .where(undo_fields.c.portal == self.portal, undo_fields.c.job_id == job_id)
            .order_by(undo_fields.c.entity, undo_fields.c.field_name)
        )
        with self.engine.connect() as conn:
            return [
                UndoFieldRow(
                    r.entity,
                    r.field_name,
                    r.lead_field,
                    r.status,
                    r.field_id,
                    r.reason,
                    r.label or "",
                )
                for r in conn.execute(query)
            ]

    def save_fields(self, job_id: int, rows: Sequence[UndoFieldRow]) -> None:
        """One transaction: the fields' rows; those removed or gone leave the ledger of created
        fields, so a later conversion would create them again."""
        if not rows:
            return
        now = utc_now()
        values = [
            {
                "job_id": job_id,
                "portal": self.portal,
                "entity": row.entity,
                "field_name": row.field_name,
                "lead_field": row.lead_field,
                "status": row.status,
                "field_id": row.field_id,
                "reason": row.reason,
                "label": row.label or None,
                "updated_at": now,
            }
            for row in rows
        ]
        with write_lock(self.engine) as conn:
            self.journal._upsert(conn, undo_fields, values, ("job_id", "entity", "field_name"))
            for row in rows:
                if row.status in (FIELD_REMOVED, FIELD_GONE):
                    conn.execute(
                        delete(created_fields).where(
                            created_fields.c.portal == self.portal,
                            created_fields.c.entity == row.entity,
                            created_fields.c.field_name == row.field_name,
                        )
                    )
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(heartbeat_at=now))

    def purge(self) -> None:
        """Forget every undo row of this portal (an uninstall with CLEAN=1)."""
        with write_lock(self.engine) as conn:
            conn.execute(delete(undo_leads).where(undo_leads.c.portal == self.portal))
            conn.execute(delete(undo_fields).where(undo_fields.c.portal == self.portal))


def _chunks(ids: Sequence[int], size: int = 500) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])
