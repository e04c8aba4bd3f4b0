"""Field descriptions of the legacy CRM entities and the one place where values are typed.

Writes go through `Schema.internalize` (unknown and read-only fields silently dropped, as the legacy
REST proxy does); reads go through `Schema.render` (IDs and money as strings, dates ISO, "" for an
empty date), and filters through `Schema.accessor`.
https://apidocs.bitrix24.com/api-reference/crm/main-entities-fields.html
https://apidocs.bitrix24.com/api-reference/crm/data-types.html#crm_rest_field_description
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sandbox.crm import dates, multifields
from sandbox.query import Accessor, as_list, float_value, int_value
from sandbox.store import Row

LEAD, DEAL, CONTACT, COMPANY = 1, 2, 3, 4
ACTIVITY = 6

_INT_TYPES = frozenset(
    {"integer", "user", "crm_company", "crm_contact", "crm_lead", "crm_category", "crm_quote"}
)
_OBJECT_TYPES = frozenset({"object", "crm_activity_communication", "diskfile"})
_LINK_TYPES = frozenset({"crm_company", "crm_contact", "crm_lead", "crm_quote"})


@dataclass(frozen=True)
class Field:
    """One field as `crm.*.fields` describes it, plus whether `*` selects it."""

    name: str
    type: str
    title: str
    read_only: bool = False
    immutable: bool = False
    multiple: bool = False
    required: bool = False
    status_type: str | None = None
    parent: int | None = None
    listed: bool = True

    @property
    def is_int(self) -> bool:
        """Whether values are integers (IDs, users, enumerations)."""
        return self.type in _INT_TYPES or self.type.startswith("crm_enum_")

    def describe(self) -> dict[str, Any]:
        """The `crm_rest_field_description` object."""
        info: dict[str, Any] = {
            "type": self.type,
            "isRequired": self.required,
            "isReadOnly": self.read_only,
            "isImmutable": self.immutable,
            "isMultiple": self.multiple,
            "isDynamic": False,
        }
        if self.status_type:
            info["statusType"] = self.status_type
        info["title"] = self.title
        if self.parent is not None:
            info["settings"] = {"parentEntityTypeId": self.parent}
        return info

    def accessor(self) -> Accessor:
        """How list filters and orders read this field."""
        name = self.name
        if self.type == "crm_multifield":
            return Accessor(
                lambda row: multifields.values(row, name), fold=True, multiple=True, sortable=False
            )
        if self.type in _OBJECT_TYPES:
            return Accessor(lambda row: row.get(name), _text, sortable=False)
        if self.multiple:
            return Accessor(
                lambda row: row.get(name) or (), int_value, multiple=True, sortable=False
            )
        if self.is_int:
            return Accessor(lambda row: row.get(name) or 0, int_value)
        if self.type == "double":
            return Accessor(lambda row: row.get(name) or 0.0, float_value)
        if self.type == "datetime":
            return Accessor(lambda row: row.get(name) or "", _filter_datetime)
        if self.type == "date":
            return Accessor(lambda row: row.get(name) or "", _filter_date)
        return Accessor(lambda row: row.get(name), _text, fold=True)

    def internalize(self, value: Any) -> tuple[bool, Any]:
        """(accepted, stored value) for a value written through REST."""
        if self.type in _OBJECT_TYPES:
            return True, value
        if self.multiple:
            items = as_list(value)
            items = [value] if items is None and value not in (None, "") else items or []
            return True, [i for i in (int_value(v) for v in items) if i > 0]
        if self.is_int:
            number = int_value(value)
            return True, (None if number <= 0 and self.type in _LINK_TYPES else number)
        if self.type == "double":
            return True, round(float_value(value), 2)
        if self.type == "char":
            return True, "Y" if str(value).strip().upper() in ("Y", "1", "TRUE") else "N"
        if self.type in ("date", "datetime"):
            if value in (None, ""):
                return True, None
            parsed = dates.parse_date(value) if self.type == "date" else dates.parse_datetime(value)
            return parsed is not None, parsed
        if isinstance(value, (dict, list)):
            return False, None
        return True, None if value is None else str(value)

    def render(self, value: Any) -> Any:
        """The stored value as legacy REST methods return it."""
        if self.type in _OBJECT_TYPES:
            return [] if value is None else value
        if self.multiple:
            return list(value or [])
        if self.is_int:
            return None if value is None else str(value)
        if self.type == "double":
            return None if value is None else f"{value:.2f}"
        if self.type == "datetime":
            return value or ""
        if self.type == "date":
            return dates.render_date(value)
        return value


class Schema:
    """The fields of one entity type."""

    def __init__(self, entity_type_id: int, fields: Iterable[Field]) -> None:
        self.entity_type_id = entity_type_id
        self.fields = {f.name: f for f in fields}
        self.multifield_types = [n for n, f in self.fields.items() if f.type == "crm_multifield"]
        self.listed = [f for f in self.fields.values() if f.listed and f.type != "crm_multifield"]

    def accessor(self, name: str) -> Accessor | None:
        """Filter/order access to a field; user fields (UF_*) read as text."""
        field = self.fields.get(name)
        if field is not None:
            return field.accessor()
        if name.startswith("UF_"):
            return Accessor(lambda row: row.get(name), _text, fold=True)
        return None

    def internalize(self, raw: dict[str, Any], *, updating: bool) -> tuple[Row, dict[str, Any]]:
        """(plain values, raw multifield values) to store; the rest is dropped silently."""
        values: Row = {}
        multis: dict[str, Any] = {}
        for name, value in raw.items():
            field = self.fields.get(name)
            if field is None:
                if name.startswith("UF_CRM_"):
                    values[name] = value
                continue
            if field.read_only or (updating and field.immutable):
                continue
            if field.type == "crm_multifield":
                multis[name] = value
                continue
            accepted, stored = field.internalize(value)
            if accepted:
                values[name] = stored
        return values, multis

    def render(self, row: Row, select: list[str] | None = None) -> dict[str, Any]:
        """A stored row as `crm.*.get` (no select) or `crm.*.list` (with select) returns it."""
        if not select:
            out = {f.name: f.render(row.get(f.name)) for f in self.listed}
            out.update(self._user_fields(row))
            out.update(multifields.render(row, self.multifield_types))
            return out
        wanted = set(select)
        star = "*" in wanted
        out = {}
        for f in self.fields.values():
            if f.type == "crm_multifield":
                continue
            if f.name in wanted or (star and f.listed):
                out[f.name] = f.render(row.get(f.name))
        if "UF_*" in wanted:
            out.update(self._user_fields(row))
        else:
            out.update({k: v for k, v in self._user_fields(row).items() if k in wanted})
        chosen = [t for t in self.multifield_types if t in wanted]
        if chosen:
            out.setdefault("ID", self.fields["ID"].render(row["ID"]))
            out.update(multifields.render(row, chosen))
        return out

    def describe(self) -> dict[str, Any]:
        """`crm.*.fields`: every field's description."""
        return {name: f.describe() for name, f in self.fields.items()}

    @staticmethod
    def _user_fields(row: Row) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k.startswith("UF_")}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _filter_datetime(value: Any) -> str:
    return dates.parse_datetime(value) or ""


