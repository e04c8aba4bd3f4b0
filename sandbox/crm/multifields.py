"""Multifields (PHONE, EMAIL, WEB, IM, LINK): the one place for their write and read rules.

Written as `[{"VALUE": ..., "VALUE_TYPE": ...}]`; on update an item with an existing `ID` edits that
value, `"DELETE": "Y"` (or an empty VALUE) with an `ID` removes it, and an item without `ID` is
*added* next to the existing ones. Read as `[{"ID", "VALUE_TYPE", "VALUE", "TYPE_ID"}]`.
https://apidocs.bitrix24.com/api-reference/crm/data-types.html#crm_multifield
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.query import as_list, int_value
from sandbox.store import Row

DEFAULT_VALUE_TYPE = {
    "PHONE": "WORK",
    "EMAIL": "WORK",
    "WEB": "WORK",
    "IM": "OTHER",
    "LINK": "USER",
}

# One stored item: {"ID": int, "VALUE_TYPE": str, "VALUE": str}, grouped by type under row["FM"].
Item = dict[str, Any]


def values(row: Row, type_id: str) -> list[str]:
    """The values of one multifield type."""
    return [item["VALUE"] for item in (row.get("FM") or {}).get(type_id, ())]


def items(row: Row, type_id: str) -> list[Item]:
    """The stored items of one multifield type."""
    return list((row.get("FM") or {}).get(type_id, ()))


def render(row: Row, type_ids: list[str]) -> dict[str, list[dict[str, str]]]:
    """Non-empty multifields as REST reads them."""
    fm = row.get("FM") or {}
    out = {}
    for type_id in type_ids:
        stored = fm.get(type_id)
        if stored:
            out[type_id] = [
                {
                    "ID": str(item["ID"]),
                    "VALUE_TYPE": item["VALUE_TYPE"],
                    "VALUE": item["VALUE"],
                    "TYPE_ID": type_id,
                }
                for item in stored
            ]
    return out


def apply(
    current: dict[str, list[Item]] | None,
    written: dict[str, Any],
    next_id: Callable[[], int],
) -> dict[str, list[Item]]:
    """The multifields after a REST write of `written` (per type, a list of items)."""
    result = {type_id: [dict(i) for i in stored] for type_id, stored in (current or {}).items()}
    for type_id, raw in written.items():
        entries = as_list(raw)
        if entries is None:
            continue
        stored = result.setdefault(type_id, [])
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            _apply_item(stored, type_id, entry, next_id)
        if not stored:
            del result[type_id]
    return result


def copy_all(current: dict[str, list[Item]] | None, next_id: Callable[[], int]) -> dict:
    """The same values under new IDs (what conversion gives the new contact or company)."""
    return {
        type_id: [
            {"ID": next_id(), "VALUE_TYPE": i["VALUE_TYPE"], "VALUE": i["VALUE"]} for i in stored
        ]
        for type_id, stored in (current or {}).items()
        if stored
    }


def flags(fm: dict[str, list[Item]] | None) -> dict[str, str]:
    """HAS_PHONE / HAS_EMAIL / HAS_IMOL, derived from the stored values."""
    fm = fm or {}
    imol = any(i["VALUE_TYPE"] == "OPENLINE" for i in fm.get("IM", ()))
    return {
        "HAS_PHONE": "Y" if fm.get("PHONE") else "N",
        "HAS_EMAIL": "Y" if fm.get("EMAIL") else "N",
        "HAS_IMOL": "Y" if imol else "N",
    }


def _apply_item(stored: list[Item], type_id: str, entry: dict, next_id: Callable[[], int]) -> None:
    item_id = int_value(entry.get("ID", 0))
    value = str(entry.get("VALUE") or "").strip()
    value_type = str(entry.get("VALUE_TYPE") or "").strip() or DEFAULT_VALUE_TYPE[type_id]
    if item_id > 0:
        position = next((n for n, i in enumerate(stored) if i["ID"] == item_id), None)
        if position is None:
            return
        if str(entry.get("DELETE", "")).upper() == "Y" or not value:
            del stored[position]
        else:
            stored[position] = {"ID": item_id, "VALUE_TYPE": value_type, "VALUE": value}
        return
    if value:
        stored.append({"ID": next_id(), "VALUE_TYPE": value_type, "VALUE": value})
