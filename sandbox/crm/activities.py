"""Activities and their bindings: crm.activity.{add,get,list,update,delete,fields} and
crm.activity.binding.{add,delete,list,move}.

An activity is bound to one or more CRM items (at most 100) and has a primary owner,
OWNER_TYPE_ID/OWNER_ID, kept in the activity row apart from the binding table. A list filter on
OWNER_* matches the primary owner only; `filter[BINDINGS]` matches every binding
(crm/classes/general/crm_activity.php:1720-1723 vs 2748-2751). The binding methods rewrite the
bindings through CCrmActivity::Update, which moves the owner (see `_owner_after_update`).
binding.move only moves between items of one type (lead -> deal fails), so lead -> deal is
binding.add then binding.delete; the last binding cannot be deleted.
https://apidocs.bitrix24.com/api-reference/crm/timeline/activities/activity-base/crm-activity-list.html
https://apidocs.bitrix24.com/api-reference/crm/timeline/activities/binding/index.html
https://apidocs.bitrix24.com/tutorials/crm/how-to-edit-crm-objects/how-to-move-activity-between-objects.html
"""

from __future__ import annotations

from typing import Any

from sandbox import query
from sandbox.crm import entities
from sandbox.crm.context import (
    D7,
    Caller,
    Crm,
    Method,
    entity_id,
    int_param,
    legacy_error,
    object_param,
)
from sandbox.crm.fields import Field, Schema
from sandbox.errors import ApiError
from sandbox.query import as_list, int_value
from sandbox.store import Row

MAX_BINDINGS = 100
MEETING, CALL, TASK, EMAIL = 1, 2, 3, 4
WAITING, COMPLETED, AUTO_COMPLETED = 1, 2, 3
_NEEDS_COMMUNICATIONS = (MEETING, CALL, EMAIL)
_PROVIDERS = {
    MEETING: ("CRM_MEETING", "MEETING"),
    CALL: ("VOXIMPLANT_CALL", "CALL"),
    TASK: ("CRM_TASKS_TASK", "TASK"),
    EMAIL: ("CRM_EMAIL", "EMAIL"),
}
# crm/classes/general/restservice.php:9811,9859 (CCrmActivityRestProxy)
NOT_FOUND = "Activity is not found."


def _f(name: str, type_: str, title: str, **flags: Any) -> Field:
    return Field(name, type_, title, **flags)


ACTIVITY_SCHEMA = Schema(
    6,
    [
        _f("ID", "integer", "ID", read_only=True),
        _f("OWNER_ID", "integer", "Owner ID", required=True, immutable=True),
        _f("OWNER_TYPE_ID", "crm_enum_ownertype", "Owner type", required=True, immutable=True),
        _f("TYPE_ID", "crm_enum_activitytype", "Type", required=True, immutable=True),
        _f("PROVIDER_ID", "string", "Provider ID"),
        _f("PROVIDER_TYPE_ID", "string", "Provider type ID"),
        _f("PROVIDER_GROUP_ID", "string", "Provider group ID"),
        _f("ASSOCIATED_ENTITY_ID", "integer", "Associated entity ID"),
        _f("SUBJECT", "string", "Subject"),
        _f("CREATED", "datetime", "Created on", read_only=True),
        _f("LAST_UPDATED", "datetime", "Updated on", read_only=True),
        _f("START_TIME", "datetime", "Start time"),
        _f("END_TIME", "datetime", "End time"),
        _f("DEADLINE", "datetime", "Deadline", read_only=True),
        _f("COMPLETED", "char", "Completed"),
        _f("STATUS", "crm_enum_activitystatus", "Status"),
        _f("RESPONSIBLE_ID", "user", "Responsible person", required=True),
        _f("PRIORITY", "crm_enum_activitypriority", "Priority"),
        _f("NOTIFY_TYPE", "crm_enum_activitynotifytype", "Notification type"),
        _f("NOTIFY_VALUE", "integer", "Notification value"),
        _f("DESCRIPTION", "string", "Description"),
        _f("DESCRIPTION_TYPE", "crm_enum_contenttype", "Description type"),
        _f("DIRECTION", "crm_enum_activitydirection", "Direction"),
        _f("LOCATION", "string", "Location"),
        _f("SETTINGS", "object", "Settings"),
        _f("ORIGINATOR_ID", "string", "Data source ID"),
        _f("ORIGIN_ID", "string", "Item ID in data source"),
        _f("ORIGIN_VERSION", "string", "Original version", listed=False),
        _f("AUTHOR_ID", "user", "Created by", read_only=True),
        _f("EDITOR_ID", "user", "Modified by", read_only=True),
        _f("PROVIDER_PARAMS", "object", "Provider parameters"),
        _f("PROVIDER_DATA", "string", "Provider data"),
        _f("RESULT_MARK", "integer", "Result mark"),
        _f("RESULT_VALUE", "double", "Result value"),
        _f("RESULT_SUM", "double", "Result sum"),
        _f("RESULT_CURRENCY_ID", "crm_currency", "Result currency"),
        _f("RESULT_STATUS", "integer", "Result status"),
        _f("RESULT_STREAM", "integer", "Result stream"),
        _f("RESULT_SOURCE_ID", "string", "Result source"),
        _f("AUTOCOMPLETE_RULE", "integer", "Auto-complete rule"),
        _f(
            "COMMUNICATIONS",
            "crm_activity_communication",
            "Communications",
            multiple=True,
            listed=False,
        ),
        _f("FILES", "diskfile", "Files", multiple=True, listed=False),
    ],
)
INDEXED = {"ORIGIN_ID": "origin", "OWNER_ID": "owner"}
CONTACT, COMPANY = 3, 4