def _filter_date(value: Any) -> str:
    return dates.parse_date(value) or ""


def _f(name: str, type_: str, title: str, **flags: Any) -> Field:
    return Field(name, type_, title, **flags)


def _ro(name: str, type_: str, title: str, **flags: Any) -> Field:
    return Field(name, type_, title, read_only=True, **flags)


_ADDRESS = [
    _f("ADDRESS", "string", "Address"),
    _f("ADDRESS_2", "string", "Address (line 2)"),
    _f("ADDRESS_CITY", "string", "City"),
    _f("ADDRESS_POSTAL_CODE", "string", "Zip"),
    _f("ADDRESS_REGION", "string", "Region"),
    _f("ADDRESS_PROVINCE", "string", "State / Province"),
    _f("ADDRESS_COUNTRY", "string", "Country"),
    _f("ADDRESS_COUNTRY_CODE", "string", "Country Code"),
    _ro("ADDRESS_LOC_ADDR_ID", "integer", "Location address ID"),
]
_UTM = [
    _f("UTM_SOURCE", "string", "Advertising system"),
    _f("UTM_MEDIUM", "string", "Traffic type"),
    _f("UTM_CAMPAIGN", "string", "Ad campaign"),
    _f("UTM_CONTENT", "string", "Campaign contents"),
    _f("UTM_TERM", "string", "Campaign search term"),
]
_AUDIT = [
    _f("ASSIGNED_BY_ID", "user", "Responsible person"),
    _ro("CREATED_BY_ID", "user", "Created by"),
    _ro("MODIFY_BY_ID", "user", "Modified by"),
    _ro("DATE_CREATE", "datetime", "Created on"),
    _ro("DATE_MODIFY", "datetime", "Modified on"),
]
_ORIGIN = [
    _f("ORIGINATOR_ID", "string", "External source"),
    _f("ORIGIN_ID", "string", "Item ID in data source"),
]
_LAST_ACTIVITY = [
    _ro("LAST_ACTIVITY_BY", "user", "Last activity by"),
    _ro("LAST_ACTIVITY_TIME", "datetime", "Last activity"),
]
_PERSON = [
    _f("HONORIFIC", "crm_status", "Salutation", status_type="HONORIFIC"),
    _f("NAME", "string", "First name"),
    _f("SECOND_NAME", "string", "Second name"),
    _f("LAST_NAME", "string", "Last name"),
    _f("BIRTHDATE", "date", "Date of birth"),
    _f("POST", "string", "Position"),
]
_COMMUNICATION_FLAGS = [
    _ro("HAS_PHONE", "char", "Has phone"),
    _ro("HAS_EMAIL", "char", "Has email"),
    _ro("HAS_IMOL", "char", "Has Open Channel"),
]
_MULTIFIELDS = [
    _f(t, "crm_multifield", title, multiple=True)
    for t, title in (
        ("PHONE", "Phone"),
        ("EMAIL", "E-mail"),
        ("WEB", "Website"),
        ("IM", "Messenger"),
        ("LINK", "Link"),
    )
]
_LEAD_LINK = _ro("LEAD_ID", "crm_lead", "Lead", parent=LEAD)

