"""Lead fields -> the fields of the contact, company and deal a conversion creates.

The field lists, defaults and fallbacks are Bitrix24's own lead conversion mapper
(`crm/lib/conversion/leadconversionmapper.php:103-201`, cited as `mapper:line` below), within
what REST lets an app write:

* `LEAD_ID` is read-only on `crm.deal|contact|company.add/update` (dropped silently:
  `crm/classes/general/crm_deal.php:393-395`) but the universal `crm.item.add` writes `leadId` for
  deals, contacts and companies (`crm/lib/Service/Factory/Deal.php:415-421`, `Contact.php:326-332`,
  `Company.php:271-277`). So entities are created with `crm.item.add` (one call, as before), whose
  fields are camelCase (`item_fields`). Each also carries `ORIGINATOR_ID="b24app"` and
  `ORIGIN_ID=origin_id(lead_id)`: that is how a rerun finds what an interrupted one created.
* The universal factories have no ADDRESS* fields (`Factory/Contact.php:187-356`,
  `Company.php:144-296` list none), and the legacy proxies do: a client whose lead has an address
  gets it with one `crm.contact|company.update` (`address_fields`). WEBFORM_ID and FACE_ID are in
  neither field list (`crm_deal.php:330-420`, `crm_contact.php:230-360`): REST cannot write them.
* Multifields are read as `[{"ID","VALUE_TYPE","VALUE","TYPE_ID"}]` and written as new values
  (the lead's value ids are not reused, as the mapper does); communications and the address go to
  every client created, as the mapper copies them to both (mapper:103-160).
* Empty values (None, "", [], "0" links) are never sent; custom fields (UF_*) are mapped by
  `b24app.crm.customfields` and ride in the same add commands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from b24app.rest.response import link_id
from b24app.vocabulary import (  # noqa: F401 (re-exported: mapping.LEAD_TYPE_ID and kin)
    COMPANY_TYPE_ID,
    CONTACT_TYPE_ID,
    DEAL_TYPE_ID,
    LEAD_TYPE_ID,
)

ORIGINATOR_ID = "b24app"

MULTIFIELDS = ("PHONE", "EMAIL", "WEB", "IM", "LINK")
# `select` for reading leads: "*" includes neither the multifields (they must be named) nor the
# custom fields ("UF_*" selects them all).
# https://apidocs.bitrix24.com/api-reference/crm/leads/crm-lead-list.html
LEAD_SELECT = ("*", "UF_*", *MULTIFIELDS)
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
# UtmTable::getCodeList(); every one is copied to every target (mapper:197-201).
UTM_FIELDS = ("UTM_SOURCE", "UTM_MEDIUM", "UTM_CAMPAIGN", "UTM_CONTENT", "UTM_TERM")
# mapper:103-127, without the multifields and the address (written apart) and the origin pair
# (b24app's own idempotency key replaces the lead's). FACE_ID cannot be written through REST.
CONTACT_MAP = (
    "HONORIFIC",
    "NAME",
    "SECOND_NAME",
    "LAST_NAME",
    "BIRTHDATE",
    "POST",
    "COMMENTS",
    "OPENED",
    "SOURCE_ID",
    "SOURCE_DESCRIPTION",
    "ASSIGNED_BY_ID",
    *UTM_FIELDS,
)
COMPANY_MAP = ("COMMENTS", "OPENED", "ASSIGNED_BY_ID", *UTM_FIELDS)  # mapper:140-160, + TITLE
# mapper:172-193: PRODUCT_ROWS are set apart, WEBFORM_ID cannot be written through REST.
DEAL_MAP = (
    "TITLE",
    "OPPORTUNITY",
    "CURRENCY_ID",
    "COMMENTS",
    "OPENED",
    "SOURCE_ID",
    "SOURCE_DESCRIPTION",
    "ASSIGNED_BY_ID",
    *UTM_FIELDS,
)
# Lead fields the native mapper copies and REST cannot write (for the preview and docs/parity.md).
NOT_WRITABLE = {"contact": ("FACE_ID",), "deal": ("WEBFORM_ID",)}
# The automation converter's default contact name (crm/lib/automation/converter/converter.php:
# 55-62, CRM_AUTOMATION_CONVERTER_DEFAULT_NAME); its text is not in the server mirror.
DEFAULT_CONTACT_NAME = "Untitled"

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


def _multifields(lead: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in MULTIFIELDS:
        values = multifield(lead.get(name))
        if values:
            fields[name] = values
    return fields


def _lead_id(lead: Mapping[str, Any]) -> int:
    lead_id = link_id(lead.get("ID"))
    if lead_id is None:
        raise ValueError("a lead without a positive ID cannot be converted")
    return lead_id


def address_fields(lead: Mapping[str, Any]) -> dict[str, Any]:
    """The lead's ADDRESS* values (empty when it has none): written onto each client created."""
    return _copy(lead, ADDRESS_FIELDS)


