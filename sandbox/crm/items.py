"""crm.item.{add,update,get,list} for leads, deals, contacts and companies (entityTypeId 1-4).

The universal API names fields in camelCase (STATUS_ID of a lead is `stageId`, DATE_CREATE is
`createdTime`), returns numbers as numbers, wraps results in `items`/`item`, puts multifields in
`fm`, and unlike the legacy methods rejects unknown filter and order fields.
https://apidocs.bitrix24.com/api-reference/crm/universal/crm-item-list.html
https://apidocs.bitrix24.com/api-reference/crm/universal/crm-item-get.html
https://apidocs.bitrix24.com/api-reference/crm/universal/crm-item-add.html

Unlike crm.deal|contact|company.add, the factories of deals, contacts and companies declare
`LEAD_ID` without the ReadOnly attribute, so `leadId` is written here and read back as `LEAD_ID`
by the legacy methods (crm/lib/Service/Factory/Deal.php:415-421, Contact.php:326-332,
Company.php:271-277). Unknown fields are skipped: the controller walks the factory's field
collection, not the input (crm/lib/controller/item.php:285-305).
"""

from __future__ import annotations

from typing import Any

from sandbox import query
from sandbox.crm import dates, entities, multifields
from sandbox.crm.context import D7, Caller, Crm, Method, int_param, missing_parameter
from sandbox.crm.entities import EntityType
from sandbox.crm.fields import Field
from sandbox.errors import ApiError
from sandbox.query import Accessor
from sandbox.store import Row

_RENAMED = {
    "DATE_CREATE": "createdTime",
    "DATE_MODIFY": "updatedTime",
    "CREATED_BY_ID": "createdBy",
    "MODIFY_BY_ID": "updatedBy",
    "MOVED_BY_ID": "movedBy",
    "STATUS_ID": "stageId",
    "STATUS_SEMANTIC_ID": "stageSemanticId",
}
_UF_PREFIX = "UF_CRM_"


def camel(name: str) -> str:
    """The universal API's name for a legacy field name."""
    if name in _RENAMED:
        return _RENAMED[name]
    if name.startswith(_UF_PREFIX):
        return "ufCrm_" + name[len(_UF_PREFIX) :]
    head, *rest = name.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)


# Read-only in the legacy proxy, writable through the item factories (see the module doc).
_ITEM_WRITABLE = frozenset({"LEAD_ID"})


def _legacy_name(name: str) -> str | None:
    if name.startswith("ufCrm_"):
        return _UF_PREFIX + name[len("ufCrm_") :]
    return None


def _fields(etype: EntityType) -> dict[str, Field]:
    return {camel(f.name): f for f in etype.schema.fields.values() if f.type != "crm_multifield"}


_FIELDS = {type_id: _fields(etype) for type_id, etype in entities.TYPES.items()}


def _value(field: Field, value: Any) -> Any:
    if field.multiple:
        return list(value or [])
    if field.is_int:
        return value or 0
    if field.type == "date":
        return dates.render_date(value) or None
    return value


def render(etype: EntityType, row: Row, select: list[str], original_uf: bool) -> dict[str, Any]:
    """A stored row as an `item`."""
    every = not select or "*" in select
    out: dict[str, Any] = {}
    for name, field in _FIELDS[etype.type_id].items():
        if every or name in select:
            out[name] = _value(field, row.get(field.name))
    for key, value in row.items():
        if key.startswith(_UF_PREFIX):
            name = key if original_uf else camel(key)
            if every or name in select:
                out[name] = value
    if every or "fm" in select:
        out["fm"] = [
            {"id": item["ID"], "valueType": item["VALUE_TYPE"], "value": item["VALUE"], "typeId": t}
            for t in etype.schema.multifield_types
            for item in multifields.items(row, t)
        ]
    out["entityTypeId"] = etype.type_id
    return out


def _entity_type(params: dict[str, Any]) -> EntityType:
    etype = entities.TYPES.get(int_param(params, "entityTypeId"))
    if etype is None:
        raise ApiError("NOT_FOUND", "Smart process not found", 400)
    return etype


def _resolver(etype: EntityType) -> Any:
    fields = _FIELDS[etype.type_id]

    def resolve(name: str) -> Accessor | None:
        field = fields.get(name)
        if field is not None:
            return field.accessor()
        legacy = _legacy_name(name) or (name if name.startswith(_UF_PREFIX) else None)
        return etype.schema.accessor(legacy) if legacy else None

    return resolve


