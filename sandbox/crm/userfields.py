"""Custom fields (UF_CRM_*) of leads, deals, contacts and companies:
crm.{lead,deal,contact,company}.userfield.{add,get,list,delete}, their values on items, and files.

Follows rest/lib/userfieldproxy.php (UserFieldProxy, used by CCrmUserFieldRestProxy,
crm/classes/general/restservice.php:11783):
- only admins may read or change definitions ('Access denied.', :128-140);
- add needs USER_TYPE_ID and FIELD_NAME, prefixes the name with UF_CRM_ (:222-283);
- labels are stored per portal language; a string label or `LABEL` fills every language, a
  per-language object fills the languages it names and the rest get the default (:1106-1127);
- `get` answers every label as {language: text} and enumeration items {ID, SORT, VALUE, DEF}
  (:506-565); `list` gives labels as text only when `filter[LANG]` names a language
  (CUserTypeEntity::GetList joins the language table only then), items with XML_ID (:567-636);
- a missing ID: "The entity with ID 'N' is not found." (:532).
File values are written as {"fileData": [name, base64]} and read as {id, showUrl, downloadUrl};
the download URL is served by the sandbox's HTTP side with the caller's auth.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sandbox import query
from sandbox.crm.context import OPEN, Caller, Crm, Method, entity_id, legacy_error, object_param
from sandbox.query import int_value
from sandbox.store import Row

LANGUAGES = ("en", "de")  # the portal's languages; labels exist in each
ENTITY_IDS = {
    "lead": "CRM_LEAD",
    "deal": "CRM_DEAL",
    "contact": "CRM_CONTACT",
    "company": "CRM_COMPANY",
}
KINDS = {v: k for k, v in ENTITY_IDS.items()}
TYPE_IDS = {"lead": 1, "deal": 2, "contact": 3, "company": 4}
LABELS = (
    "EDIT_FORM_LABEL",
    "LIST_COLUMN_LABEL",
    "LIST_FILTER_LABEL",
    "ERROR_MESSAGE",
    "HELP_MESSAGE",
)
USER_TYPES = (
    "string",
    "integer",
    "double",
    "boolean",
    "date",
    "datetime",
    "money",
    "url",
    "address",
    "enumeration",
    "employee",
    "crm",
    "crm_status",
    "iblock_element",
    "iblock_section",
    "file",
    "resourcebooking",
)


def install(crm: Crm) -> None:
    """Index definitions by entity and field name."""
    crm.table("userfield").add_index("entity", lambda r: (r["ENTITY_ID"],))
    crm.table("userfield").add_index("name", lambda r: ((r["ENTITY_ID"], r["FIELD_NAME"]),))


def of_kind(crm: Crm, kind: str) -> list[Row]:
    """The definitions of one entity kind, by SORT then ID."""
    table = crm.table("userfield")
    rows = [table.get(i) for i in table.lookup("entity", ENTITY_IDS[kind])]
    return sorted((r for r in rows if r), key=lambda r: (r["SORT"], r["ID"]))


def definition(crm: Crm, kind: str, name: str) -> Row | None:
    """One definition by field name."""
    table = crm.table("userfield")
    found = table.lookup("name", (ENTITY_IDS[kind], name))
    return table.get(next(iter(found))) if found else None


def label(row: Row, language: str = "en") -> str:
    """The label conversion pairs by: EDIT_FORM_LABEL, else LIST_COLUMN_LABEL (one language)."""
    for name in ("EDIT_FORM_LABEL", "LIST_COLUMN_LABEL"):
        text = (row.get(name) or {}).get(language) or ""
        if text:
            return text
    return ""


def define(crm: Crm, kind: str, fields: dict[str, Any]) -> int:
    """Store a new definition (the checks of UserFieldProxy::add); its ID."""
    default_label = str(fields.get("LABEL") or "").strip()
    errors = []
    user_type = str(fields.get("USER_TYPE_ID") or "").strip()
    if not user_type:
        errors.append("The 'USER_TYPE_ID' field is not found.")
    name = str(fields.get("FIELD_NAME") or "").strip().upper()
    if not name:
        errors.append("The 'FIELD_NAME' field is not found.")
    if errors:
        raise legacy_error("\n".join(errors))
    if not name.startswith("UF_CRM_"):
        name = "UF_CRM_" + (name[3:] if name.startswith("UF_") else name)
    if user_type not in USER_TYPES:
        raise legacy_error(f"The user type '{user_type}' is not found.")
    if definition(crm, kind, name) is not None:
        raise legacy_error(f"The field {name} already exists.")
    row: Row = {
        "ID": crm.next_id("userfield"),
        "ENTITY_ID": ENTITY_IDS[kind],
        "FIELD_NAME": name,
        "USER_TYPE_ID": user_type,
        "XML_ID": str(fields.get("XML_ID") or "") or None,
        "SORT": int_value(fields.get("SORT")) or 100,
        "MULTIPLE": _yn(fields.get("MULTIPLE")),
        "MANDATORY": _yn(fields.get("MANDATORY")),
        "SHOW_FILTER": "E" if _yn(fields.get("SHOW_FILTER")) == "Y" else "N",
        "SHOW_IN_LIST": "N" if _yn(fields.get("SHOW_IN_LIST"), "Y") == "N" else "Y",
        "EDIT_IN_LIST": "N" if _yn(fields.get("EDIT_IN_LIST"), "Y") == "N" else "Y",
        "IS_SEARCHABLE": _yn(fields.get("IS_SEARCHABLE")),
        "SETTINGS": fields.get("SETTINGS") if isinstance(fields.get("SETTINGS"), dict) else {},
    }
    for name_ in LABELS:
        row[name_] = _labels(fields.get(name_), default_label or name)
    if user_type == "enumeration":
        row["LIST"] = _enum_items(crm, fields.get("LIST"))
    crm.table("userfield").put(row)
    return row["ID"]


def store_values(crm: Crm, kind: str, values: Row, *, user_id: int) -> None:
    """Turn written file values ({"fileData": [name, base64]}) into stored file IDs, in place."""
    for name in [k for k in values if k.startswith("UF_CRM_")]:
        found = definition(crm, kind, name)
        if found is None:
            del values[name]  # a value for a field that does not exist is dropped
            continue
        if found["USER_TYPE_ID"] != "file":
            continue
        raw = values[name]
        items = raw if found["MULTIPLE"] == "Y" and isinstance(raw, list) else [raw]
        ids = [i for i in (_store_file(crm, item, user_id) for item in items) if i]
        values[name] = ids if found["MULTIPLE"] == "Y" else (ids[0] if ids else None)


def render_values(crm: Crm, kind: str, row: Row, out: dict[str, Any]) -> dict[str, Any]:
    """Rendered UF values: files as {id, showUrl, downloadUrl}, the rest as stored."""
    for name in [k for k in out if k.startswith("UF_CRM_")]:
        found = definition(crm, kind, name)
        if found is None or found["USER_TYPE_ID"] != "file" or out[name] in (None, "", []):
            continue
        ids = out[name] if isinstance(out[name], list) else [out[name]]
        files = [_file_info(kind, row["ID"], name, int_value(i)) for i in ids]
        out[name] = files if found["MULTIPLE"] == "Y" else files[0]
    return out


def forget_files(crm: Crm, kind: str, row: Row) -> None:
    """Delete the files an entity's file fields hold (the entity is being deleted)."""
    for name, value in row.items():
        if not name.startswith("UF_CRM_") or value in (None, "", []):
            continue
        found = definition(crm, kind, name)
        if found is None or found["USER_TYPE_ID"] != "file":
            continue
        for item in value if isinstance(value, list) else [value]:
            if str(item).isdigit():
                crm.table("file").delete(int(item))


