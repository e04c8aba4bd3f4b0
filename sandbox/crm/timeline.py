"""Timeline comments and timeline bindings: crm.timeline.comment.{add,list} and
crm.timeline.bindings.{bind,unbind,list,fields}.

A comment is a timeline entry bound to one or more items (b_crm_timeline_bind); the comment list of
an item goes through those bindings (crm/classes/general/restservice.php:16038-16060, filter
`BINDINGS.ENTITY_ID`/`BINDINGS.ENTITY_TYPE_ID`) and names the item asked for.
https://apidocs.bitrix24.com/api-reference/crm/timeline/comments/crm-timeline-comment-add.html
https://apidocs.bitrix24.com/api-reference/crm/timeline/comments/crm-timeline-comment-list.html
https://apidocs.bitrix24.com/api-reference/crm/timeline/bindings/index.html
"""

from __future__ import annotations

from typing import Any

from sandbox import query
from sandbox.crm import entities
from sandbox.crm.context import (
    D7,
    LEGACY,
    OPEN,
    Caller,
    Crm,
    Method,
    legacy_error,
    missing_parameter,
)
from sandbox.errors import ApiError
from sandbox.query import Accessor, int_value
from sandbox.store import Row

_TYPE_IDS = {"lead": 1, "deal": 2, "contact": 3, "company": 4}
_FIELDS = ("ID", "ENTITY_ID", "ENTITY_TYPE", "CREATED", "COMMENT", "AUTHOR_ID", "FILES")
_ORDERABLE = {
    "ID": Accessor(lambda r: r["ID"], int_value),
    "CREATED": Accessor(lambda r: r["CREATED"], str),
    "AUTHOR_ID": Accessor(lambda r: r["AUTHOR_ID"], int_value),
}


_TYPE_NAMES = {t: n for n, t in _TYPE_IDS.items()}


def bindings(row: Row) -> list[tuple[str, int]]:
    """The items a timeline entry is bound to: (lower-case type name, ID), first = where made."""
    stored = row.get("BINDINGS")
    if stored:
        return [(str(t), int(i)) for t, i in stored]
    return [(row["ENTITY_TYPE"], row["ENTITY_ID"])]


def install(crm: Crm) -> None:
    """Index comments by every item they are bound to."""
    crm.table("comment").add_index("entity", bindings)


def bound_to(crm: Crm, type_id: int, owner_id: int) -> list[int]:
    """IDs of the timeline entries bound to an item, ascending."""
    key = (_TYPE_NAMES.get(type_id, ""), owner_id)
    return sorted(crm.table("comment").lookup("entity", key))


def bind(crm: Crm, entry_id: int, type_id: int, owner_id: int) -> None:
    """Bind a timeline entry to one more item (an upsert: a repeat changes nothing)."""
    table = crm.table("comment")
    row = table.get(entry_id)
    if row is None:
        return
    pair = (_TYPE_NAMES[type_id], owner_id)
    current = bindings(row)
    if pair not in current:
        table.put({**row, "BINDINGS": [list(b) for b in [*current, pair]]})


def forget_owner(crm: Crm, type_id: int, owner_id: int) -> None:
    """An item was deleted: comments bound only to it go, the others lose that binding."""
    pair = (_TYPE_NAMES.get(type_id, ""), owner_id)
    table = crm.table("comment")
    for comment_id in sorted(table.lookup("entity", pair)):
        row = table.get(comment_id)
        if row is None:
            continue
        rest = [b for b in bindings(row) if b != pair]
        if rest:
            table.put({**row, "BINDINGS": [list(b) for b in rest]})
        else:
            table.delete(comment_id)


def add(crm: Crm, params: dict[str, Any], caller: Caller) -> int:
    """crm.timeline.comment.add: a comment on a lead, deal, contact or company."""
    fields = params.get("fields")
    if not isinstance(fields, dict):
        raise missing_parameter("fields")
    for name in ("ENTITY_ID", "ENTITY_TYPE"):
        if fields.get(name) in (None, ""):
            raise missing_parameter(name)
    entity_type = str(fields["ENTITY_TYPE"]).lower()
    owner_id = int_value(fields["ENTITY_ID"])
    type_id = _TYPE_IDS.get(entity_type)
    if type_id is None or not entities.exists(crm, type_id, owner_id):
        raise ApiError("NOT_FOUND", "Not found.", 400)
    comment = str(fields.get("COMMENT") or "")
    if not comment.strip():
        raise ApiError("INVALID_ARG_VALUE", "Empty comment", 400)
    author = int_value(fields.get("AUTHOR_ID")) or caller.user_id
    row: Row = {
        "ID": crm.next_id("comment"),
        "ENTITY_ID": owner_id,
        "ENTITY_TYPE": entity_type,
        "CREATED": crm.now(),
        "COMMENT": comment,
        "AUTHOR_ID": author,
    }
    crm.table("comment").put(row)
    return row["ID"]


