"""Requisites, their addresses and the deal's requisite link: crm.requisite.{add,get,list,update,
delete,fields}, crm.requisite.preset.list, crm.address.{add,list,update,delete,fields},
crm.requisite.link.{register,get,unregister,list}.

A requisite belongs to a company or contact (ENTITY_TYPE_ID 4/3); an address belongs to a
requisite (ENTITY_TYPE_ID 8) and is keyed by (TYPE_ID, ENTITY_TYPE_ID, ENTITY_ID), so there is no
address ID. The link says which client requisite a deal uses. Texts and checks follow the legacy
proxies in crm/classes/general/restservice.php (CCrmRequisiteRestProxy :13157-13524,
CCrmRequisiteLinkRestProxy :13773-14046, CCrmAddressRestProxy :14047-14450).
https://apidocs.bitrix24.com/api-reference/crm/requisites/index.html
"""

from __future__ import annotations

from typing import Any

from sandbox import query
from sandbox.crm import entities
from sandbox.crm.context import Caller, Crm, Method, entity_id, legacy_error, object_param
from sandbox.crm.fields import COMPANY, CONTACT, DEAL, Field, Schema
from sandbox.query import int_value
from sandbox.store import Row

REQUISITE = 8  # CCrmOwnerType::Requisite
PRIMARY_ADDRESS = 1  # EntityAddressType::Primary (crm/lib/entityaddresstype.php:21)
ADDRESS_TYPES = range(1, 13)  # EntityAddressType::First..Last (:34-35)
# The portal's default presets (EntityRequisite::getDefaultPresetId): one per client type.
PRESETS = (
    {"ID": 1, "NAME": "Company", "XML_ID": "#CRM_REQUISITE_PRESET_DEF_US_COMPANY#", "SORT": 500},
    {"ID": 2, "NAME": "Individual", "XML_ID": "#CRM_REQUISITE_PRESET_DEF_US_PERSON#", "SORT": 510},
)
DEFAULT_PRESET = {COMPANY: 1, CONTACT: 2}


def _f(name: str, type_: str, title: str, **flags: Any) -> Field:
    return Field(name, type_, title, **flags)


REQUISITE_SCHEMA = Schema(
    REQUISITE,
    [
        _f("ID", "integer", "ID", read_only=True),
        _f("ENTITY_TYPE_ID", "integer", "Parent entity type", required=True, immutable=True),
        _f("ENTITY_ID", "integer", "Parent entity ID", required=True, immutable=True),
        _f("PRESET_ID", "integer", "Template", required=True),
        _f("DATE_CREATE", "datetime", "Created on", read_only=True),
        _f("DATE_MODIFY", "datetime", "Modified on", read_only=True),
        _f("CREATED_BY_ID", "user", "Created by", read_only=True),
        _f("MODIFY_BY_ID", "user", "Modified by", read_only=True),
        _f("NAME", "string", "Name", required=True),
        _f("CODE", "string", "Code"),
        _f("XML_ID", "string", "External ID"),
        _f("ORIGINATOR_ID", "string", "External source"),
        _f("ACTIVE", "char", "Active"),
        _f("ADDRESS_ONLY", "char", "Address only"),
        _f("SORT", "integer", "Sort"),
        _f("RQ_NAME", "string", "Full name"),
        _f("RQ_FIRST_NAME", "string", "First name"),
        _f("RQ_LAST_NAME", "string", "Last name"),
        _f("RQ_COMPANY_NAME", "string", "Company name"),
        _f("RQ_COMPANY_FULL_NAME", "string", "Full company name"),
        _f("RQ_EMAIL", "string", "E-mail"),
        _f("RQ_PHONE", "string", "Phone"),
        _f("RQ_VAT_ID", "string", "VAT ID"),
    ],
)
ADDRESS_FIELDS = (
    "ADDRESS_1",
    "ADDRESS_2",
    "CITY",
    "POSTAL_CODE",
    "REGION",
    "PROVINCE",
    "COUNTRY",
    "COUNTRY_CODE",
)
# The entity's own address fields -> requisite address fields (EntityAddress::getListByOwner).
OWN_ADDRESS = {
    "ADDRESS": "ADDRESS_1",
    "ADDRESS_2": "ADDRESS_2",
    "ADDRESS_CITY": "CITY",
    "ADDRESS_POSTAL_CODE": "POSTAL_CODE",
    "ADDRESS_REGION": "REGION",
    "ADDRESS_PROVINCE": "PROVINCE",
    "ADDRESS_COUNTRY": "COUNTRY",
    "ADDRESS_COUNTRY_CODE": "COUNTRY_CODE",
}