def file_content(crm: Crm, file_id: int) -> tuple[str, bytes] | None:
    """(name, bytes) of a stored file."""
    row = crm.table("file").get(file_id)
    if row is None:
        return None
    return row["NAME"], base64.b64decode(row["DATA"])


def download_path(kind: str, owner_id: int, field: str, file_id: int) -> str:
    """The portal-relative download URL of a file value (auth is added by the caller)."""
    return (
        f"/rest/crm.controller.item.getFile/?entityTypeId={TYPE_IDS[kind]}"
        f"&id={owner_id}&fieldName={field}&fileId={file_id}"
    )


def _file_info(kind: str, owner_id: int, field: str, file_id: int) -> dict[str, Any]:
    return {
        "id": file_id,
        "showUrl": download_path(kind, owner_id, field, file_id),
        "downloadUrl": download_path(kind, owner_id, field, file_id),
    }


def _store_file(crm: Crm, item: Any, user_id: int) -> int | None:
    if isinstance(item, (int, str)) and str(item).isdigit():
        return int(item) if crm.table("file").get(int(item)) is not None else None
    data = item.get("fileData") if isinstance(item, dict) else None
    if not isinstance(data, list) or len(data) != 2:
        return None
    try:
        raw = base64.b64decode(str(data[1]), validate=True)
    except (binascii.Error, ValueError):
        return None
    row = {
        "ID": crm.next_id("file"),
        "NAME": str(data[0]),
        "SIZE": len(raw),
        "DATA": base64.b64encode(raw).decode("ascii"),
        "CREATED_BY": user_id,
    }
    crm.table("file").put(row)
    return row["ID"]


