"""Which custom field of a deal, contact or company takes the value of a lead's custom field.

Bitrix24's own conversion pairs user fields by label, type and multiplicity: the label is the
field's EDIT_FORM_LABEL, else its LIST_COLUMN_LABEL, lower-cased with the spaces removed; the
type (USER_TYPE_ID) and MULTIPLE must be equal; each target field takes one lead field at most
(crm/lib/conversion/userfieldsynchronizer.php:514-566,646-655 in yuliai/bitrix-modules).
Labels come from `crm.<entity>.userfield.list` with `filter[LANG]` (without it the list carries
no labels; rest/lib/userfieldproxy.php:567-636).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_LABELS = ("EDIT_FORM_LABEL", "LIST_COLUMN_LABEL")


@dataclass(frozen=True)
class FieldDef:
    """One custom-field definition as conversion sees it."""

    name: str
    label: str
    type: str
    multiple: bool

    @property
    def key(self) -> tuple[str, str, bool]:
        """What two fields must share to pair: normalized label, type, multiple."""
        return normalized_label(self.label), self.type, self.multiple


@dataclass(frozen=True)
class Pairing:
    """Lead field name -> target field name for the fields that pair; `missing`: lead fields
    with no twin (their values are not carried over)."""

    pairs: Mapping[str, str]
    missing: tuple[FieldDef, ...] = ()


def normalized_label(text: str) -> str:
    """The label as pairing compares it: lower-case, every space removed."""
    return str(text).lower().replace(" ", "")


def label_of(row: Mapping[str, Any], language: str = "en") -> str:
    """EDIT_FORM_LABEL, else LIST_COLUMN_LABEL; a per-language object is read in `language`."""
    for name in _LABELS:
        value = row.get(name)
        if isinstance(value, Mapping):
            value = value.get(language) or next((v for v in value.values() if v), "")
        if value:
            return str(value)
    return ""


def field_defs(rows: Any, language: str = "en") -> tuple[FieldDef, ...]:
    """FieldDefs from a `crm.*.userfield.list` result (rows without FIELD_NAME are skipped)."""
    if isinstance(rows, Mapping):
        rows = list(rows.values())
    if not isinstance(rows, Iterable) or isinstance(rows, str):
        return ()
    found = []
    for row in rows:
        if not isinstance(row, Mapping) or not row.get("FIELD_NAME"):
            continue
        found.append(
            FieldDef(
                name=str(row["FIELD_NAME"]),
                label=label_of(row, language),
                type=str(row.get("USER_TYPE_ID") or ""),
                multiple=str(row.get("MULTIPLE") or "N").upper() == "Y",
            )
        )
    return tuple(found)


def pair_fields(lead: Sequence[FieldDef], target: Sequence[FieldDef]) -> Pairing:
    """Pair each lead field with the first free target field of the same key, in list order.

    A field without a label never pairs (getFieldComplianceCode gives '' and the synchroniser
    skips it: userfieldsynchronizer.php:514-566,646-655)."""
    free: dict[tuple[str, str, bool], list[FieldDef]] = {}
    for field in target:
        if field.key[0]:
            free.setdefault(field.key, []).append(field)
    pairs: dict[str, str] = {}
    missing: list[FieldDef] = []
    for field in lead:
        candidates = free.get(field.key) if field.key[0] else None
        if candidates:
            pairs[field.name] = candidates.pop(0).name
        else:
            missing.append(field)
    return Pairing(pairs=pairs, missing=tuple(missing))