LEAD_SCHEMA = Schema(
    LEAD,
    [
        _ro("ID", "integer", "ID"),
        _f("TITLE", "string", "Lead name"),
        *_PERSON[:4],
        _f("COMPANY_TITLE", "string", "Company name"),
        _f("COMPANY_ID", "crm_company", "Company", parent=COMPANY),
        _f("CONTACT_ID", "crm_contact", "Contact", parent=CONTACT),
        _f("CONTACT_IDS", "crm_contact", "Contacts", multiple=True, listed=False),
        _ro("IS_RETURN_CUSTOMER", "char", "Repeat lead"),
        _PERSON[4],
        _f("SOURCE_ID", "crm_status", "Source", status_type="SOURCE"),
        _f("SOURCE_DESCRIPTION", "string", "Source information"),
        _f("STATUS_ID", "crm_status", "Stage", status_type="STATUS"),
        _f("STATUS_DESCRIPTION", "string", "Stage information"),
        _PERSON[5],
        _f("COMMENTS", "string", "Comment"),
        _f("CURRENCY_ID", "crm_currency", "Currency"),
        _f("OPPORTUNITY", "double", "Total"),
        _f("IS_MANUAL_OPPORTUNITY", "char", "IS_MANUAL_OPPORTUNITY"),
        *_COMMUNICATION_FLAGS,
        _AUDIT[0],
        _AUDIT[1],
        _AUDIT[2],
        _AUDIT[3],
        _AUDIT[4],
        _ro("DATE_CLOSED", "datetime", "Completed on"),
        _ro("STATUS_SEMANTIC_ID", "string", "Status details"),
        _f("OPENED", "char", "Available to everyone"),
        *_ORIGIN,
        _ro("MOVED_BY_ID", "user", "MOVED_BY_ID"),
        _ro("MOVED_TIME", "datetime", "MOVED_TIME"),
        *_ADDRESS,
        *_UTM,
        *_LAST_ACTIVITY,
        *_MULTIFIELDS,
    ],
)