def install(crm: Crm) -> None:
    """Index activities by binding (type, id), by primary OWNER_ID and by ORIGIN_ID."""
    table = crm.table("activity")
    table.add_index("binding", lambda row: (tuple(b) for b in row["BINDINGS"]))
    table.add_index("owner", lambda row: (row["OWNER_ID"],))
    table.add_index(
        "origin",
        lambda row: (str(row["ORIGIN_ID"]).casefold(),) if row.get("ORIGIN_ID") else (),
    )


def create(crm: Crm, values: Row, bindings: list[tuple[int, int]], *, user_id: int) -> int:
    """Store a new activity bound to `bindings` (the first is its owner)."""
    now = crm.now()
    row: Row = {
        "COMPLETED": "N",
        "PRIORITY": 2,
        "DIRECTION": 0,
        "DESCRIPTION": "",
        "DESCRIPTION_TYPE": 1,
        "NOTIFY_TYPE": 0,
        "NOTIFY_VALUE": 0,
        "LOCATION": "",
        "ASSOCIATED_ENTITY_ID": 0,
        "RESULT_MARK": 0,
        "RESULT_STATUS": 0,
        "RESULT_STREAM": 0,
        "AUTOCOMPLETE_RULE": 0,
        "COMMUNICATIONS": [],
        "FILES": [],
        "START_TIME": now,
        "END_TIME": now,
        **values,
        "CREATED": now,
        "LAST_UPDATED": now,
        "AUTHOR_ID": user_id,
        "EDITOR_ID": user_id,
    }
    provider, provider_type = _PROVIDERS.get(row.get("TYPE_ID"), ("", ""))
    row.setdefault("PROVIDER_ID", provider)
    row.setdefault("PROVIDER_TYPE_ID", provider_type)
    row["ID"] = crm.next_id("activity")
    row["STATUS"] = COMPLETED if row["COMPLETED"] == "Y" else WAITING
    row["DEADLINE"] = row["END_TIME"] if row.get("TYPE_ID") == TASK else row["START_TIME"]
    _bind(row, [list(b) for b in dict.fromkeys(bindings)])
    crm.table("activity").put(row)
    return row["ID"]


def bound_to(crm: Crm, type_id: int, owner_id: int) -> list[int]:
    """IDs of activities bound to an item, ascending."""
    return sorted(crm.table("activity").lookup("binding", (type_id, owner_id)))


def complete_open(crm: Crm, type_id: int, owner_id: int) -> None:
    """Auto-complete the open activities of an item (what a closing lead does to them)."""
    table = crm.table("activity")
    now = crm.now()
    for activity_id in bound_to(crm, type_id, owner_id):
        row = table.get(activity_id)
        if row is not None and row["COMPLETED"] != "Y":
            table.put({**row, "COMPLETED": "Y", "STATUS": AUTO_COMPLETED, "LAST_UPDATED": now})


