"""Product rows of leads and deals: crm.{lead,deal}.productrows.{get,set} and
crm.item.productrow.list.

`set` replaces all rows of the owner; when the owner's amount is not manual
(IS_MANUAL_OPPORTUNITY != "Y") its OPPORTUNITY becomes the rows' total, as Bitrix24 recalculates it.
https://apidocs.bitrix24.com/api-reference/crm/deals/crm-deal-productrows-set.html
https://apidocs.bitrix24.com/api-reference/crm/universal/product-rows/crm-item-productrow-list.html
"""

from __future__ import annotations

from typing import Any

from sandbox import query
from sandbox.crm import entities
from sandbox.crm.context import D7, Caller, Crm, Method, entity_id, legacy_error
from sandbox.crm.fields import DEAL, LEAD
from sandbox.errors import ApiError
from sandbox.query import Accessor, as_list, float_value, int_value
from sandbox.store import Row

OWNER_CODES = {LEAD: "L", DEAL: "D"}
_CODE_TYPES = {code: type_id for type_id, code in OWNER_CODES.items()}

# Stored key -> (camelCase name of crm.item.productrow.*, legacy rendering)
_LEGACY_STR = {"ID", "OWNER_ID"}
_CAMEL = {
    "ID": "id",
    "OWNER_ID": "ownerId",
    "OWNER_TYPE": "ownerType",
    "PRODUCT_ID": "productId",
    "PRODUCT_NAME": "productName",
    "PRICE": "price",
    "PRICE_ACCOUNT": "priceAccount",
    "PRICE_EXCLUSIVE": "priceExclusive",
    "PRICE_NETTO": "priceNetto",
    "PRICE_BRUTTO": "priceBrutto",
    "QUANTITY": "quantity",
    "DISCOUNT_TYPE_ID": "discountTypeId",
    "DISCOUNT_RATE": "discountRate",
    "DISCOUNT_SUM": "discountSum",
    "TAX_RATE": "taxRate",
    "TAX_INCLUDED": "taxIncluded",
    "CUSTOMIZED": "customized",
    "MEASURE_CODE": "measureCode",
    "MEASURE_NAME": "measureName",
    "SORT": "sort",
    "XML_ID": "xmlId",
    "TYPE": "type",
    "STORE_ID": "storeId",
}
_LEGACY_ORDER = (
    "ID",
    "OWNER_ID",
    "OWNER_TYPE",
    "PRODUCT_ID",
    "PRODUCT_NAME",
    "ORIGINAL_PRODUCT_NAME",
    "PRODUCT_DESCRIPTION",
    "PRICE",
    "PRICE_EXCLUSIVE",
    "PRICE_NETTO",
    "PRICE_BRUTTO",
    "PRICE_ACCOUNT",
    "QUANTITY",
    "DISCOUNT_TYPE_ID",
    "DISCOUNT_RATE",
    "DISCOUNT_SUM",
    "TAX_RATE",
    "TAX_INCLUDED",
    "CUSTOMIZED",
    "MEASURE_CODE",
    "MEASURE_NAME",
    "SORT",
    "XML_ID",
    "TYPE",
    "STORE_ID",
)


def install(crm: Crm) -> None:
    """Index product rows by owner."""
    crm.table("productrow").add_index("owner", lambda r: ((r["OWNER_TYPE"], r["OWNER_ID"]),))


def rows_of(crm: Crm, type_id: int, owner_id: int) -> list[Row]:
    """An owner's rows by SORT, then ID."""
    table = crm.table("productrow")
    ids = table.lookup("owner", (OWNER_CODES[type_id], owner_id))
    return sorted((table.rows[i] for i in ids), key=lambda r: (r["SORT"], r["ID"]))


def replace(crm: Crm, type_id: int, owner_id: int, rows: list[dict[str, Any]]) -> None:
    """Replace all rows of an owner (UPPER_CASE input keys) and recalculate its amount."""
    forget_owner(crm, type_id, owner_id)
    table = crm.table("productrow")
    total = 0.0
    for position, raw in enumerate(rows, start=1):
        row = _normalize(raw, position)
        row.update(ID=crm.next_id("productrow"), OWNER_TYPE=OWNER_CODES[type_id], OWNER_ID=owner_id)
        table.put(row)
        total += row["PRICE"] * row["QUANTITY"]
    etype = entities.TYPES[type_id]
    owners = crm.table(etype.kind)
    owner = owners.get(owner_id)
    if rows and owner is not None and owner.get("IS_MANUAL_OPPORTUNITY") != "Y":
        owners.put({**owner, "OPPORTUNITY": round(total, 2)})
        crm.emit(f"{etype.event_prefix}UPDATE", owner_id)