DEAL_SCHEMA = Schema(
    DEAL,
    [
        _ro("ID", "integer", "ID"),
        _f("TITLE", "string", "Name"),
        _f("TYPE_ID", "crm_status", "Type", status_type="DEAL_TYPE"),
        _f("CATEGORY_ID", "crm_category", "Pipeline", immutable=True),
        _f("STAGE_ID", "crm_status", "Deal stage", status_type="DEAL_STAGE"),
        _ro("STAGE_SEMANTIC_ID", "string", "Stage group"),
        _ro("IS_NEW", "char", "New deal"),
        _f("IS_RECURRING", "char", "Recurring deal"),
        _f("IS_RETURN_CUSTOMER", "char", "Repeat deal"),
        _f("IS_REPEATED_APPROACH", "char", "Repeat inquiry"),
        _f("PROBABILITY", "integer", "Probability"),
        _f("CURRENCY_ID", "crm_currency", "Currency"),
        _f("OPPORTUNITY", "double", "Amount"),
        _f("IS_MANUAL_OPPORTUNITY", "char", "IS_MANUAL_OPPORTUNITY"),
        _f("TAX_VALUE", "double", "Tax rate"),
        _f("COMPANY_ID", "crm_company", "Company", parent=COMPANY),
        _f("CONTACT_ID", "crm_contact", "Contact"),
        _f("CONTACT_IDS", "crm_contact", "Contacts", multiple=True, listed=False),
        _ro("QUOTE_ID", "crm_quote", "Quote", parent=7),
        _f("BEGINDATE", "date", "Start date"),
        _f("CLOSEDATE", "date", "End date"),
        _f("OPENED", "char", "Available to everyone"),
        _f("CLOSED", "char", "Closed"),
        _f("COMMENTS", "string", "Comment"),
        *_AUDIT,
        _ro("MOVED_BY_ID", "user", "MOVED_BY_ID"),
        _ro("MOVED_TIME", "datetime", "MOVED_TIME"),
        _f("SOURCE_ID", "crm_status", "Source", status_type="SOURCE"),
        _f("SOURCE_DESCRIPTION", "string", "Source information"),
        _LEAD_LINK,
        _f("ADDITIONAL_INFO", "string", "Additional information"),
        _f("LOCATION_ID", "location", "Location"),
        *_ORIGIN,
        *_UTM,
        *_LAST_ACTIVITY,
    ],
)

CONTACT_SCHEMA = Schema(
    CONTACT,
    [
        _ro("ID", "integer", "ID"),
        *_PERSON[:4],
        _f("TYPE_ID", "crm_status", "Contact type", status_type="CONTACT_TYPE"),
        _f("SOURCE_ID", "crm_status", "Source", status_type="SOURCE"),
        _f("SOURCE_DESCRIPTION", "string", "Source information"),
        _PERSON[4],
        _PERSON[5],
        *_ADDRESS,
        _f("COMMENTS", "string", "Comment"),
        _f("OPENED", "char", "Available to everyone"),
        _f("EXPORT", "char", "Included in export"),
        *_COMMUNICATION_FLAGS,
        *_AUDIT,
        _f("COMPANY_ID", "crm_company", "Company", parent=COMPANY),
        _f("COMPANY_IDS", "crm_company", "Companies", multiple=True, listed=False),
        _LEAD_LINK,
        *_ORIGIN,
        _f("ORIGIN_VERSION", "string", "Original version"),
        *_UTM,
        *_LAST_ACTIVITY,
        *_MULTIFIELDS,
    ],
)

COMPANY_SCHEMA = Schema(
    COMPANY,
    [
        _ro("ID", "integer", "ID"),
        _f("TITLE", "string", "Company name", required=True),
        _f("COMPANY_TYPE", "crm_status", "Company type", status_type="COMPANY_TYPE"),
        *_ADDRESS,
        _f("BANKING_DETAILS", "string", "Payment details"),
        _f("INDUSTRY", "crm_status", "Industry", status_type="INDUSTRY"),
        _f("EMPLOYEES", "crm_status", "Employees", status_type="EMPLOYEES"),
        _f("CURRENCY_ID", "crm_currency", "Currency"),
        _f("REVENUE", "double", "Annual revenue"),
        _f("OPENED", "char", "Available to everyone"),
        _f("COMMENTS", "string", "Comment"),
        *_COMMUNICATION_FLAGS,
        _f("IS_MY_COMPANY", "char", "My Company"),
        *_AUDIT,
        _f("CONTACT_ID", "crm_contact", "Contact", multiple=True, listed=False),
        _LEAD_LINK,
        *_ORIGIN,
        _f("ORIGIN_VERSION", "string", "Original version"),
        *_UTM,
        *_LAST_ACTIVITY,
        *_MULTIFIELDS,
    ],
)

SCHEMAS = {LEAD: LEAD_SCHEMA, DEAL: DEAL_SCHEMA, CONTACT: CONTACT_SCHEMA, COMPANY: COMPANY_SCHEMA}