def move_all(crm: Crm, source: tuple[int, int], target: tuple[int, int]) -> None:
    """Rebind every activity of `source` to `target` (the converter's "keep activities open")."""
    table = crm.table("activity")
    for activity_id in bound_to(crm, *source):
        row = table.get(activity_id)
        if row is None:
            continue
        bindings = [b for b in row["BINDINGS"] if tuple(b) != source]
        if list(target) not in bindings:
            bindings.insert(0, list(target))
        table.put(_bind(dict(row), bindings))


def add_binding(crm: Crm, activity_id: int, target: tuple[int, int]) -> None:
    """Bind an activity to one more item, keeping its owner (CAllCrmActivity::SaveBindings as
    conversion calls it, crm_activity.php:3300-3356); a repeat changes nothing."""
    table = crm.table("activity")
    row = table.get(activity_id)
    if row is None or list(target) in row["BINDINGS"] or len(row["BINDINGS"]) >= MAX_BINDINGS:
        return
    table.put({**row, "BINDINGS": [*row["BINDINGS"], list(target)]})


def forget_owner(crm: Crm, type_id: int, owner_id: int) -> None:
    """An item was deleted: delete activities bound only to it, unbind the others."""
    table = crm.table("activity")
    for activity_id in bound_to(crm, type_id, owner_id):
        row = table.get(activity_id)
        if row is None:
            continue
        bindings = [b for b in row["BINDINGS"] if tuple(b) != (type_id, owner_id)]
        if bindings:
            table.put(_bind(dict(row), bindings))
        else:
            table.delete(activity_id)


def _bind(row: Row, bindings: list[list[int]]) -> Row:
    row["BINDINGS"] = bindings
    row["OWNER_TYPE_ID"], row["OWNER_ID"] = bindings[0]
    return row


def _owner_after_update(bindings: list[list[int]]) -> list[int]:
    """The owner CCrmActivity::Update gives an activity whose BINDINGS it rewrites: the one
    binding, or - several - the last that is not a contact or company, else the first
    (crm/classes/general/crm_activity.php:557-577, appendOwnerFromBindings :1219-1243)."""
    if len(bindings) == 1:
        return bindings[0]
    others = [b for b in bindings if b[0] not in (CONTACT, COMPANY)]
    return others[-1] if others else bindings[0]


def _rebind(row: Row, bindings: list[list[int]]) -> Row:
    """The bindings methods' update (crm/lib/controller/activity/binding.php:262-281)."""
    row["BINDINGS"] = bindings
    row["OWNER_TYPE_ID"], row["OWNER_ID"] = _owner_after_update(bindings)
    return row


# --- crm.activity.* --------------------------------------------------------------------------


def add(crm: Crm, params: dict[str, Any], caller: Caller) -> int:
    """crm.activity.add: a new activity bound to its owner (and any extra BINDINGS)."""
    fields = object_param(params, "fields")
    values, _ = ACTIVITY_SCHEMA.internalize(fields, updating=False)
    type_id = values.get("TYPE_ID") or 0
    if type_id not in range(1, 7):
        raise legacy_error("The field TYPE_ID is not defined or invalid.")
    if not str(values.get("SUBJECT") or "").strip():
        raise legacy_error("The field SUBJECT is not defined or empty.")
    if (values.get("RESPONSIBLE_ID") or 0) <= 0:
        raise legacy_error("The field RESPONSIBLE_ID is not defined or invalid.")
    communications = [c for c in as_list(fields.get("COMMUNICATIONS")) or [] if isinstance(c, dict)]
    if type_id in _NEEDS_COMMUNICATIONS and not communications:
        raise legacy_error("The field COMMUNICATIONS is not defined or invalid.")
    values["COMMUNICATIONS"] = [dict(c) for c in communications]
    values["FILES"] = []  # file bodies are not kept
    owner = (values.get("OWNER_TYPE_ID") or 0, values.get("OWNER_ID") or 0)
    if owner[0] <= 0 or owner[1] <= 0:
        raise legacy_error(
            "Could not build binding. Please ensure that owner info and communications are "
            "defined correctly."
        )
    bindings = [owner, *_extra_bindings(fields.get("BINDINGS"))]
    if not all(entities.exists(crm, t, i) for t, i in bindings):
        raise legacy_error("Access denied.")
    return create(crm, values, bindings[:MAX_BINDINGS], user_id=caller.user_id)