def copy(crm: Crm, source: tuple[int, int], target: tuple[int, int]) -> None:
    """Give `target` copies of the rows of `source` (what conversion does for the deal)."""
    replace(crm, *target, [dict(r) for r in rows_of(crm, *source)])


def forget_owner(crm: Crm, type_id: int, owner_id: int) -> None:
    """Delete the rows of an owner."""
    code = OWNER_CODES.get(type_id)
    if code is None:
        return
    table = crm.table("productrow")
    for row_id in sorted(table.lookup("owner", (code, owner_id))):
        table.delete(row_id)


def _normalize(raw: dict[str, Any], position: int) -> Row:
    price = float_value(raw.get("PRICE", 0))
    tax_rate = None if raw.get("TAX_RATE") in (None, "") else float_value(raw["TAX_RATE"])
    tax_included = "Y" if str(raw.get("TAX_INCLUDED", "N")).upper() == "Y" else "N"
    exclusive = price / (1 + tax_rate / 100) if tax_rate and tax_included == "Y" else price
    discount_type = int_value(raw.get("DISCOUNT_TYPE_ID", 2)) or 2
    if discount_type == 1:
        discount_sum = float_value(raw.get("DISCOUNT_SUM", 0))
        netto = exclusive + discount_sum
        discount_rate = discount_sum / netto * 100 if netto else 0.0
    else:
        discount_rate = float_value(raw.get("DISCOUNT_RATE", 0))
        netto = exclusive / (1 - discount_rate / 100) if discount_rate < 100 else exclusive
        discount_sum = netto - exclusive
    brutto = netto * (1 + tax_rate / 100) if tax_rate else netto
    name = str(raw.get("PRODUCT_NAME") or "")
    return {
        "PRODUCT_ID": int_value(raw.get("PRODUCT_ID", 0)),
        "PRODUCT_NAME": name,
        "ORIGINAL_PRODUCT_NAME": str(raw.get("ORIGINAL_PRODUCT_NAME") or name),
        "PRODUCT_DESCRIPTION": raw.get("PRODUCT_DESCRIPTION"),
        "PRICE": round(price, 2),
        "PRICE_EXCLUSIVE": round(exclusive, 2),
        "PRICE_NETTO": round(netto, 2),
        "PRICE_BRUTTO": round(brutto, 2),
        "PRICE_ACCOUNT": round(price, 2),
        "QUANTITY": float_value(raw.get("QUANTITY", 1)),
        "DISCOUNT_TYPE_ID": discount_type,
        "DISCOUNT_RATE": round(discount_rate, 2),
        "DISCOUNT_SUM": round(discount_sum, 2),
        "TAX_RATE": tax_rate,
        "TAX_INCLUDED": tax_included,
        "CUSTOMIZED": "Y",
        "MEASURE_CODE": int_value(raw.get("MEASURE_CODE", 796)) or 796,
        "MEASURE_NAME": str(raw.get("MEASURE_NAME") or "pcs"),
        "SORT": int_value(raw.get("SORT", position * 10)),
        "XML_ID": raw.get("XML_ID"),
        "TYPE": int_value(raw.get("TYPE", 1)) or 1,
        "STORE_ID": None,
    }


def _legacy(row: Row) -> dict[str, Any]:
    out = {key: row.get(key) for key in _LEGACY_ORDER}
    for key in _LEGACY_STR:
        out[key] = str(row[key])
    out["PRICE_ACCOUNT"] = f"{row['PRICE_ACCOUNT']:.2f}"
    return out


def _camel(row: Row) -> dict[str, Any]:
    return {camel: row.get(key) for key, camel in _CAMEL.items()}


def _owner(crm: Crm, type_id: int, params: dict[str, Any]) -> int:
    owner_id = entity_id(params, message="The parameter id is invalid or not defined.")
    if crm.table(entities.TYPES[type_id].kind).get(owner_id) is None:
        raise legacy_error("Not found")
    return owner_id