def list_(crm: Crm, params: dict[str, Any], caller: Caller) -> query.Page:
    """crm.timeline.comment.list: the comments of one item (ENTITY_ID + ENTITY_TYPE required)."""
    raw_filter = params.get("filter")
    if not isinstance(raw_filter, dict) or any(
        raw_filter.get(k) in (None, "") for k in ("ENTITY_ID", "ENTITY_TYPE")
    ):
        raise ApiError("INVALID_ARG_VALUE", "ENTITY_ID and ENTITY_TYPE are required in filter", 400)
    key = (str(raw_filter["ENTITY_TYPE"]).lower(), int_value(raw_filter["ENTITY_ID"]))
    table = crm.table("comment")
    orders = query.compile_order(params.get("order"), _ORDERABLE.get)
    rows, total, following = query.find(
        table,
        query.Group("AND", ()),
        orders,
        query.parse_start(params.get("start")),
        candidates=table.lookup("entity", key),
    )
    select = [f for f in query.select_fields(params.get("select")) if f in _FIELDS] or _FIELDS
    return query.Page([_render(r, select, key) for r in rows], total, following)


def _render(row: Row, select: Any, entity: tuple[str, int]) -> dict[str, Any]:
    full = {
        "ID": str(row["ID"]),
        "ENTITY_ID": str(entity[1]),
        "ENTITY_TYPE": entity[0],
        "CREATED": row["CREATED"],
        "COMMENT": row["COMMENT"],
        "AUTHOR_ID": str(row["AUTHOR_ID"]),
        "FILES": {},
    }
    return {k: full[k] for k in _FIELDS if k in select}


# --- crm.timeline.bindings.* (crm/classes/general/restservice.php:16188-16387) ---------------


def _binding_fields(params: dict[str, Any]) -> tuple[int, int, int]:
    """(timeline entry ID, entity type ID, entity ID), or the proxy's RestException texts."""
    fields = params.get("fields")
    fields = fields if isinstance(fields, dict) else {}
    entry_id = int_value(fields.get("OWNER_ID"))
    if entry_id <= 0:
        raise legacy_error("OWNER_ID is not defined or invalid.")
    owner_id = int_value(fields.get("ENTITY_ID"))
    if owner_id <= 0:
        raise legacy_error("ENTITY_ID is not defined or invalid.")
    type_id = _TYPE_IDS.get(str(fields.get("ENTITY_TYPE") or "").lower())
    if type_id is None:
        raise legacy_error("ENTITY_TYPE is not defined or invalid.")
    return entry_id, type_id, owner_id


def bindings_bind(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
    """crm.timeline.bindings.bind: true; `false` (HTTP 200, no error) when access is denied.

    restservice.php:16260-16304: without update permission on the item the proxy appends
    'Access denied.' to an error list nobody reads and returns false, which REST sends as the
    result. The binding is an upsert, so a repeat is true again. A missing item is denied too
    (checkUpdatePermission finds nothing to allow).
    """
    entry_id, type_id, owner_id = _binding_fields(params)
    if not caller.crm_access or not entities.exists(crm, type_id, owner_id):
        return False
    bind(crm, entry_id, type_id, owner_id)
    return True


def bindings_unbind(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
    """crm.timeline.bindings.unbind: true; "Not found." when no such binding (:16305-16365)."""
    entry_id, type_id, owner_id = _binding_fields(params)
    if not caller.crm_access or not entities.exists(crm, type_id, owner_id):
        return False
    table = crm.table("comment")
    row = table.get(entry_id)
    pair = (_TYPE_NAMES[type_id], owner_id)
    if row is None or pair not in bindings(row):
        raise legacy_error("Not found.")
    rest = [list(b) for b in bindings(row) if b != pair]
    if rest:
        table.put({**row, "BINDINGS": rest})
    else:
        table.delete(entry_id)
    return True


def bindings_list(crm: Crm, params: dict[str, Any], caller: Caller) -> query.Page:
    """crm.timeline.bindings.list: filter[OWNER_ID] required; values as the database gives them.

    restservice.php:16232-16258: [{OWNER_ID, ENTITY_ID, ENTITY_TYPE (lower-case name)}].
    """
    raw_filter = params.get("filter")
    entry_id = int_value(raw_filter.get("OWNER_ID")) if isinstance(raw_filter, dict) else 0
    if entry_id <= 0:
        raise legacy_error("OWNER_ID is not defined or invalid.")
    row = crm.table("comment").get(entry_id)
    found = [
        {"OWNER_ID": str(entry_id), "ENTITY_ID": str(i), "ENTITY_TYPE": t}
        for t, i in (bindings(row) if row is not None else [])
    ]
    start = max(0, query.parse_start(params.get("start")))
    page = found[start : start + query.PAGE_SIZE]
    following = start + query.PAGE_SIZE if start + query.PAGE_SIZE < len(found) else None
    return query.Page(page, len(found), following)


def bindings_fields(crm: Crm, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """crm.timeline.bindings.fields (restservice.php:16193-16226)."""
    described = {
        "OWNER_ID": ("integer", "Timeline entry ID"),
        "ENTITY_ID": ("integer", "Entity ID"),
        "ENTITY_TYPE": ("string", "Entity type"),
    }
    return {
        name: {
            "type": type_,
            "isRequired": True,
            "isReadOnly": False,
            "isImmutable": True,
            "isMultiple": False,
            "isDynamic": False,
            "title": title,
        }
        for name, (type_, title) in described.items()
    }


METHODS = {
    "crm.timeline.comment.add": Method(add, D7),
    "crm.timeline.comment.list": Method(list_, D7),
    "crm.timeline.bindings.bind": Method(bindings_bind, OPEN),
    "crm.timeline.bindings.unbind": Method(bindings_unbind, OPEN),
    "crm.timeline.bindings.list": Method(bindings_list, LEGACY),
    "crm.timeline.bindings.fields": Method(bindings_fields, LEGACY),
}
