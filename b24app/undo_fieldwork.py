"""An undo's last part: the custom fields its conversion created, removed when nothing uses them.

The undo run (`b24app.undo`) asks `commands()` before each write batch and hands the batch's
answers to `take()`. Nothing is offered until every lead's deletions are done (phases 1-2 of
`b24app.crm.undo_plan`): then the probe of `b24app.crm.undo_fields` rides in the next batch,
beside the leads' last steps, and the deletions of the unused fields in the one after.

Exactly once: a deletion is journaled `sent` (`undo_fields`) before it goes out; a field whose
answer is lost, or whose run was killed, is probed again before anything more is sent for it -
the definition gone means deleted (it is not sent twice), still there and unused means sent
again. A field removed (or found gone) leaves the `created_fields` ledger in the same
transaction, so a later conversion creates it again if it needs it; a kept or failed one stays
in the ledger, and a later undo of the same job probes it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from b24app import messages as msg
from b24app.crm import undo_fields
from b24app.crm.fieldsync import DONE, CreatedField
from b24app.crm.undo_fields import FieldUndo
from b24app.errors import OutcomeUnknown
from b24app.rest.command import Command
from b24app.store.journal import Journal
from b24app.store.undo import (
    FIELD_FAILED,
    FIELD_FINAL,
    FIELD_GONE,
    FIELD_KEPT,
    FIELD_REMOVED,
    FIELD_SENT,
    UndoFieldRow,
    UndoStore,
)

_STATUS = {undo_fields.KEEP: FIELD_KEPT, undo_fields.GONE: FIELD_GONE}


@dataclass(frozen=True)
class UndoField:
    """One created custom field in an undo's report."""

    entity: str
    field_name: str
    lead_field: str
    status: str  # removed | kept | gone | failed | sent (a preview: remove | keep | gone)
    why: str = ""
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stable keys)."""
        return {
            "entity": self.entity,
            "field": self.field_name,
            "label": self.label,
            "lead_field": self.lead_field,
            "status": self.status,
            "why": self.why,
        }

    @classmethod
    def of_row(cls, row: UndoFieldRow) -> UndoField:
        """From the journal's row."""
        return cls(
            row.entity, row.field_name, row.lead_field, row.status, row.reason or "", row.label
        )

    @classmethod
    def of_plan(cls, planned: FieldUndo) -> UndoField:
        """A preview's verdict."""
        return cls(
            planned.entity,
            planned.field_name,
            planned.lead_field,
            planned.verdict,
            planned.why,
            planned.label,
        )


def candidates(journal: Journal, source_job_id: int) -> list[CreatedField]:
    """The fields conversion job `source_job_id` created that are still on record."""
    return [
        row
        for row in journal.created_fields().all()
        if row.job_id == source_job_id and row.status == DONE
    ]


def _key(field: CreatedField | FieldUndo | UndoFieldRow) -> tuple[str, str]:
    return field.entity, field.field_name


