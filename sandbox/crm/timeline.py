"""Timeline comments: crm.timeline.comment.add and crm.timeline.comment.list.

https://apidocs.bitrix24.com/api-reference/crm/timeline/comments/crm-timeline-comment-add.html
https://apidocs.bitrix24.com/api-reference/crm/timeline/comments/crm-timeline-comment-list.html
"""

from __future__ import annotations

from typing import Any

from sandbox import query
from sandbox.crm import entities
from sandbox.crm.context import D7, Caller, Crm, Method, missing_parameter
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


def install(crm: Crm) -> None:
    """Index comments by the item they belong to."""
    crm.table("comment").add_index("entity", lambda r: ((r["ENTITY_TYPE"], r["ENTITY_ID"]),))


def forget_owner(crm: Crm, type_id: int, owner_id: int) -> None:
    """An item was deleted: its comments go with it."""
    name = next((n for n, t in _TYPE_IDS.items() if t == type_id), None)
    table = crm.table("comment")
    for comment_id in sorted(table.lookup("entity", (name, owner_id))):
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
    return query.Page([_render(r, select) for r in rows], total, following)


def _render(row: Row, select: Any) -> dict[str, Any]:
    full = {
        "ID": str(row["ID"]),
        "ENTITY_ID": str(row["ENTITY_ID"]),
        "ENTITY_TYPE": row["ENTITY_TYPE"],
        "CREATED": row["CREATED"],
        "COMMENT": row["COMMENT"],
        "AUTHOR_ID": str(row["AUTHOR_ID"]),
        "FILES": {},
    }
    return {k: full[k] for k in _FIELDS if k in select}


METHODS = {
    "crm.timeline.comment.add": Method(add, D7),
    "crm.timeline.comment.list": Method(list_, D7),
}