def install(crm: Crm) -> None:
    """Index requisites by owner, addresses by (type, owner type, owner)."""
    crm.table("requisite").add_index("owner", lambda r: ((r["ENTITY_TYPE_ID"], r["ENTITY_ID"]),))
    crm.table("address").add_index(
        "key", lambda r: ((r["TYPE_ID"], r["ENTITY_TYPE_ID"], r["ENTITY_ID"]),)
    )
    crm.table("requisite_link").add_index(
        "owner", lambda r: ((r["ENTITY_TYPE_ID"], r["ENTITY_ID"]),)
    )


# --- what conversion and the REST methods share ----------------------------------------------


def of_owner(crm: Crm, type_id: int, owner_id: int) -> list[Row]:
    """A client's requisites, by SORT then ID (the first is its default)."""
    table = crm.table("requisite")
    rows = [table.get(i) for i in sorted(table.lookup("owner", (type_id, owner_id)))]
    return sorted((r for r in rows if r), key=lambda r: (r.get("SORT") or 0, r["ID"]))


def create(crm: Crm, values: Row, *, user_id: int) -> int:
    """Store a requisite."""
    now = crm.now()
    row: Row = {
        "ACTIVE": "Y",
        "ADDRESS_ONLY": "N",
        "SORT": 500,
        **values,
        "ID": crm.next_id("requisite"),
        "DATE_CREATE": now,
        "DATE_MODIFY": None,
        "CREATED_BY_ID": user_id,
        "MODIFY_BY_ID": None,
    }
    crm.table("requisite").put(row)
    return row["ID"]


def put_address(crm: Crm, type_id: int, owner: tuple[int, int], values: Row) -> None:
    """Store (or replace) the address of one type of a requisite or item."""
    table = crm.table("address")
    key = (type_id, *owner)
    found = table.lookup("key", key)
    row_id = next(iter(found)) if found else crm.next_id("address")
    row: Row = {name: values.get(name) for name in ADDRESS_FIELDS}
    row.update(
        ID=row_id,
        TYPE_ID=type_id,
        ENTITY_TYPE_ID=owner[0],
        ENTITY_ID=owner[1],
        ANCHOR_TYPE_ID=values.get("ANCHOR_TYPE_ID"),
        ANCHOR_ID=values.get("ANCHOR_ID"),
        LOC_ADDR_ID=values.get("LOC_ADDR_ID") or 0,
    )
    table.put(row)


def own_address(item: Row) -> Row:
    """An item's ADDRESS_* fields as address fields (empty when every part is empty)."""
    found = {dst: item.get(src) for src, dst in OWN_ADDRESS.items() if item.get(src)}
    return found


def link(crm: Crm, deal_id: int, requisite_id: int) -> None:
    """Register which requisite a deal uses (EntityLink::register)."""
    table = crm.table("requisite_link")
    found = table.lookup("owner", (DEAL, deal_id))
    row_id = next(iter(found)) if found else crm.next_id("requisite_link")
    table.put(
        {
            "ID": row_id,
            "ENTITY_TYPE_ID": DEAL,
            "ENTITY_ID": deal_id,
            "REQUISITE_ID": requisite_id,
            "BANK_DETAIL_ID": 0,
            "MC_REQUISITE_ID": 0,
            "MC_BANK_DETAIL_ID": 0,
        }
    )


def forget_owner(crm: Crm, type_id: int, owner_id: int) -> None:
    """A client or deal was deleted: its requisites (with their addresses) and links go."""
    for row in of_owner(crm, type_id, owner_id):
        _delete_requisite(crm, row["ID"])
    links = crm.table("requisite_link")
    for row_id in sorted(links.lookup("owner", (type_id, owner_id))):
        links.delete(row_id)


