"""Leads, deals, contacts and companies: crm.{lead,deal,contact,company}.{add,get,list,update,
delete,fields} and the platform rules that fire when they change.

Rules that are inconvenient on purpose (https://apidocs.bitrix24.com/api-reference/crm/leads/):
read-only fields (LEAD_ID on deal/contact/company, IS_RETURN_CUSTOMER, STATUS_SEMANTIC_ID ...) are
dropped without an error; a lead with CONTACT_ID/COMPANY_ID set through REST becomes a repeat lead
(IS_RETURN_CUSTOMER "Y"); a lead leaving a process stage for S/F auto-completes its open
activities; a lead leaving the success stage unbinds the entities created from it; CATEGORY_ID is
immutable in crm.deal.update; in Simple mode a lead added with NAME is converted at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox import query
from sandbox.crm import (
    activities,
    dates,
    mode,
    multifields,
    productrows,
    requisites,
    statuses,
    timeline,
    userfields,
)
from sandbox.crm.context import Caller, Crm, Method, entity_id, legacy_error, object_param
from sandbox.crm.fields import (
    COMPANY,
    COMPANY_SCHEMA,
    CONTACT,
    CONTACT_SCHEMA,
    DEAL,
    DEAL_SCHEMA,
    LEAD,
    LEAD_SCHEMA,
    Schema,
)
from sandbox.store import Row


@dataclass(frozen=True)
class EntityType:
    """One of the four classic CRM entity types."""

    kind: str
    type_id: int
    schema: Schema
    default_title: str | None

    @property
    def event_prefix(self) -> str:
        """Event name stem, e.g. ONCRMLEAD."""
        return f"ONCRM{self.kind.upper()}"


LEAD_TYPE = EntityType("lead", LEAD, LEAD_SCHEMA, "Lead #{id}")
DEAL_TYPE = EntityType("deal", DEAL, DEAL_SCHEMA, "Deal #{id}")
CONTACT_TYPE = EntityType("contact", CONTACT, CONTACT_SCHEMA, None)
COMPANY_TYPE = EntityType("company", COMPANY, COMPANY_SCHEMA, None)
TYPES = {t.type_id: t for t in (LEAD_TYPE, DEAL_TYPE, CONTACT_TYPE, COMPANY_TYPE)}

# Filter fields backed by a table index (keys are the filter's coerced values).
INDEXED = {"ORIGIN_ID": "origin", "LEAD_ID": "lead_id"}


def install(crm: Crm) -> None:
    """Create the secondary indexes the entity rules and list filters rely on."""
    for etype in TYPES.values():
        table = crm.table(etype.kind)
        table.add_index("origin", _origin_key)
        if etype.type_id != LEAD:
            table.add_index("lead_id", _lead_key)


def exists(crm: Crm, type_id: int, item_id: int) -> bool:
    """Whether a lead/deal/contact/company with this ID exists."""
    etype = TYPES.get(type_id)
    return etype is not None and crm.table(etype.kind).get(item_id) is not None


def create(
    crm: Crm,
    etype: EntityType,
    values: Row,
    *,
    user_id: int,
    multis: dict[str, Any] | None = None,
    fm: dict[str, Any] | None = None,
    via_rest: bool = True,
) -> int:
    """Add an entity from stored-form values; REST callers pass what `Schema.internalize` kept."""
    now = crm.now()
    userfields.store_values(crm, etype.kind, values, user_id=user_id)
    row: Row = {**_defaults(etype, user_id, now), **values}
    if not row.get("ASSIGNED_BY_ID"):
        row["ASSIGNED_BY_ID"] = user_id
    _validate_new(etype, row)
    row["ID"] = new_id = crm.next_id(etype.kind)
    if etype.default_title and not row.get("TITLE"):
        row["TITLE"] = etype.default_title.format(id=new_id)
    if etype.schema.multifield_types:
        row["FM"] = fm if fm is not None else multifields.apply(None, multis or {}, _mf_ids(crm))
        row.update(multifields.flags(row["FM"]))
    _sync_links(etype, row, values)
    if etype.type_id == LEAD:
        _enter_lead_stage(row, row["STATUS_ID"], user_id, now)
        if via_rest and _names_client(values):
            row["IS_RETURN_CUSTOMER"] = "Y"
    elif etype.type_id == DEAL:
        _enter_deal_stage(row, row["STAGE_ID"], user_id, now)
    crm.table(etype.kind).put(row)
    crm.emit(f"{etype.event_prefix}ADD", new_id)
    if etype.type_id == LEAD and via_rest and crm.mode == "simple" and _converts_on_add(crm, row):
        mode.convert_lead(crm, new_id, crm.conversion, user_id=user_id)
    return new_id


def change(
    crm: Crm,
    etype: EntityType,
    item_id: int,
    values: Row,
    *,
    user_id: int,
    multis: dict[str, Any] | None = None,
    via_rest: bool = True,
    complete_activities: bool = True,
) -> None:
    """Update an existing entity with stored-form values and apply the platform rules.

    `complete_activities=False` is the converter's enableActivityCompletion(false); REST has no
    such switch (crm_lead.php:2746-2781).
    """
    table = crm.table(etype.kind)
    old = table.get(item_id)
    if old is None:
        raise legacy_error("Not found")
    now = crm.now()
    userfields.store_values(crm, etype.kind, values, user_id=user_id)
    row: Row = {**old, **values, "DATE_MODIFY": now, "MODIFY_BY_ID": user_id}
    if multis:
        row["FM"] = multifields.apply(old.get("FM"), multis, _mf_ids(crm))
        row.update(multifields.flags(row["FM"]))
    _sync_links(etype, row, values)
    if etype.type_id == LEAD:
        if statuses.lead_stage(str(row["STATUS_ID"])) is None:
            row["STATUS_ID"] = old["STATUS_ID"]
        if row["STATUS_ID"] != old["STATUS_ID"]:
            _enter_lead_stage(row, row["STATUS_ID"], user_id, now)
        if via_rest and _names_client(values):
            row["IS_RETURN_CUSTOMER"] = "Y"
    elif etype.type_id == DEAL:
        # CATEGORY_ID is immutable here; a stage of another pipeline is ignored.
        if statuses.deal_stage(row["CATEGORY_ID"], str(row["STAGE_ID"])) is None:
            row["STAGE_ID"] = old["STAGE_ID"]
        if row["STAGE_ID"] != old["STAGE_ID"]:
            _enter_deal_stage(row, row["STAGE_ID"], user_id, now)
    table.put(row)
    crm.emit(f"{etype.event_prefix}UPDATE", item_id)
    if etype.type_id == LEAD:
        _after_lead_stage(crm, old, row, complete_activities)


def remove(crm: Crm, etype: EntityType, item_id: int) -> None:
    """Delete an entity with its product rows, its own activities, its comments and the files of
    its custom fields (CCrmDeal::Delete and its siblings call USER_FIELD_MANAGER->Delete,
    crm/classes/general/crm_deal.php; the file type's OnDelete removes each file)."""
    row = crm.table(etype.kind).get(item_id)
    crm.table(etype.kind).delete(item_id)
    if row is not None:
        userfields.forget_files(crm, etype.kind, row)
    productrows.forget_owner(crm, etype.type_id, item_id)
    activities.forget_owner(crm, etype.type_id, item_id)
    timeline.forget_owner(crm, etype.type_id, item_id)
    requisites.forget_owner(crm, etype.type_id, item_id)
    crm.emit(f"{etype.event_prefix}DELETE", item_id)


def unbind_children(crm: Crm, lead_id: int) -> None:
    """Clear LEAD_ID on the deals, contacts and companies created from a lead."""
    for etype in (DEAL_TYPE, CONTACT_TYPE, COMPANY_TYPE):
        table = crm.table(etype.kind)
        for child_id in sorted(table.lookup("lead_id", lead_id)):
            row = table.get(child_id)
            if row is not None:
                table.put({**row, "LEAD_ID": None})
                crm.emit(f"{etype.event_prefix}UPDATE", child_id)


def _converts_on_add(crm: Crm, row: Row) -> bool:
    r"""Whether a lead added through REST while Simple is converted at once.

    Code: Automation\Factory::runOnAdd runs the free scenario for every added lead while leads
    are off (crm/lib/automation/factory.php:235-240, restservice.php:5875-5876). Docs: only when
    NAME is filled (api-reference/crm/leads/index.md). Knob `simple_add` = "code" | "docs".
    """
    if row["STATUS_SEMANTIC_ID"] != "P":
        return False
    if crm.knob("simple_add", "docs") == "docs":
        return bool(str(row.get("NAME") or "").strip())
    return True


def _after_lead_stage(crm: Crm, old: Row, row: Row, complete_activities: bool = True) -> None:
    before, after = old["STATUS_SEMANTIC_ID"], row["STATUS_SEMANTIC_ID"]
    if before == "P" and after in ("S", "F") and complete_activities:
        # The portal's lead setting completes activities when a lead closes; REST cannot opt out.
        activities.complete_open(crm, LEAD, row["ID"])
    if before == "S" and after != "S":
        unbind_children(crm, row["ID"])


def _enter_lead_stage(row: Row, status_id: str, user_id: int, now: str) -> None:
    stage = statuses.lead_stage(status_id)
    if stage is None:
        stage = statuses.LEAD_STAGES[0]
        row["STATUS_ID"] = stage.status_id
    row["STATUS_SEMANTIC_ID"] = stage.semantic_id
    row["DATE_CLOSED"] = None if stage.semantics is None else now
    row["MOVED_BY_ID"], row["MOVED_TIME"] = user_id, now


def _enter_deal_stage(row: Row, stage_id: str, user_id: int, now: str) -> None:
    stages = statuses.deal_stages(row["CATEGORY_ID"])
    stage = next((s for s in stages if s.status_id == stage_id), stages[0])
    row["STAGE_ID"] = stage.status_id
    row["STAGE_SEMANTIC_ID"] = stage.semantic_id
    row["CLOSED"] = "N" if stage.semantics is None else "Y"
    row["IS_NEW"] = "Y" if stage is stages[0] else "N"
    row["MOVED_BY_ID"], row["MOVED_TIME"] = user_id, now


def _validate_new(etype: EntityType, row: Row) -> None:
    if etype.type_id == DEAL:
        category_id = row.get("CATEGORY_ID") or 0
        if statuses.category(category_id) is None:
            raise legacy_error(f"Category with ID {category_id} is not found.")
        row["CATEGORY_ID"] = category_id
    if etype.type_id == COMPANY and not str(row.get("TITLE") or "").strip():
        raise legacy_error('The field "Company name" is required.')


def _sync_links(etype: EntityType, row: Row, values: Row) -> None:
    """Keep the single link (CONTACT_ID / COMPANY_ID) and its plural list in step."""
    if etype.type_id in (LEAD, DEAL):
        single, plural = "CONTACT_ID", "CONTACT_IDS"
    elif etype.type_id == CONTACT:
        single, plural = "COMPANY_ID", "COMPANY_IDS"
    else:
        return
    if plural in values:
        row[single] = (row.get(plural) or [None])[0]
    elif single in values:
        row[plural] = [row[single]] if row.get(single) else []


def _names_client(values: Row) -> bool:
    return any(values.get(k) for k in ("CONTACT_ID", "COMPANY_ID", "CONTACT_IDS"))


def _defaults(etype: EntityType, user_id: int, now: str) -> Row:
    row: Row = {
        "CREATED_BY_ID": user_id,
        "MODIFY_BY_ID": user_id,
        "DATE_CREATE": now,
        "DATE_MODIFY": now,
        "OPENED": "Y",
        "LAST_ACTIVITY_BY": user_id,
        "LAST_ACTIVITY_TIME": now,
    }
    if etype.type_id == LEAD:
        row.update(
            STATUS_ID="NEW",
            CURRENCY_ID="USD",
            OPPORTUNITY=0.0,
            IS_MANUAL_OPPORTUNITY="N",
            IS_RETURN_CUSTOMER="N",
            CONTACT_IDS=[],
        )
    elif etype.type_id == DEAL:
        row.update(
            TYPE_ID="SALE",
            CATEGORY_ID=0,
            STAGE_ID="",
            CURRENCY_ID="USD",
            OPPORTUNITY=0.0,
            IS_MANUAL_OPPORTUNITY="N",
            TAX_VALUE=0.0,
            IS_RECURRING="N",
            IS_RETURN_CUSTOMER="N",
            IS_REPEATED_APPROACH="N",
            BEGINDATE=dates.add_days(now, 0),
            CLOSEDATE=dates.add_days(now, 7),
            CONTACT_IDS=[],
        )
    elif etype.type_id == CONTACT:
        row.update(EXPORT="Y", TYPE_ID="CLIENT", COMPANY_IDS=[])
    else:
        row.update(COMPANY_TYPE="CUSTOMER", IS_MY_COMPANY="N", CURRENCY_ID="USD", REVENUE=0.0)
    return row


def _mf_ids(crm: Crm) -> Any:
    return lambda: crm.next_id("multifield")


def _origin_key(row: Row) -> tuple[str, ...]:
    origin = row.get("ORIGIN_ID")
    return (str(origin).casefold(),) if origin not in (None, "") else ()


def _lead_key(row: Row) -> tuple[int, ...]:
    lead_id = row.get("LEAD_ID")
    return (lead_id,) if lead_id else ()


def read(crm: Crm, etype: EntityType, row: Row, select: list[str] | None = None) -> dict:
    """A row as the legacy get/list methods answer: every defined custom field is there."""
    defined = userfields.of_kind(crm, etype.kind)
    if defined:
        row = {
            **{d["FIELD_NAME"]: [] if d["MULTIPLE"] == "Y" else None for d in defined},
            **row,
        }
    out = etype.schema.render(row, select)
    return userfields.render_values(crm, etype.kind, row, out) if defined else out


# --- REST methods -------------------------------------------------------------------------


def _add(etype: EntityType) -> Method:
    def add(crm: Crm, params: dict[str, Any], caller: Caller) -> int:
        """crm.*.add: the new ID; unknown and read-only fields are dropped."""
        fields = object_param(params, "fields")
        object_param(params, "params", required=False)
        values, multis = etype.schema.internalize(fields, updating=False)
        return create(crm, etype, values, user_id=caller.user_id, multis=multis)

    return Method(add)


def _get(etype: EntityType) -> Method:
    def get(crm: Crm, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """crm.*.get: every field, user fields and non-empty multifields."""
        row = crm.table(etype.kind).get(entity_id(params))
        if row is None:
            raise legacy_error("Not found")
        return read(crm, etype, row)

    return Method(get)


def _list(etype: EntityType) -> Method:
    def list_(crm: Crm, params: dict[str, Any], caller: Caller) -> query.Page:
        """crm.*.list: filter, order, select, 50 per page."""
        raw_order = object_param(params, "order", required=False)
        raw_filter = object_param(params, "filter", required=False)
        select = query.select_fields(params.get("select")) or ["*"]
        where = query.compile_filter(raw_filter, etype.schema.accessor)
        orders = query.compile_order(raw_order, etype.schema.accessor)
        rows, total, following = query.find(
            crm.table(etype.kind),
            where,
            orders,
            query.parse_start(params.get("start")),
            indexes=INDEXED,
        )
        return query.Page([read(crm, etype, r, select) for r in rows], total, following)

    return Method(list_)


# What crm.*.update answers for a missing item (the get of one answers "Not found" for every
# type, crm/classes/general/restservice.php:5902): lead :5971-5973, deal :6384, contact :8425,
# company :8118.
_UPDATE_NOT_FOUND = {
    "lead": "Lead is not found",
    "deal": "Not found",
    "contact": "Contact is not found",
    "company": "Company is not found",
}


def _update(etype: EntityType) -> Method:
    def update(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
        """crm.*.update: true; unknown, read-only and immutable fields are dropped."""
        item_id = entity_id(params)
        fields = object_param(params, "fields")
        object_param(params, "params", required=False)
        if crm.table(etype.kind).get(item_id) is None:
            raise legacy_error(_UPDATE_NOT_FOUND.get(etype.kind, "Not found"))
        values, multis = etype.schema.internalize(fields, updating=True)
        change(crm, etype, item_id, values, user_id=caller.user_id, multis=multis)
        return True

    return Method(update)


def _delete(etype: EntityType) -> Method:
    def delete(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
        """crm.*.delete: true."""
        item_id = entity_id(params)
        if crm.table(etype.kind).get(item_id) is None:
            raise legacy_error("Not found")
        remove(crm, etype, item_id)
        return True

    return Method(delete)


def _fields(etype: EntityType) -> Method:
    def fields(crm: Crm, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """crm.*.fields: the field descriptions."""
        return etype.schema.describe()

    return Method(fields)


def _contact_items(etype: EntityType) -> Method:
    def contact_items(crm: Crm, params: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        """crm.lead|deal.contact.items.get: the item's contacts, typed, primary first.

        crm/classes/general/restservice.php:11185-11213 and crm/lib/binding/leadcontact.php:
        165-175 (CONTACT_ID, SORT, ROLE_ID as integers, IS_PRIMARY "Y"/"N", ordered by SORT).
        """
        row = crm.table(etype.kind).get(entity_id(params))
        if row is None:
            raise legacy_error("Not found")
        return [
            {
                "CONTACT_ID": contact_id,
                "SORT": 10 * (n + 1),
                "ROLE_ID": 0,
                "IS_PRIMARY": "Y" if n == 0 else "N",
            }
            for n, contact_id in enumerate(row.get("CONTACT_IDS") or [])
        ]

    return Method(contact_items)


METHODS = {
    "crm.lead.contact.items.get": _contact_items(LEAD_TYPE),
    "crm.deal.contact.items.get": _contact_items(DEAL_TYPE),
    **{
        f"crm.{etype.kind}.{verb}": factory(etype)
        for etype in TYPES.values()
        for verb, factory in (
            ("add", _add),
            ("get", _get),
            ("list", _list),
            ("update", _update),
            ("delete", _delete),
            ("fields", _fields),
        )
    },
}
