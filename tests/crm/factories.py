"""Test data for the pure conversion domain: portal facts from the doc fixtures, leads, policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from b24app.crm.facts import PortalFacts

DOCS = Path(__file__).resolve().parents[2] / "fixtures" / "bitrix24-docs"


def doc(name: str) -> Any:
    """A JSON example copied from the official docs (fixtures/bitrix24-docs/<name>.json)."""
    return json.loads((DOCS / f"{name}.json").read_text(encoding="utf-8"))


def deal_stages(pipeline: int) -> list[dict[str, Any]]:
    """`crm.status.list` items of a pipeline's stages, prefixed `C<id>:` outside pipeline 0."""
    entity = "DEAL_STAGE" if pipeline == 0 else f"DEAL_STAGE_{pipeline}"
    prefix = "" if pipeline == 0 else f"C{pipeline}:"
    return [
        {
            "ENTITY_ID": entity,
            "STATUS_ID": f"{prefix}NEW",
            "NAME": "New",
            "SORT": "10",
            "SEMANTICS": None,
            "CATEGORY_ID": str(pipeline),
        },
        {
            "ENTITY_ID": entity,
            "STATUS_ID": f"{prefix}WON",
            "NAME": "Won",
            "SORT": "20",
            "SEMANTICS": "S",
            "CATEGORY_ID": str(pipeline),
        },
        {
            "ENTITY_ID": entity,
            "STATUS_ID": f"{prefix}LOSE",
            "NAME": "Lost",
            "SORT": "30",
            "SEMANTICS": "F",
            "CATEGORY_ID": str(pipeline),
        },
    ]


def facts() -> PortalFacts:
    """The docs' portal: lead stages NEW (active), CONVERTED (S), JUNK (F); pipelines 0 and 7."""
    return PortalFacts.from_results(
        statuses=doc("crm.status.list.lead-stages"),
        categories=doc("crm.category.list.deal"),
        deal_stages=[deal_stages(0), deal_stages(7)],
    )


def lead(lead_id: int, **fields: Any) -> dict[str, Any]:
    """An active lead as `crm.lead.list` returns it (multifields selected), overridable."""
    base: dict[str, Any] = {
        "ID": str(lead_id),
        "TITLE": f"Deal request {lead_id}",
        "HONORIFIC": None,
        "NAME": "Erasmus",
        "SECOND_NAME": None,
        "LAST_NAME": "Golden",
        "COMPANY_TITLE": "Acme",
        "COMPANY_ID": "0",
        "CONTACT_ID": None,
        "IS_RETURN_CUSTOMER": "N",
        "BIRTHDATE": "",
        "SOURCE_ID": "CALL",
        "SOURCE_DESCRIPTION": None,
        "STATUS_ID": "NEW",
        "STATUS_SEMANTIC_ID": "P",
        "POST": "CTO",
        "COMMENTS": "call back",
        "CURRENCY_ID": "USD",
        "OPPORTUNITY": "15000.00",
        "IS_MANUAL_OPPORTUNITY": "Y",
        "ASSIGNED_BY_ID": "1",
        "DATE_CREATE": "2024-05-31T15:10:16+02:00",
        "ADDRESS": "7677 Hollow Ridge Alley",
        "ADDRESS_2": None,
        "ADDRESS_CITY": "Jakarta",
        "ADDRESS_COUNTRY": "Indonesia",
        "UTM_SOURCE": "google",
        "UTM_MEDIUM": None,
        "UF_CRM_1704817278": "x",
        "PHONE": [
            {
                "ID": "11658",
                "VALUE_TYPE": "WORK",
                "VALUE": f"+1555{lead_id:07d}",
                "TYPE_ID": "PHONE",
            }
        ],
        "EMAIL": [
            {
                "ID": "11659",
                "VALUE_TYPE": "WORK",
                "VALUE": f"lead{lead_id}@example.com",
                "TYPE_ID": "EMAIL",
            }
        ],
    }
    return base | fields


def product_row(row_id: int, lead_id: int) -> dict[str, Any]:
    """A lead's product row as `crm.item.productrow.list` returns it (camelCase)."""
    return {
        "id": row_id,
        "ownerId": lead_id,
        "ownerType": "L",
        "productId": 9621,
        "productName": "iphone 14",
        "price": 90000,
        "priceAccount": 90000,
        "priceExclusive": 81818.18,
        "priceNetto": 90909.09,
        "priceBrutto": 100000,
        "quantity": 3,
        "discountTypeId": 2,
        "discountRate": 10,
        "discountSum": 9090.9,
        "taxRate": 10,
        "taxIncluded": "Y",
        "taxName": "VAT 10",
        "customized": "Y",
        "measureCode": 796,
        "measureName": "pcs",
        "sort": 10,
        "xmlId": "sale_basket_1",
        "type": 4,
        "storeId": 19,
    }