def get(crm: Crm, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """crm.activity.get: one activity (COMMUNICATIONS only through list with select)."""
    row = crm.table("activity").get(entity_id(params))
    if row is None:
        raise legacy_error(NOT_FOUND)
    return ACTIVITY_SCHEMA.render(row)


def list_(crm: Crm, params: dict[str, Any], caller: Caller) -> query.Page:
    """crm.activity.list: by filter, START_TIME ascending. OWNER_TYPE_ID/OWNER_ID are columns of
    the activity (its primary owner, crm_activity.php:1720-1723); BINDINGS joins the binding
    table (crm_activity.php:2748-2751)."""
    raw_order = object_param(params, "order", required=False)
    raw_filter = object_param(params, "filter", required=False)
    select = query.select_fields(params.get("select")) or ["*"]
    rest, candidates = _binding_candidates(crm, raw_filter)
    where = query.compile_filter(rest, ACTIVITY_SCHEMA.accessor)
    orders = query.compile_order(raw_order, ACTIVITY_SCHEMA.accessor, default="START_TIME")
    if not orders or orders[-1].field != "ID":
        orders.append(query.Order("ID", ACTIVITY_SCHEMA.fields["ID"].accessor()))
    rows, total, following = query.find(
        crm.table("activity"),
        where,
        orders,
        query.parse_start(params.get("start")),
        indexes=INDEXED,
        candidates=candidates,
    )
    return query.Page([ACTIVITY_SCHEMA.render(r, select) for r in rows], total, following)


def update(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
    """crm.activity.update: COMPLETED "Y" completes it (the documented way to close one)."""
    activity_id = entity_id(params)
    fields = object_param(params, "fields")
    table = crm.table("activity")
    old = table.get(activity_id)
    if old is None:
        raise legacy_error(NOT_FOUND)
    values, _ = ACTIVITY_SCHEMA.internalize(fields, updating=True)
    values.pop("COMMUNICATIONS", None)
    row = {**old, **values, "LAST_UPDATED": crm.now(), "EDITOR_ID": caller.user_id}
    if "COMPLETED" in values and values["COMPLETED"] != old["COMPLETED"]:
        row["STATUS"] = COMPLETED if values["COMPLETED"] == "Y" else WAITING
    row["DEADLINE"] = row["END_TIME"] if row.get("TYPE_ID") == TASK else row["START_TIME"]
    table.put(row)
    return True


def delete(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
    """crm.activity.delete."""
    activity_id = entity_id(params)
    table = crm.table("activity")
    if table.get(activity_id) is None:
        raise legacy_error(NOT_FOUND)
    table.delete(activity_id)
    return True


def fields(crm: Crm, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """crm.activity.fields."""
    return ACTIVITY_SCHEMA.describe()


def _extra_bindings(raw: Any) -> list[tuple[int, int]]:
    found = []
    for item in as_list(raw) or []:
        if isinstance(item, dict):
            pair = (int_value(item.get("OWNER_TYPE_ID")), int_value(item.get("OWNER_ID")))
            if pair[0] > 0 and pair[1] > 0:
                found.append(pair)
    return found


def _binding_candidates(crm: Crm, raw_filter: Any) -> tuple[Any, set[int] | None]:
    """Split the owner/BINDINGS conditions off a filter and resolve them through the bindings."""
    if not isinstance(raw_filter, dict):
        return raw_filter, None
    rest = dict(raw_filter)
    alternatives = [
        (_as_set(item.get("OWNER_TYPE_ID")), _as_set(item.get("OWNER_ID")))
        for item in as_list(rest.pop("BINDINGS", None)) or []
        if isinstance(item, dict)
    ]
    return rest, _bound(crm, alternatives) if alternatives else None


def _as_set(value: Any) -> set[int] | None:
    if value is None or value == "":
        return None
    items = as_list(value)
    return {int_value(v) for v in (items if items is not None else [value])}


def _bound(crm: Crm, alternatives: list[tuple[set[int] | None, set[int] | None]]) -> set[int]:
    """Activities with a binding matching any (types, owner IDs) alternative."""
    table = crm.table("activity")
    found: set[int] = set()
    for types, owners in alternatives:
        if types is not None and owners is not None:
            for type_id in types:
                for owner_id in owners:
                    found |= table.lookup("binding", (type_id, owner_id))
            continue
        for key, ids in table.indexes["binding"].ids_by_key.items():
            if (types is None or key[0] in types) and (owners is None or key[1] in owners):
                found |= ids
    return found


# --- crm.activity.binding.* ------------------------------------------------------------------


def _activity(crm: Crm, params: dict[str, Any]) -> Row:
    row = crm.table("activity").get(int_param(params, "activityId"))
    if row is None:
        raise ApiError("NOT_FOUND", "Activity not found", 400)
    return row


def _target(crm: Crm, params: dict[str, Any], prefix: str = "entity") -> tuple[int, int]:
    type_key, id_key = (
        (f"{prefix}TypeId", f"{prefix}Id")
        if prefix == "entity"
        else (f"{prefix}EntityTypeId", f"{prefix}EntityId")
    )
    pair = (int_param(params, type_key), int_param(params, id_key))
    if not entities.exists(crm, *pair):
        raise ApiError("OWNER_NOT_FOUND", "Owner of the activity not found", 400)
    return pair


def binding_add(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
    """crm.activity.binding.add: bind an activity to one more item (at most 100)."""
    row = _activity(crm, params)
    target = _target(crm, params)
    if list(target) in row["BINDINGS"]:
        raise ApiError("ACTIVITY_IS_ALREADY_BOUND", "The activity is already bound to it", 400)
    if len(row["BINDINGS"]) >= MAX_BINDINGS:
        raise ApiError(
            "TOO_MANY_BINDINGS", f"An activity can be bound to at most {MAX_BINDINGS} items", 400
        )
    crm.table("activity").put(_rebind(dict(row), [*row["BINDINGS"], list(target)]))
    return True


def binding_delete(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
    """crm.activity.binding.delete: the last binding cannot be deleted."""
    row = _activity(crm, params)
    target = _target(crm, params)
    if list(target) not in row["BINDINGS"]:
        raise ApiError("BINDING_NOT_FOUND", "The activity is not bound to it", 400)
    if len(row["BINDINGS"]) == 1:
        raise ApiError(
            "LAST_BINDING_CANNOT_BE_DELETED",
            "The last binding of an activity cannot be deleted",
            400,
        )
    bindings = [b for b in row["BINDINGS"] if b != list(target)]
    crm.table("activity").put(_rebind(dict(row), bindings))
    return True


def binding_list(crm: Crm, params: dict[str, Any], caller: Caller) -> list[dict[str, int]]:
    """crm.activity.binding.list: [{entityTypeId, entityId}] of existing items."""
    row = _activity(crm, params)
    return [
        {"entityTypeId": t, "entityId": i} for t, i in row["BINDINGS"] if entities.exists(crm, t, i)
    ]


def binding_move(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
    """crm.activity.binding.move: between two items of the same type only."""
    row = _activity(crm, params)
    source_type = int_param(params, "sourceEntityTypeId")
    target_type = int_param(params, "targetEntityTypeId")
    if source_type != target_type:
        raise ApiError(
            "SOURCE_AND_TARGET_ENTITY_TYPES_ARE_NOT_EQUAL_ERROR",
            "Source and target entity types are not equal",
            400,
        )
    source = _target(crm, params, "source")
    target = _target(crm, params, "target")
    if source == target:
        raise ApiError(
            "SOURCE_AND_TARGET_ENTITY_ID_ARE_EQUAL_ERROR", "Source and target are the same", 400
        )
    if list(source) not in row["BINDINGS"]:
        raise ApiError("BINDING_NOT_FOUND", "The activity is not bound to the source", 400)
    if list(target) in row["BINDINGS"]:
        raise ApiError("ACTIVITY_IS_ALREADY_BOUND", "The activity is already bound to it", 400)
    # Added at the end, the source removed (binding.php:196-221), then the owner rule.
    bindings = [b for b in row["BINDINGS"] if b != list(source)] + [list(target)]
    crm.table("activity").put(_rebind(dict(row), bindings))
    return True


METHODS = {
    "crm.activity.add": Method(add),
    "crm.activity.get": Method(get),
    "crm.activity.list": Method(list_),
    "crm.activity.update": Method(update),
    "crm.activity.delete": Method(delete),
    "crm.activity.fields": Method(fields),
    "crm.activity.binding.add": Method(binding_add, D7),
    "crm.activity.binding.delete": Method(binding_delete, D7),
    "crm.activity.binding.list": Method(binding_list, D7),
    "crm.activity.binding.move": Method(binding_move, D7),
}