def copy_file(crm: Crm, file_id: int, user_id: int) -> int | None:
    """A physical copy of a stored file (what conversion does to file values)."""
    found = file_content(crm, file_id)
    if found is None:
        return None
    name, data = found
    return _store_file(crm, {"fileData": [name, base64.b64encode(data).decode()]}, user_id)


def _yn(value: Any, default: str = "N") -> str:
    if value is None:
        return default
    return "Y" if str(value).upper() == "Y" else "N"


def _labels(raw: Any, default: str) -> dict[str, str]:
    if isinstance(raw, str) and raw:
        return {lang: raw for lang in LANGUAGES}
    given = raw if isinstance(raw, dict) else {}
    return {
        lang: given[lang] if isinstance(given.get(lang), str) and given[lang] else default
        for lang in LANGUAGES
    }


def _enum_items(crm: Crm, raw: Any) -> list[dict[str, Any]]:
    items = query.as_list(raw) if not isinstance(raw, list) else raw
    out = []
    for n, item in enumerate(items or []):
        if not isinstance(item, dict) or not str(item.get("VALUE") or "").strip():
            continue
        out.append(
            {
                "ID": crm.next_id("userfield_enum"),
                "SORT": int_value(item.get("SORT")) or 10 * (n + 1),
                "VALUE": str(item["VALUE"]),
                "DEF": _yn(item.get("DEF")),
                "XML_ID": str(item.get("XML_ID") or "") or f"{crm.next_id('uf_xml')}",
            }
        )
    return sorted(out, key=lambda i: (i["SORT"], i["ID"]))


def _render(row: Row, *, language: str | None, full_labels: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: (str(v) if isinstance(v, int) else v)
        for k, v in row.items()
        if k not in LABELS and k != "LIST"
    }
    if full_labels:
        out.update({name: dict(row[name]) for name in LABELS})
    elif language is not None:
        out.update({name: row[name].get(language) for name in LABELS})
    if row["USER_TYPE_ID"] == "enumeration":
        out["LIST"] = [
            {
                "ID": str(i["ID"]),
                "SORT": str(i["SORT"]),
                "VALUE": i["VALUE"],
                "DEF": i["DEF"],
                **({} if full_labels else {"XML_ID": i["XML_ID"]}),
            }
            for i in row.get("LIST") or []
        ]
    return out


def _admin(caller: Caller) -> None:
    if not getattr(caller, "is_admin", True):
        raise legacy_error("Access denied.")


def _add(kind: str) -> Method:
    def add(crm: Crm, params: dict[str, Any], caller: Caller) -> int:
        """crm.*.userfield.add: the new definition's ID."""
        _admin(caller)
        return define(crm, kind, object_param(params, "fields"))

    return Method(add, OPEN)


def _get(kind: str) -> Method:
    def get(crm: Crm, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """crm.*.userfield.get: labels per language."""
        field_id = entity_id(params)
        _admin(caller)
        row = crm.table("userfield").get(field_id)
        if row is None:
            raise legacy_error(f"The entity with ID '{field_id}' is not found.")
        if row["ENTITY_ID"] != ENTITY_IDS[kind]:
            raise legacy_error("Access denied.")
        return _render(row, language=None, full_labels=True)

    return Method(get, OPEN)


def _list(kind: str) -> Method:
    def list_(crm: Crm, params: dict[str, Any], caller: Caller) -> query.Page:
        """crm.*.userfield.list: every definition (no paging); labels only with filter[LANG]."""
        _admin(caller)
        raw_filter = object_param(params, "filter", required=False)
        raw_filter = raw_filter if isinstance(raw_filter, dict) else {}
        language = raw_filter.get("LANG")
        rows = of_kind(crm, kind)
        for key in ("FIELD_NAME", "USER_TYPE_ID", "MULTIPLE", "ID"):
            if raw_filter.get(key) not in (None, ""):
                rows = [r for r in rows if str(r[key]) == str(raw_filter[key])]
        found = [
            _render(r, language=language if language in LANGUAGES else None, full_labels=False)
            for r in rows
        ]
        return query.Page(found, len(found), None)

    return Method(list_, OPEN)


def _delete(kind: str) -> Method:
    def delete(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
        """crm.*.userfield.delete."""
        field_id = entity_id(params)
        _admin(caller)
        row = crm.table("userfield").get(field_id)
        if row is None or row["ENTITY_ID"] != ENTITY_IDS[kind]:
            raise legacy_error(f"The entity with ID '{field_id}' is not found.")
        crm.table("userfield").delete(field_id)
        return True

    return Method(delete, OPEN)


METHODS = {
    f"crm.{kind}.userfield.{verb}": factory(kind)
    for kind in ENTITY_IDS
    for verb, factory in (("add", _add), ("get", _get), ("list", _list), ("delete", _delete))
}
