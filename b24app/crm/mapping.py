"""Lead fields -> the fields of the contact, company and deal a conversion creates.

Mirrors what Bitrix24's own lead conversion copies (lead fields:
https://apidocs.bitrix24.com/api-reference/crm/leads/crm-lead-fields.html), within what REST lets
an app write:

* `LEAD_ID` is read-only on deals, contacts and companies in REST (the legacy methods drop it
  silently), so it is never sent. Each created entity carries `ORIGINATOR_ID="b24app"` and
  `ORIGIN_ID=origin_id(lead_id)` instead (https://apidocs.bitrix24.com/api-reference/crm/main-entities-fields.html),
  which is also how a rerun finds what an interrupted one created; the deal also gets a timeline
  comment naming the lead.
* Multifields are read as `[{"ID","VALUE_TYPE","VALUE","TYPE_ID"}]` and written as
  `[{"VALUE","VALUE_TYPE"}]` (the IDs belong to the lead's own records).
* Communications (PHONE, EMAIL, WEB, IM) and the address belong to the person behind the lead:
  they go to the contact whenever a contact is created (client `contact` or `both`) and to the
  company only when the company is the sole client. Copying them to both would make every
  converted pair a duplicate of each other in Bitrix24's duplicate search.
* Empty values (None, "", [], "0" links) are never sent; user fields (UF_*) are not mapped because
  their codes differ per entity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

ORIGINATOR_ID = "b24app"

# Entity type ids (https://apidocs.bitrix24.com/api-reference/crm/data-types.html#object_type).
LEAD_TYPE_ID, DEAL_TYPE_ID, CONTACT_TYPE_ID, COMPANY_TYPE_ID = 1, 2, 3, 4

MULTIFIELDS = ("PHONE", "EMAIL", "WEB", "IM")
# `select` for reading leads: "*" does not include the multifields, they must be named.
# https://apidocs.bitrix24.com/api-reference/crm/leads/crm-lead-list.html
LEAD_SELECT = ("*", *MULTIFIELDS)
ADDRESS_FIELDS = (
    "ADDRESS",
    "ADDRESS_2",
    "ADDRESS_CITY",
    "ADDRESS_POSTAL_CODE",
    "ADDRESS_REGION",
    "ADDRESS_PROVINCE",
    "ADDRESS_COUNTRY",
    "ADDRESS_COUNTRY_CODE",
)
PERSON_FIELDS = ("NAME", "SECOND_NAME", "LAST_NAME", "HONORIFIC", "POST", "BIRTHDATE")
UTM_FIELDS = ("UTM_SOURCE", "UTM_MEDIUM", "UTM_CAMPAIGN", "UTM_CONTENT", "UTM_TERM")
DEAL_FIELDS = (
    "OPPORTUNITY",
    "IS_MANUAL_OPPORTUNITY",
    "CURRENCY_ID",
    "SOURCE_ID",
    "SOURCE_DESCRIPTION",
    "ASSIGNED_BY_ID",
    "COMMENTS",
    *UTM_FIELDS,
)

# crm.item.productrow.list (camelCase) -> crm.deal.productrows.set (UPPER_CASE). The computed
# prices (priceExclusive/Netto/Brutto) are left out: Bitrix24 derives them from these.
# https://apidocs.bitrix24.com/api-reference/crm/universal/product-rows/crm-item-productrow-list.html
# https://apidocs.bitrix24.com/api-reference/crm/deals/crm-deal-productrows-set.html
PRODUCT_ROW_FIELDS = {
    "productId": "PRODUCT_ID",
    "productName": "PRODUCT_NAME",
    "price": "PRICE",
    "quantity": "QUANTITY",
    "discountTypeId": "DISCOUNT_TYPE_ID",
    "discountRate": "DISCOUNT_RATE",
    "discountSum": "DISCOUNT_SUM",
    "taxRate": "TAX_RATE",
    "taxIncluded": "TAX_INCLUDED",
    "measureCode": "MEASURE_CODE",
    "measureName": "MEASURE_NAME",
    "sort": "SORT",
}

_ORIGIN_PREFIX = "lead-"


def origin_id(lead_id: int) -> str:
    """The `ORIGIN_ID` of every entity created from this lead: `lead-<id>`."""
    return f"{_ORIGIN_PREFIX}{int(lead_id)}"


def lead_id_of(origin: object) -> int | None:
    """The lead id behind an `ORIGIN_ID` written by `origin_id`, or None for anyone else's."""
    text = str(origin or "")
    digits = text.removeprefix(_ORIGIN_PREFIX)
    if text.startswith(_ORIGIN_PREFIX) and digits.isdigit():
        return int(digits)
    return None


