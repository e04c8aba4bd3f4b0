"""crm.duplicate.findbycomm: leads, contacts and companies holding given phones or e-mails.

Up to 20 values are looked at (the rest are ignored); each value yields at most 20 items, counted
across LEAD, then CONTACT, then COMPANY, so a value with 20 lead matches hides its contacts and
companies. Phones match on digits without the extension; e-mails case-insensitively. Nothing found
is an empty array.
https://apidocs.bitrix24.com/api-reference/crm/duplicates/crm-duplicate-find-by-comm.html
"""

from __future__ import annotations

import re
from typing import Any

from sandbox.crm import entities, multifields
from sandbox.crm.context import Caller, Crm, Method, legacy_error
from sandbox.errors import ApiError
from sandbox.query import as_list
from sandbox.store import Row

MAX_VALUES = 20
MAX_MATCHES = 20
_SEARCHED = (entities.LEAD_TYPE, entities.CONTACT_TYPE, entities.COMPANY_TYPE)
_NOT_DIGIT = re.compile(r"\D")
_EXTENSION = re.compile(r"(ext|доб|#|,|;|x\s*\d)", re.IGNORECASE)


def normalize(type_id: str, value: str) -> str:
    """The form values are compared in: phone digits without extension, lower-case e-mail."""
    if type_id == "PHONE":
        return _NOT_DIGIT.sub("", _EXTENSION.split(value, maxsplit=1)[0])
    return value.strip().casefold()


def install(crm: Crm) -> None:
    """Index leads, contacts and companies by normalized phone and e-mail."""
    for etype in _SEARCHED:
        crm.table(etype.kind).add_index("comm", _comm_keys)


def _comm_keys(row: Row) -> list[tuple[str, str]]:
    keys = []
    for type_id in ("PHONE", "EMAIL"):
        for value in multifields.values(row, type_id):
            normalized = normalize(type_id, value)
            if normalized:
                keys.append((type_id, normalized))
    return keys


def find_by_comm(crm: Crm, params: dict[str, Any], caller: Caller) -> Any:
    """crm.duplicate.findbycomm."""
    type_id = str(params.get("type") or "").upper()
    if type_id not in ("EMAIL", "PHONE"):
        if not type_id:
            raise ApiError(
                "Communication type is not defined", "Parameter 'type' is required.", 400
            )
        raise legacy_error(f"Communication type '{type_id}' is not supported in current context.")
    values = as_list(params.get("values"))
    if not values:
        raise ApiError(
            "Communication values is not defined", "Parameter 'values' is required.", 400
        )
    wanted = str(params.get("entity_type") or "").upper()
    if wanted == "DEAL":
        raise legacy_error("Deal is not supported in current context.")
    searched = [t for t in _SEARCHED if t.kind.upper() == wanted] or list(_SEARCHED)
    found: dict[str, list[int]] = {}
    seen: set[str] = set()
    for value in values:
        if not isinstance(value, str) or not value:
            continue
        key = normalize(type_id, value)
        if not key or key in seen:
            continue
        seen.add(key)
        budget = MAX_MATCHES
        for etype in searched:
            if budget <= 0:
                break
            ids = sorted(crm.table(etype.kind).lookup("comm", (type_id, key)))[:budget]
            budget -= len(ids)
            bucket = found.setdefault(etype.kind.upper(), []) if ids else None
            for item_id in ids:
                if bucket is not None and item_id not in bucket:
                    bucket.append(item_id)
        if len(seen) >= MAX_VALUES:
            break
    return found or []


METHODS = {"crm.duplicate.findbycomm": Method(find_by_comm)}