def item_list(crm: Crm, params: dict[str, Any], caller: Caller) -> query.Page:
    """crm.item.list: {"items": [...]} with total/next paging."""
    etype = _entity_type(params)
    resolve = _resolver(etype)
    try:
        where = query.compile_filter(params.get("filter"), resolve, unknown="error")
        orders = query.compile_order(params.get("order"), resolve, unknown="error", default="id")
    except query.QueryError as error:
        raise ApiError("INVALID_ARG_VALUE", str(error), 400) from error
    if orders and orders[-1].field != "id":
        orders.append(query.Order("id", resolve("id")))  # type: ignore[arg-type]
    if [o.field for o in orders] == ["id"]:
        orders = [query.Order("ID", orders[0].accessor, orders[0].descending)]
    rows, total, following = query.find(
        crm.table(etype.kind), _legacy_ids(where), orders, query.parse_start(params.get("start"))
    )
    select = query.select_fields(params.get("select"))
    original = str(params.get("useOriginalUfNames", "N")).upper() == "Y"
    return query.Page(
        {"items": [render(etype, r, select, original) for r in rows]}, total, following
    )


def item_get(crm: Crm, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """crm.item.get: {"item": {...}}."""
    etype = _entity_type(params)
    row = crm.table(etype.kind).get(int_param(params, "id"))
    if row is None:
        raise ApiError("NOT_FOUND", "Element not found", 400)
    original = str(params.get("useOriginalUfNames", "N")).upper() == "Y"
    return {"item": render(etype, row, [], original)}


def _fields_param(params: dict[str, Any]) -> dict[str, Any]:
    fields = params.get("fields")
    if not isinstance(fields, dict):
        raise missing_parameter("fields")
    return fields


def internalize(
    etype: EntityType, fields: dict[str, Any], *, updating: bool
) -> tuple[Row, dict[str, Any]]:
    """(stored values, multifield writes) from camelCase item fields; the rest is skipped."""
    known = _FIELDS[etype.type_id]
    values: Row = {}
    for name, value in fields.items():
        legacy = _legacy_name(name) or (name if name.startswith(_UF_PREFIX) else None)
        if legacy is not None:
            values[legacy] = value
            continue
        field = known.get(name)
        if field is None:
            continue
        if field.read_only and field.name not in _ITEM_WRITABLE:
            continue
        if updating and field.immutable:
            continue
        accepted, stored = field.internalize(value)
        if accepted:
            values[field.name] = stored
    return values, _fm_writes(fields.get("fm"))


def _fm_writes(raw: Any) -> dict[str, Any]:
    """`fm` items {typeId, value, valueType[, id]} as legacy multifield writes, per type.

    crm/lib/controller/item.php:1219-1252 (getFmValues): an item without typeId or value is
    skipped.
    """
    items = raw if isinstance(raw, list) else list(raw.values()) if isinstance(raw, dict) else []
    writes: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        if not isinstance(item, dict) or "typeId" not in item or "value" not in item:
            continue
        entry = {"VALUE": item["value"], "VALUE_TYPE": item.get("valueType") or ""}
        if item.get("id"):
            entry["ID"] = item["id"]
        writes.setdefault(str(item["typeId"]).upper(), []).append(entry)
    return writes


def _check_lead(crm: Crm, values: Row) -> None:
    """A `leadId` must name a lead the caller can read.

    crm/lib/Field/AbstractRelatedEntityField.php:11-40: "[Lead #N] " + the read-denied text (the
    Error has no code, so the answer's code is 0).
    """
    lead_id = values.get("LEAD_ID")
    if lead_id and crm.table("lead").get(lead_id) is None:
        raise ApiError("0", f"[Lead #{lead_id}] Access denied", 400)


def item_add(crm: Crm, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """crm.item.add: {"item": {...}} of the new item (crm/lib/controller/item.php:435-497)."""
    etype = _entity_type(params)
    values, multis = internalize(etype, _fields_param(params), updating=False)
    _check_lead(crm, values)
    new_id = entities.create(crm, etype, values, user_id=caller.user_id, multis=multis)
    original = str(params.get("useOriginalUfNames", "N")).upper() == "Y"
    row = crm.table(etype.kind).get(new_id)
    return {"item": render(etype, row or {}, [], original)}


def item_update(crm: Crm, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """crm.item.update: {"item": {...}} after the change (crm/lib/controller/item.php:503-572)."""
    etype = _entity_type(params)
    item_id = int_param(params, "id")
    if crm.table(etype.kind).get(item_id) is None:
        raise ApiError("NOT_FOUND", "Element not found", 400)
    values, multis = internalize(etype, _fields_param(params), updating=True)
    _check_lead(crm, values)
    entities.change(crm, etype, item_id, values, user_id=caller.user_id, multis=multis)
    original = str(params.get("useOriginalUfNames", "N")).upper() == "Y"
    row = crm.table(etype.kind).get(item_id)
    return {"item": render(etype, row or {}, [], original)}


def _legacy_ids(where: query.Group) -> query.Group:
    """Name `id` conditions "ID" so the ID-range optimization applies to them."""
    parts = tuple(
        query.Condition("ID", p.op, p.value, p.accessor)
        if isinstance(p, query.Condition) and p.field == "id"
        else p
        for p in where.parts
    )
    return query.Group(where.logic, parts)


METHODS = {
    "crm.item.add": Method(item_add, D7),
    "crm.item.update": Method(item_update, D7),
    "crm.item.list": Method(item_list, D7),
    "crm.item.get": Method(item_get, D7),
}
