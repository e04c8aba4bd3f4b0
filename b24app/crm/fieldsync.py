"""Creating the custom fields a target lacks (policy "create missing custom fields", off by
default: Bitrix24's own conversion asks the user first, `leadconverter.php:553-561`).

Each missing lead field is created once per portal and target, as
`UserFieldSynchronizer::synchronize` does (`userfieldsynchronizer.php:234-330`: same type,
labels, settings and list options; `customfields.CustomFields.create_command`), before any lead
of the job is planned, so every lead's values land in it:

* the row in `created_fields` (`b24app.store.created_fields`) is committed before the add is
  sent; a row another job or worker holds is never sent by this one, except a `sent` row with no
  answer, which is sent again under the same fixed name - the portal keeps one field per name,
  so a lost answer cannot make a second field;
* the outcome is read back (one `userfield.list` batch): the field exists under its name ->
  `done`; else `refused`, with the portal's reason in a message naming the field. A refused
  field is tried again by a later job (the permission may have been granted meanwhile).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from b24app.crm.customfields import (
    TARGETS,
    CustomFields,
    created_name,
    list_commands,
)
from b24app.errors import B24Error
from b24app.rest.command import Command
from b24app.rest.portal import Portal

SENT, DONE, REFUSED = "sent", "done", "refused"


@dataclass(frozen=True)
class CreatedField:
    """One custom field b24app created (or is creating) on a portal: target entity, lead field,
    its fixed name, where it stands, the portal's refusal."""

    entity: str
    lead_field: str
    field_name: str
    status: str
    error: str | None = None
    job_id: int | None = None  # the job that created it


class FieldLedger(Protocol):
    """Where the fields b24app created are recorded (`b24app.store.created_fields`)."""

    def all(self) -> list[CreatedField]:
        """Every row of the portal."""
        ...

    def claim(self, entity: str, lead_field: str, field_name: str, *, job_id: int | None) -> bool:
        """Record `sent` before the add goes out; False if a row exists already."""
        ...

    def settle(self, entity: str, lead_field: str, status: str, error: str | None = None) -> None:
        """Record where a field stands now."""
        ...


log = logging.getLogger("b24app.crm")

MAX_COMMANDS = 50


def targets_of(policy: Any) -> tuple[str, ...]:
    """The entities a job under `policy` creates: the deal and the clients it asks for."""
    client = getattr(policy, "client", None)
    found = ["deal"]
    if client is None or client.wants_contact:
        found.append("contact")
    if client is None or client.wants_company:
        found.append("company")
    return tuple(found)


def ensure(
    portal: Portal,
    store: FieldLedger,
    found: CustomFields,
    policy: Any,
    *,
    job_id: int | None = None,
) -> tuple[CustomFields, list[str]]:
    """Create the fields the job's targets lack; (the definitions to map with, refusal texts)."""
    if found.error or not found.any or not getattr(policy, "create_fields", False):
        return found, []
    rows = {(r.entity, r.lead_field): r for r in store.all()}
    known = {(e, str(r.get("FIELD_NAME"))) for e in TARGETS for r in found.rows.get(e, ())}
    if any(r.status == DONE and (r.entity, r.field_name) not in known for r in rows.values()):
        # created by another process after these definitions were cached: read them again
        found = read_definitions(portal, found)
    wanted: list[tuple[str, str, str]] = []  # (target, lead field, new name)
    for target in targets_of(policy):
        for field in _with_created(found, store).missing(target):
            row = rows.get((target, field.name))
            name = row.field_name if row is not None else created_name(field.name, target)
            if row is None and not store.claim(target, field.name, name, job_id=job_id):
                continue  # another job or worker claimed it a moment ago: it creates it
            if row is not None and row.status == DONE:
                continue  # created earlier and deleted from the portal since: not made again
            if row is not None and row.status == REFUSED:
                store.settle(target, field.name, SENT)
            wanted.append((target, field.name, name))
    if not wanted:
        return _with_created(found, store), []
    answers: dict[str, str] = {}
    commands = [
        found.create_command(f"f{n}", target, lead_field, name.removeprefix("UF_CRM_"))
        for n, (target, lead_field, name) in enumerate(wanted)
    ]
    for start in range(0, len(commands), MAX_COMMANDS):
        chunk = commands[start : start + MAX_COMMANDS]
        try:
            result = portal.batch(chunk, halt=False)
        except B24Error as exc:
            for command in chunk:
                answers[command.key] = exc.description or exc.code or str(exc)
            continue
        for command in chunk:
            error = result.errors.get(command.key)
            if error is not None:
                answers[command.key] = error.description or error.code or str(error)
    fresh = read_definitions(portal, found)
    names = {(e, str(r.get("FIELD_NAME"))) for e in TARGETS for r in fresh.rows.get(e, ())}
    notes = []
    for command, (target, lead_field, name) in zip(commands, wanted, strict=True):
        if (target, name) in names:
            store.settle(target, lead_field, DONE)
            log.info("custom field %s created on the %s for %s", name, target, lead_field)
            continue
        reason = answers.get(command.key) or "the portal did not keep it"
        store.settle(target, lead_field, REFUSED, reason)
        definition = found.row("lead", lead_field) or {}
        label = _label(found, definition) or lead_field
        notes.append(
            f"custom field '{label}' ({lead_field}) could not be created on the {target}: "
            f"{reason}; its values are not copied there"
        )
    return _with_created(fresh, store), notes


def read_definitions(portal: Portal, found: CustomFields) -> CustomFields:
    """The definitions read again (one request), after fields were created."""
    commands: Sequence[Command] = list_commands(found.language)
    try:
        result = portal.batch(commands, halt=False, idempotent=True)
    except B24Error:
        return found
    fresh = CustomFields.from_results(result.results, result.errors, language=found.language)
    return found if fresh.error else fresh


def _with_created(found: CustomFields, store: FieldLedger) -> CustomFields:
    """`found` knowing the fields b24app created (paired even if someone renamed them)."""
    names = {(e, str(r.get("FIELD_NAME"))) for e in TARGETS for r in found.rows.get(e, ())}
    created: dict[str, dict[str, str]] = {}
    for row in store.all():
        if row.status == DONE and (row.entity, row.field_name) in names:
            created.setdefault(row.entity, {})[row.lead_field] = row.field_name
    return replace(found, created=created) if created else found


def _label(found: CustomFields, row: Any) -> str:
    from b24app.crm.fieldpairs import label_of

    return label_of(row, found.language) if row else ""