def origin_fields(lead_id: int) -> dict[str, str]:
    """`ORIGINATOR_ID` and `ORIGIN_ID` marking an entity as created by b24app from this lead."""
    return {"ORIGINATOR_ID": ORIGINATOR_ID, "ORIGIN_ID": origin_id(lead_id)}


def is_empty(value: Any) -> bool:
    """Whether a lead value counts as unset (None, blank string, empty list or mapping)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | dict):
        return not value
    return False


def link_id(value: Any) -> int | None:
    """A link field (`CONTACT_ID`, `COMPANY_ID`, `ID`) as an id; "0", "" and None mean none."""
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def multifield(values: Any) -> list[dict[str, str]]:
    """Read-format multifield values -> write format `[{"VALUE", "VALUE_TYPE"}]`, blanks dropped.

    https://apidocs.bitrix24.com/api-reference/crm/data-types.html#crm_multifield
    """
    if not isinstance(values, list | tuple):
        return []
    written = []
    for item in values:
        if not isinstance(item, Mapping) or is_empty(item.get("VALUE")):
            continue
        entry = {"VALUE": str(item["VALUE"]).strip()}
        if not is_empty(item.get("VALUE_TYPE")):
            entry["VALUE_TYPE"] = str(item["VALUE_TYPE"])
        written.append(entry)
    return written


def _copy(lead: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    return {name: lead[name] for name in names if not is_empty(lead.get(name))}


def _communications(lead: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in MULTIFIELDS:
        values = multifield(lead.get(name))
        if values:
            fields[name] = values
    return fields | _copy(lead, ADDRESS_FIELDS)


def _lead_id(lead: Mapping[str, Any]) -> int:
    lead_id = link_id(lead.get("ID"))
    if lead_id is None:
        raise ValueError("a lead without a positive ID cannot be converted")
    return lead_id


def contact_fields(lead: Mapping[str, Any]) -> dict[str, Any]:
    """`crm.contact.add` fields for the contact created from a lead (without `COMPANY_ID`).

    https://apidocs.bitrix24.com/api-reference/crm/contacts/crm-contact-add.html
    """
    fields = _copy(lead, (*PERSON_FIELDS, "ASSIGNED_BY_ID", "SOURCE_ID"))
    return fields | _communications(lead) | origin_fields(_lead_id(lead))


def company_title(lead: Mapping[str, Any]) -> str:
    """The company's name: the lead's `COMPANY_TITLE`, else its `TITLE`, else `Lead #<id>`."""
    for name in ("COMPANY_TITLE", "TITLE"):
        if not is_empty(lead.get(name)):
            return str(lead[name]).strip()
    return f"Lead #{_lead_id(lead)}"


def company_fields(lead: Mapping[str, Any], *, communications: bool) -> dict[str, Any]:
    """`crm.company.add` fields; `communications` when the company is the only client.

    https://apidocs.bitrix24.com/api-reference/crm/companies/crm-company-add.html
    """
    fields: dict[str, Any] = {"TITLE": company_title(lead)} | _copy(lead, ("ASSIGNED_BY_ID",))
    if communications:
        fields |= _communications(lead)
    return fields | origin_fields(_lead_id(lead))


def deal_fields(lead: Mapping[str, Any], *, pipeline: int) -> dict[str, Any]:
    """`crm.deal.add` fields copied from a lead, in `pipeline` (clients are added by the planner).

    https://apidocs.bitrix24.com/api-reference/crm/deals/crm-deal-add.html
    """
    lead_id = _lead_id(lead)
    title = str(lead.get("TITLE") or "").strip() or f"Lead #{lead_id}"
    fields: dict[str, Any] = {"TITLE": title} | _copy(lead, DEAL_FIELDS)
    return fields | {"CATEGORY_ID": int(pipeline)} | origin_fields(lead_id)


def deal_clients(*, contact_id: int | None, company_id: int | None) -> dict[str, Any]:
    """The deal's client fields: `CONTACT_ID` + `CONTACT_IDS` and `COMPANY_ID`, when known."""
    fields: dict[str, Any] = {}
    if contact_id:
        fields |= {"CONTACT_ID": contact_id, "CONTACT_IDS": [contact_id]}
    if company_id:
        fields["COMPANY_ID"] = company_id
    return fields


def product_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One product row as read (camelCase, or legacy UPPER_CASE) -> `crm.deal.productrows.set`."""
    written = {}
    for camel, upper in PRODUCT_ROW_FIELDS.items():
        value = row.get(camel, row.get(upper))
        if not is_empty(value):
            written[upper] = value
    return written


def product_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every product row of a lead in `crm.deal.productrows.set` format, empty ones dropped."""
    return [written for written in map(product_row, rows) if written]


def deal_comment(lead_id: int) -> str:
    """The timeline comment put on a deal: names the lead it was converted from."""
    return f"Converted from lead #{int(lead_id)} by b24app."
