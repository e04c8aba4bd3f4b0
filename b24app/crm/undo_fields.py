"""Planning the removal of the custom fields a conversion job created (policy "create missing
custom fields"), for its undo. Pure: the job's rows of the `created_fields` ledger and one probe
of the portal in, a `FieldUndo` per field out; `b24app.undo` sends the probe and the deletions.

A field goes only when no entity uses it any more. The probe, per field, two commands:

* `crm.<entity>.userfield.list` filter FIELD_NAME: the definition's ID (the delete takes the ID,
  not the name; `rest/lib/userfieldproxy.php`, UserFieldProxy::delete); no row: the field is gone
  already (an earlier run of this undo deleted it and lost the answer, or an admin did);
* `crm.<entity>.list` filter `!<FIELD_NAME>: ""`, select ID: the entities holding a value. The
  legacy list filters user fields through CSQLWhere (main/classes/general/sqlwhere.php,
  CAllSQLWhere::GetQuery): "!" with an empty value is `_NotEmpty` for strings and
  `IS NOT NULL AND <> 0` for int/enum/file fields (addIntFilter, case "N") - "has a value" for
  every type the conversion copies. One page (50 ids) is enough: any entity beyond those the
  undo deletes keeps the field.

Run after the undo's deletions, an entity found is a user: the field is kept, with who uses it.
In a preview (before anything is deleted) the entities the undo will delete do not count.
Deleting the definition is `crm.<entity>.userfield.delete` {id} (CCrmUserFieldRestProxy, via
UserFieldProxy::delete -> CUserTypeEntity::Delete, which drops the values' column with it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from b24app import messages as msg
from b24app.crm import customfields, fieldpairs, mapping
from b24app.crm.fieldsync import CreatedField
from b24app.rest.command import Command
from b24app.vocabulary import MAX_BATCH

REMOVE, KEEP, GONE = "remove", "keep", "gone"
SHOWN = 5  # users named in a "kept" reason
PROBE_FIELDS = MAX_BATCH // 2  # fields probed per batch (two commands each)
# Answers to userfield.delete meaning the field is not there (userfieldproxy.php: "not found").
_GONE = ("not found", "not_found")


@dataclass(frozen=True)
class FieldUndo:
    """One created field in an undo: `verdict` remove | keep | gone, why, the definition's ID."""

    entity: str
    field_name: str
    lead_field: str
    verdict: str
    why: str = ""
    field_id: int = 0
    label: str = ""  # the definition's label in customfields.LANGUAGE, read by the probe

    def delete_command(self, key: str) -> Command:
        """The deletion of the definition."""
        return Command(key, f"crm.{self.entity}.userfield.delete", {"id": self.field_id})


def _keys(n: int) -> tuple[str, str]:
    return f"F{n}d", f"F{n}u"


def probe_commands(fields: Sequence[CreatedField]) -> list[Command]:
    """Two reads per field (its definition, the entities holding a value), keyed by position."""
    commands = []
    for n, field in enumerate(fields):
        definition, users = _keys(n)
        commands.append(
            Command(
                definition,
                f"crm.{field.entity}.userfield.list",
                # LANG: the labels come only with it (rest/lib/userfieldproxy.php:567-636)
                {"filter": {"FIELD_NAME": field.field_name, "LANG": customfields.LANGUAGE}},
            )
        )
        commands.append(
            Command(
                users,
                f"crm.{field.entity}.list",
                {"filter": {f"!{field.field_name}": ""}, "select": ["ID"]},
            )
        )
    return commands


def _rows(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        value = value.get("items") or value.get("result") or []
    return [row for row in value or () if isinstance(row, Mapping)]


def plan_fields(
    fields: Sequence[CreatedField],
    results: Mapping[str, Any],
    errors: Mapping[str, Any],
    *,
    totals: Mapping[str, int] | None = None,
    deleting: Mapping[str, Iterable[int]] | None = None,
) -> list[FieldUndo]:
    """Each field's verdict from the probe's answers (`probe_commands` keys). `deleting`:
    entity -> ids the undo still deletes (a preview); `totals`: key -> the listing's total."""
    planned = []
    for n, field in enumerate(fields):
        definition, users = _keys(n)
        base = FieldUndo(field.entity, field.field_name, field.lead_field, KEEP)
        error = errors.get(definition) or errors.get(users)
        if error is not None or definition not in results or users not in results:
            reason = getattr(error, "description", None) or str(error or "no answer")
            planned.append(_with(base, KEEP, msg.UNDO_FIELD_UNCHECKED.format(error=reason)))
            continue
        found = [r for r in _rows(results[definition]) if r.get("FIELD_NAME") == field.field_name]
        field_id = mapping.link_id(found[0].get("ID")) if found else None
        if found:
            base = replace(base, label=fieldpairs.label_of(found[0], customfields.LANGUAGE))
        if not field_id:
            planned.append(_with(base, GONE, msg.UNDO_FIELD_GONE))
            continue
        going = {int(i) for i in (deleting or {}).get(field.entity, ())}
        holders = [mapping.link_id(r.get("ID")) for r in _rows(results[users])]
        others = [i for i in holders if i and i not in going]
        total = (totals or {}).get(users, len(holders))
        if others or total > len(holders):
            shown = ", ".join(f"{field.entity} {i}" for i in others[:SHOWN])
            more = max(total - len(holders), 0) + max(len(others) - SHOWN, 0)
            users_text = shown + (f" (+{more})" if more else "") if shown else f"+{more}"
            planned.append(_with(base, KEEP, msg.UNDO_FIELD_USED.format(users=users_text)))
            continue
        planned.append(_with(base, REMOVE, "", field_id))
    return planned


def _with(base: FieldUndo, verdict: str, why: str, field_id: int = 0) -> FieldUndo:
    return replace(base, verdict=verdict, why=why, field_id=field_id)


def deleted(code: str, description: str) -> bool:
    """Whether an error answer to a userfield.delete means the field is gone already."""
    text = f"{code} {description}".lower()
    return any(marker in text for marker in _GONE)