def _delete_requisite(crm: Crm, requisite_id: int) -> None:
    crm.table("requisite").delete(requisite_id)
    addresses = crm.table("address")
    for type_id in ADDRESS_TYPES:
        for row_id in sorted(addresses.lookup("key", (type_id, REQUISITE, requisite_id))):
            addresses.delete(row_id)


# --- crm.requisite.* -------------------------------------------------------------------------


def _requisite(crm: Crm, requisite_id: int) -> Row:
    row = crm.table("requisite").get(requisite_id)
    if row is None:
        raise legacy_error(f"The Requisite with ID '{requisite_id}' is not found")
    return row


def requisite_add(crm: Crm, params: dict[str, Any], caller: Caller) -> int:
    """crm.requisite.add (restservice.php:13190-13250): owner and preset checked, in this order."""
    fields = object_param(params, "fields")
    type_id = int_value(fields.get("ENTITY_TYPE_ID"))
    owner_id = int_value(fields.get("ENTITY_ID"))
    preset_id = int_value(fields.get("PRESET_ID"))
    if type_id not in (COMPANY, CONTACT):
        raise legacy_error("ENTITY_TYPE_ID is not defined or invalid.")
    if owner_id <= 0:
        raise legacy_error("ENTITY_ID is not defined or invalid.")
    if preset_id <= 0:
        raise legacy_error("PRESET_ID is not defined or invalid.")
    if not entities.exists(crm, type_id, owner_id):
        raise legacy_error("Entity not found.")
    values, _ = REQUISITE_SCHEMA.internalize(fields, updating=False)
    if not str(values.get("NAME") or "").strip():
        raise legacy_error('The field "Name" is required.')
    values.update(ENTITY_TYPE_ID=type_id, ENTITY_ID=owner_id, PRESET_ID=preset_id)
    return create(crm, values, user_id=caller.user_id)


