"""The custom fields b24app created on each portal (policy "create missing custom fields").

One row per (portal, target entity, lead field): `sent` is written and committed *before*
`crm.<entity>.userfield.add` goes out, `done` once the portal has the field, `refused` with the
portal's reason. A row that exists is never sent again by another job, worker or rerun: `sent`
(an answer lost, a crash) is settled by reading the field back by its name, which is fixed per
lead field and target (`customfields.created_name`), so the portal itself refuses a twin. The
undo of the job that created a field drops its row in the transaction that records the field
deleted (`b24app.store.undo.UndoStore.save_fields`), so a later job creates it again.
"""

from __future__ import annotations

from sqlalchemy import Column, Engine, Integer, String, Table, Text, insert, select, update
from sqlalchemy.exc import IntegrityError

from b24app.crm.fieldsync import DONE, REFUSED, SENT, CreatedField
from b24app.store.db import UtcDateTime, metadata, utc_now, write_lock

__all__ = ["DONE", "REFUSED", "SENT", "CreatedField", "CreatedFields", "created_fields"]

created_fields = Table(
    "created_fields",
    metadata,
    Column("portal", String(255), primary_key=True),
    Column("entity", String(16), primary_key=True),
    Column("lead_field", String(64), primary_key=True),
    Column("field_name", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("job_id", Integer, nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
)


class CreatedFields:
    """The rows of one portal (implements `b24app.crm.fieldsync.FieldLedger`)."""

    def __init__(self, engine: Engine, portal: str) -> None:
        self.engine = engine
        self.portal = portal

    def all(self) -> list[CreatedField]:
        """Every row of the portal."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(created_fields).where(created_fields.c.portal == self.portal)
            ).all()
        return [
            CreatedField(r.entity, r.lead_field, r.field_name, r.status, r.error, r.job_id)
            for r in rows
        ]

    def claim(self, entity: str, lead_field: str, field_name: str, *, job_id: int | None) -> bool:
        """Record `sent` for this field; False when a row exists already (someone else's)."""
        try:
            with write_lock(self.engine) as conn:
                conn.execute(
                    insert(created_fields).values(
                        portal=self.portal,
                        entity=entity,
                        lead_field=lead_field,
                        field_name=field_name,
                        status=SENT,
                        job_id=job_id,
                        updated_at=utc_now(),
                    )
                )
        except IntegrityError:
            return False
        return True

    def settle(self, entity: str, lead_field: str, status: str, error: str | None = None) -> None:
        """Mark a claimed field `done` or `refused` (with the portal's reason)."""
        with write_lock(self.engine) as conn:
            conn.execute(
                update(created_fields)
                .where(
                    created_fields.c.portal == self.portal,
                    created_fields.c.entity == entity,
                    created_fields.c.lead_field == lead_field,
                )
                .values(status=status, error=error, updated_at=utc_now())
            )