class FieldWork:
    """The field part of one undo job's run (see the module doc)."""

    def __init__(self, journal: Journal, store: UndoStore, job_id: int, source: int) -> None:
        self.store = store
        self.job_id = job_id
        stored = {_key(row): row for row in store.fields(job_id)}
        self.was_sent = {k for k, row in stored.items() if row.status == FIELD_SENT}
        self.to_probe = [
            f
            for f in candidates(journal, source)
            if _key(f) not in stored or stored[_key(f)].status not in FIELD_FINAL
        ]
        self.to_delete: dict[tuple[str, str], FieldUndo] = {}
        self.probing: list[CreatedField] = []
        self.deleting: dict[str, FieldUndo] = {}

    @property
    def pending(self) -> bool:
        """Whether anything is left to probe or delete."""
        return bool(self.to_probe or self.to_delete)

    def commands(self, ready: bool, room: int) -> list[Command]:
        """What rides in the next batch (at most `room` commands): nothing until `ready` (the
        leads' deletions are done), then the probe, then the deletions (journaled `sent`)."""
        self.probing, self.deleting = [], {}
        if not ready or room < 2:
            return []
        if self.to_probe:
            self.probing = self.to_probe[: room // 2]
            return undo_fields.probe_commands(self.probing)
        chosen = list(self.to_delete.values())[:room]
        self.store.save_fields(
            self.job_id,
            [_row(f, FIELD_SENT, "", field_id=f.field_id) for f in chosen],
        )
        self.was_sent.update(_key(f) for f in chosen)
        self.deleting = {f"X{n}": f for n, f in enumerate(chosen)}
        return [f.delete_command(key) for key, f in self.deleting.items()]

    def lost(self) -> None:
        """The batch's answer was lost: the fields whose deletion went in it are probed again
        before anything more is sent for them (a probe in it is simply offered again)."""
        for item in self.deleting.values():
            self._reprobe(item)
        self.probing, self.deleting = [], {}

    def _reprobe(self, item: FieldUndo) -> None:
        self.to_delete.pop(_key(item), None)
        self.to_probe.append(CreatedField(item.entity, item.lead_field, item.field_name, DONE))

    def take(self, result: Any) -> None:
        """Record the answers to what `commands()` offered (an unknown outcome: offered again)."""
        rows: list[UndoFieldRow] = []
        if self.probing:
            answered = [
                n
                for n, _ in enumerate(self.probing)
                if _answered(result, f"F{n}d") and _answered(result, f"F{n}u")
            ]
            planned = undo_fields.plan_fields(
                self.probing, result.results, result.errors, totals=result.totals
            )
            done = {_key(self.probing[n]) for n in answered}
            for item in planned:
                if _key(item) not in done:
                    continue
                if item.verdict == undo_fields.REMOVE:
                    self.to_delete[_key(item)] = item
                    continue
                status = _STATUS[item.verdict]
                why = item.why
                if status == FIELD_GONE and _key(item) in self.was_sent:
                    status, why = FIELD_REMOVED, ""  # this undo's deletion, its answer lost
                rows.append(_row(item, status, why, field_id=None))
            self.to_probe = [f for f in self.to_probe if _key(f) not in done]
        for key, item in self.deleting.items():
            error = result.errors.get(key)
            if key in result.results and error is None:
                status, why = FIELD_REMOVED, ""
            elif error is None or isinstance(error, OutcomeUnknown):
                self._reprobe(item)  # probed again before anything is resent
                continue
            else:
                code = str(getattr(error, "code", "") or "")
                text = str(getattr(error, "description", "") or error)
                if undo_fields.deleted(code, text):
                    status, why = FIELD_REMOVED, ""
                else:
                    status, why = FIELD_FAILED, msg.UNDO_FIELD_FAILED.format(error=text or code)
            self.to_delete.pop(_key(item), None)
            rows.append(_row(item, status, why, field_id=item.field_id))
        self.store.save_fields(self.job_id, rows)
        self.probing, self.deleting = [], {}


def _row(item: FieldUndo, status: str, why: str, *, field_id: int | None) -> UndoFieldRow:
    """The journal's row for `item` at `status`."""
    return UndoFieldRow(
        item.entity, item.field_name, item.lead_field, status, field_id, why or None, item.label
    )


def _answered(result: Any, key: str) -> bool:
    error = result.errors.get(key)
    return (key in result.results and error is None) or (
        error is not None and not isinstance(error, OutcomeUnknown)
    )


def preview(
    portal: Any,
    journal: Journal,
    source_job_id: int,
    deleting: Mapping[str, Iterable[int]],
) -> list[UndoField]:
    """What an undo would do with the job's fields, the entities it deletes not counting."""
    fields = candidates(journal, source_job_id)
    if not fields:
        return []
    found: list[FieldUndo] = []
    for start in range(0, len(fields), undo_fields.PROBE_FIELDS):
        chunk: Sequence[CreatedField] = fields[start : start + undo_fields.PROBE_FIELDS]
        result = portal.batch(undo_fields.probe_commands(chunk), halt=False, idempotent=True)
        found += undo_fields.plan_fields(
            chunk, result.results, result.errors, totals=result.totals, deleting=deleting
        )
    return [UndoField.of_plan(item) for item in found]