def _getter(type_id: int) -> Method:
    def get(crm: Crm, params: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        """crm.*.productrows.get: the rows, by SORT."""
        return [_legacy(r) for r in rows_of(crm, type_id, _owner(crm, type_id, params))]

    return Method(get)


def _setter(type_id: int) -> Method:
    def set_(crm: Crm, params: dict[str, Any], caller: Caller) -> bool:
        """crm.*.productrows.set: replace all rows."""
        owner_id = _owner(crm, type_id, params)
        raw = params.get("rows", [])
        rows = [] if raw in (None, "") else as_list(raw)
        if rows is None:
            raise legacy_error("The parameter rows must be array.")
        replace(crm, type_id, owner_id, [r for r in rows if isinstance(r, dict)])
        return True

    return Method(set_)


_ITEM_FIELDS = {
    "id": Accessor(lambda r: r["ID"], int_value),
    "productId": Accessor(lambda r: r["PRODUCT_ID"], int_value),
    "ownerType": Accessor(lambda r: r["OWNER_TYPE"], str),
    "ownerId": Accessor(lambda r: r["OWNER_ID"], int_value),
    "sort": Accessor(lambda r: r["SORT"], int_value),
}


def item_list(crm: Crm, params: dict[str, Any], caller: Caller) -> query.Page:
    """crm.item.productrow.list: rows of one owner (or, with an ID list, of several: knob
    `productrow_owner_arrays`). `=ownerType` and `=ownerId` are required - `@ownerId` alone is
    refused (crm/lib/controller/item/productrow.php:367-386); numbers are typed (:281-309)."""
    raw_filter = params.get("filter")
    if not isinstance(raw_filter, dict):
        raw_filter = {}
    for key in ("=ownerType", "=ownerId"):
        if raw_filter.get(key) in (None, ""):
            raise ApiError("REQUIRED_ARG_MISSING", f"Argument '{key}' is required", 400)
    type_id = _CODE_TYPES.get(str(raw_filter["=ownerType"]).upper())
    listed = as_list(raw_filter["=ownerId"])
    if listed is None:
        owner_ids = [int_value(raw_filter["=ownerId"])]
        if type_id is not None:
            owner_ids = [i for i in owner_ids if entities.exists(crm, type_id, i)]
    elif crm.knob("productrow_owner_arrays", "code") == "docs":
        # Docs: "the only key that accepts an array of values is @id ... the method ignores an
        # array" - a required key ignored is a missing one.
        raise ApiError("REQUIRED_ARG_MISSING", "Argument '=ownerId' is required", 400)
    else:
        # Code: the ORM reads `=OWNER_ID: [...]` as IN; the read check takes (int)[...] - item 1
        # for a non-empty array, 0 (refused) for an empty one - not the owners listed
        # (crm/lib/controller/item/productrow.php:367-399). Access here is per user, so a
        # caller with CRM access reads every listed owner's rows; missing owners give none.
        owner_ids = [int_value(v) for v in listed] if listed else []
    if type_id is None or not owner_ids:
        raise ApiError("ACCESS_DENIED", "Access denied", 400)
    table = crm.table("productrow")
    candidates: set[int] = set()
    for owner_id in owner_ids:
        candidates |= table.lookup("owner", (OWNER_CODES[type_id], owner_id))
    conditions = {
        k: v for k, v in raw_filter.items() if query.split_key(k)[1] in ("id", "productId")
    }
    where = query.compile_filter(conditions, _ITEM_FIELDS.get)
    raw_order = params.get("order")
    raw_order = raw_order if isinstance(raw_order, dict) else {}
    order = {k: v for k, v in raw_order.items() if k in ("id", "sort")}
    orders = query.compile_order(order, _ITEM_FIELDS.get, default="sort")
    orders.append(query.Order("id", _ITEM_FIELDS["id"]))
    rows, total, following = query.find(
        table, where, orders, query.parse_start(params.get("start")), candidates=candidates
    )
    return query.Page({"productRows": [_camel(r) for r in rows]}, total, following)


METHODS = {
    "crm.lead.productrows.get": _getter(LEAD),
    "crm.lead.productrows.set": _setter(LEAD),
    "crm.deal.productrows.get": _getter(DEAL),
    "crm.deal.productrows.set": _setter(DEAL),
    "crm.item.productrow.list": Method(item_list, D7),
}