def contact_fields(lead: Mapping[str, Any]) -> dict[str, Any]:
    """The contact created from a lead (legacy names; without COMPANY_ID and the address).

    A contact without any name part gets the converter's default NAME (mapper:324-332).
    """
    fields = _copy(lead, CONTACT_MAP)
    if not any(fields.get(name) for name in ("NAME", "SECOND_NAME", "LAST_NAME")):
        fields["NAME"] = DEFAULT_CONTACT_NAME
    return fields | _multifields(lead) | origin_fields(_lead_id(lead))


def company_title(lead: Mapping[str, Any]) -> str:
    """The company's name: the lead's `COMPANY_TITLE`, else its `TITLE` (mapper:144), else
    `Lead #<id>` (a title cannot be empty)."""
    for name in ("COMPANY_TITLE", "TITLE"):
        if not is_empty(lead.get(name)):
            return str(lead[name]).strip()
    return f"Lead #{_lead_id(lead)}"


def company_fields(lead: Mapping[str, Any]) -> dict[str, Any]:
    """The company created from a lead (legacy names; without the address)."""
    fields: dict[str, Any] = {"TITLE": company_title(lead)} | _copy(lead, COMPANY_MAP)
    return fields | _multifields(lead) | origin_fields(_lead_id(lead))


def deal_fields(
    lead: Mapping[str, Any], *, pipeline: int, deal_type: str | None = None
) -> dict[str, Any]:
    """The deal created from a lead, in `pipeline` (legacy names; clients added by the planner).

    `deal_type`: the portal's first deal type, which the mapper gives every deal (mapper:351-355).
    """
    lead_id = _lead_id(lead)
    fields: dict[str, Any] = _copy(lead, DEAL_MAP)
    if is_empty(fields.get("TITLE")):
        fields["TITLE"] = f"Lead #{lead_id}"
    if deal_type:
        fields["TYPE_ID"] = deal_type
    return fields | {"CATEGORY_ID": int(pipeline)} | origin_fields(lead_id)


def deal_clients(
    *, contact_ids: Iterable[int] = (), company_id: int | None = None
) -> dict[str, Any]:
    """The deal's client fields: `CONTACT_IDS` (the first is the primary) and `COMPANY_ID`."""
    fields: dict[str, Any] = {}
    contacts = [i for i in contact_ids if i]
    if contacts:
        fields["CONTACT_IDS"] = contacts
    if company_id:
        fields["COMPANY_ID"] = company_id
    return fields


def camel(name: str) -> str:
    """The universal API's name of a legacy field: `SOURCE_DESCRIPTION` -> `sourceDescription`.

    crm/lib/controller/item.php converts back with convertFieldNamesToUpper.
    """
    head, *rest = name.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)


def item_fields(fields: Mapping[str, Any], *, lead_id: int) -> dict[str, Any]:
    """Legacy-named fields -> `crm.item.add` fields, with `leadId`; multifields become `fm`.

    `fm` items are `{typeId, valueType, value}` (crm/lib/controller/item.php:1219-1252).
    """
    item: dict[str, Any] = {}
    fm: list[dict[str, Any]] = []
    for name, value in fields.items():
        if name in MULTIFIELDS:
            fm.extend(
                {"typeId": name, "valueType": entry.get("VALUE_TYPE") or "WORK", "value": v}
                for entry in value
                if (v := entry.get("VALUE"))
            )
        elif name.startswith("UF_"):
            # custom fields keep their names: every crm.item method takes UPPER_CASE names too
            # (b24restdocs api-reference/crm/universal/index.md, "Features of Working with Field
            # Names"), and camelCase UF names are ambiguous (UF_CRM_10_DIGIT10)
            item[name] = value
        elif name not in ADDRESS_FIELDS:
            item[camel(name)] = value
    if fm:
        item["fm"] = fm
    item["leadId"] = int(lead_id)
    return item


def item_id(result: Any) -> int | None:
    """The id in a `crm.item.add` answer (`{"item": {"id": ...}}`), or a plain id."""
    if isinstance(result, Mapping):
        item = result.get("item")
        if isinstance(item, Mapping):
            return link_id(item.get("id"))
        return None
    return link_id(result)


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