def requisite_get(crm: Crm, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """crm.requisite.get."""
    return REQUISITE_SCHEMA.render(_requisite(crm, entity_id(params)))


def requisite_list(crm: Crm, params: dict[str, Any], caller: Caller) -> query.Page:
    """crm.requisite.list: filter, order, select, 50 per page."""
    raw_filter = object_param(params, "filter", required=False)
    raw_order = object_param(params, "order", required=False)
    select = query.select_fields(params.get("select")) or ["*"]
    where = query.compile_filter(raw_filter, REQUISITE_SCHEMA.accessor)
    orders = query.compile_order(raw_order, REQUISITE_SCHEMA.accessor)
    rows, total, following = query.find(
        crm.table("requisite"), where, orders, query.parse_start(params.get("start"))
    )
    return query.Page([REQUISITE_SCHEMA.render(r, select) for r in rows], total, following)


def requisite_update(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
    """crm.requisite.update: owner fields are immutable."""
    old = _requisite(crm, entity_id(params))
    values, _ = REQUISITE_SCHEMA.internalize(object_param(params, "fields"), updating=True)
    if int_value(values.get("PRESET_ID")) <= 0:
        values.pop("PRESET_ID", None)
    row = {**old, **values, "DATE_MODIFY": crm.now(), "MODIFY_BY_ID": caller.user_id}
    crm.table("requisite").put(row)
    return True


def requisite_delete(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
    """crm.requisite.delete: its addresses go with it."""
    _delete_requisite(crm, _requisite(crm, entity_id(params))["ID"])
    return True


def requisite_fields(crm: Crm, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """crm.requisite.fields."""
    return REQUISITE_SCHEMA.describe()


def preset_list(crm: Crm, params: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
    """crm.requisite.preset.list: the portal's two default templates (ENTITY_TYPE_ID 8)."""
    return [
        {
            "ID": str(p["ID"]),
            "ENTITY_TYPE_ID": str(REQUISITE),
            "COUNTRY_ID": "122",
            "NAME": p["NAME"],
            "ACTIVE": "Y",
            "SORT": str(p["SORT"]),
            "XML_ID": p["XML_ID"],
        }
        for p in PRESETS
    ]


# --- crm.address.* ---------------------------------------------------------------------------


def _address_key(fields: dict[str, Any]) -> tuple[int, int, int]:
    type_id = int_value(fields.get("TYPE_ID"))
    owner_type = int_value(fields.get("ENTITY_TYPE_ID"))
    owner_id = int_value(fields.get("ENTITY_ID"))
    if type_id not in ADDRESS_TYPES:
        raise legacy_error("TYPE_ID is not defined or invalid.")
    if owner_type <= 0:
        raise legacy_error("ENTITY_TYPE_ID is not defined or invalid.")
    if owner_id <= 0:
        raise legacy_error("ENTITY_ID is not defined or invalid.")
    return type_id, owner_type, owner_id


def _address_owner_exists(crm: Crm, owner_type: int, owner_id: int) -> bool:
    if owner_type == REQUISITE:
        return crm.table("requisite").get(owner_id) is not None
    return entities.exists(crm, owner_type, owner_id)


def address_add(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
    """crm.address.add: "TypeAddress exists." for a second address of one type (:14466-14490)."""
    fields = object_param(params, "fields")
    type_id, owner_type, owner_id = _address_key(fields)
    if crm.table("address").lookup("key", (type_id, owner_type, owner_id)):
        raise legacy_error("TypeAddress exists.")
    if not _address_owner_exists(crm, owner_type, owner_id):
        raise legacy_error("Access denied.")
    put_address(crm, type_id, (owner_type, owner_id), _address_values(fields))
    return True


def address_update(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
    """crm.address.update: by its key; "TypeAddress not found." when there is none."""
    fields = object_param(params, "fields")
    type_id, owner_type, owner_id = _address_key(fields)
    table = crm.table("address")
    found = table.lookup("key", (type_id, owner_type, owner_id))
    if not found:
        raise legacy_error("TypeAddress not found.")
    old = table.get(next(iter(found))) or {}
    put_address(crm, type_id, (owner_type, owner_id), {**old, **_address_values(fields)})
    return True


def address_delete(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
    """crm.address.delete: by its key."""
    fields = object_param(params, "fields")
    key = _address_key(fields)
    table = crm.table("address")
    found = sorted(table.lookup("key", key))
    if not found:
        raise legacy_error("TypeAddress not found.")
    for row_id in found:
        table.delete(row_id)
    return True


def address_list(crm: Crm, params: dict[str, Any], caller: Caller) -> query.Page:
    """crm.address.list: filter by TYPE_ID/ENTITY_TYPE_ID/ENTITY_ID (and ANCHOR_*)."""
    raw_filter = object_param(params, "filter", required=False)
    where = query.compile_filter(raw_filter, _ADDRESS_ACCESS.get)
    orders = query.compile_order(object_param(params, "order", required=False), _ADDRESS_ACCESS.get)
    rows, total, following = query.find(
        crm.table("address"), where, orders, query.parse_offset(params.get("start"))
    )
    return query.Page([_render_address(r) for r in rows], total, following)


def address_fields(crm: Crm, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """crm.address.fields."""
    names = ("TYPE_ID", "ENTITY_TYPE_ID", "ENTITY_ID", *ADDRESS_FIELDS, "LOC_ADDR_ID")
    return {n: Field(n, "integer" if n.endswith("ID") else "string", n).describe() for n in names}


def _address_values(fields: dict[str, Any]) -> Row:
    values = {n: str(fields[n]) for n in ADDRESS_FIELDS if fields.get(n) not in (None, "")}
    for n in ("ANCHOR_TYPE_ID", "ANCHOR_ID", "LOC_ADDR_ID"):
        if fields.get(n) not in (None, ""):
            values[n] = int_value(fields[n])
    return values


def _render_address(row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {
        "TYPE_ID": str(row["TYPE_ID"]),
        "ENTITY_TYPE_ID": str(row["ENTITY_TYPE_ID"]),
        "ENTITY_ID": str(row["ENTITY_ID"]),
    }
    out.update({n: row.get(n) for n in ADDRESS_FIELDS})
    out["LOC_ADDR_ID"] = str(row.get("LOC_ADDR_ID") or 0)
    out["ANCHOR_TYPE_ID"] = (
        None if row.get("ANCHOR_TYPE_ID") is None else str(row["ANCHOR_TYPE_ID"])
    )
    out["ANCHOR_ID"] = None if row.get("ANCHOR_ID") is None else str(row["ANCHOR_ID"])
    return out


def _int_access(name: str) -> query.Accessor:
    return query.Accessor(lambda r: r.get(name) or 0, int_value)


def _text_access(name: str) -> query.Accessor:
    return query.Accessor(lambda r: r.get(name) or "", str, fold=True)


_ADDRESS_ACCESS = {
    **{
        n: _int_access(n)
        for n in ("ID", "TYPE_ID", "ENTITY_TYPE_ID", "ENTITY_ID", "ANCHOR_TYPE_ID", "ANCHOR_ID")
    },
    **{n: _text_access(n) for n in ADDRESS_FIELDS},
}


# --- crm.requisite.link.* --------------------------------------------------------------------


def link_register(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
    """crm.requisite.link.register (restservice.php:13873-13922).

    The requisite must belong to the deal's company or one of its contacts
    (Requisite\\EntityLink::checkConsistence); 0 clears the link.
    """
    fields = object_param(params, "fields")
    type_id = int_value(fields.get("ENTITY_TYPE_ID"))
    owner_id = int_value(fields.get("ENTITY_ID"))
    requisite_id = int_value(fields.get("REQUISITE_ID"))
    for name, value in (("ENTITY_TYPE_ID", type_id), ("ENTITY_ID", owner_id)):
        if value <= 0:
            raise legacy_error(f"{name} is not defined or invalid.")
    if requisite_id < 0:
        raise legacy_error("REQUISITE_ID is not defined or invalid.")
    deal = crm.table("deal").get(owner_id) if type_id == DEAL else None
    if deal is None:
        raise legacy_error("Access denied.")
    if requisite_id:
        requisite = crm.table("requisite").get(requisite_id)
        clients = {(COMPANY, deal.get("COMPANY_ID"))} | {
            (CONTACT, c) for c in deal.get("CONTACT_IDS") or []
        }
        if (
            requisite is None
            or (requisite["ENTITY_TYPE_ID"], requisite["ENTITY_ID"]) not in clients
        ):
            raise legacy_error("The requisite is not linked to a client of the entity.")
    link(crm, owner_id, requisite_id)
    return True


def link_get(crm: Crm, params: dict[str, Any], caller: Caller) -> dict[str, str]:
    """crm.requisite.link.get: the deal's link, IDs as strings; "Not found" when none."""
    type_id = int_value(params.get("entityTypeId"))
    owner_id = int_value(params.get("entityId"))
    if type_id <= 0:
        raise legacy_error("entityTypeId is not defined or invalid.")
    if owner_id <= 0:
        raise legacy_error("entityId is not defined or invalid.")
    table = crm.table("requisite_link")
    found = sorted(table.lookup("owner", (type_id, owner_id)))
    if not found:
        raise legacy_error("Not found")
    row = table.get(found[0]) or {}
    names = ("ENTITY_TYPE_ID", "ENTITY_ID", "REQUISITE_ID", "BANK_DETAIL_ID")
    return {n: str(row.get(n) or 0) for n in (*names, "MC_REQUISITE_ID", "MC_BANK_DETAIL_ID")}


def link_unregister(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
    """crm.requisite.link.unregister."""
    type_id = int_value(params.get("entityTypeId"))
    owner_id = int_value(params.get("entityId"))
    if type_id <= 0:
        raise legacy_error("entityTypeId is not defined or invalid.")
    if owner_id <= 0:
        raise legacy_error("entityId is not defined or invalid.")
    table = crm.table("requisite_link")
    for row_id in sorted(table.lookup("owner", (type_id, owner_id))):
        table.delete(row_id)
    return True


METHODS = {
    "crm.requisite.add": Method(requisite_add),
    "crm.requisite.get": Method(requisite_get),
    "crm.requisite.list": Method(requisite_list),
    "crm.requisite.update": Method(requisite_update),
    "crm.requisite.delete": Method(requisite_delete),
    "crm.requisite.fields": Method(requisite_fields),
    "crm.requisite.preset.list": Method(preset_list),
    "crm.address.add": Method(address_add),
    "crm.address.update": Method(address_update),
    "crm.address.delete": Method(address_delete),
    "crm.address.list": Method(address_list),
    "crm.address.fields": Method(address_fields),
    "crm.requisite.link.register": Method(link_register),
    "crm.requisite.link.get": Method(link_get),
    "crm.requisite.link.unregister": Method(link_unregister),
}
