"""Lead -> contact / company / deal fields, product rows, origin marks."""

from __future__ import annotations

from b24app.crm import mapping
from b24app.crm.mapping import (
    company_fields,
    contact_fields,
    deal_clients,
    deal_fields,
    lead_id_of,
    multifield,
    origin_id,
    product_row,
    product_rows,
)

from .factories import doc, lead
from .factories import product_row as lead_row


def test_origin_id_is_one_obvious_function_and_reads_back() -> None:
    assert origin_id(123) == "lead-123"
    assert lead_id_of("lead-123") == 123
    assert lead_id_of("lead-x") is None and lead_id_of(None) is None and lead_id_of("12") is None


def test_multifields_are_rewritten_without_their_ids() -> None:
    read = [
        {"ID": "11658", "VALUE_TYPE": "OTHER", "VALUE": "+15454777777", "TYPE_ID": "PHONE"},
        {"ID": "11659", "VALUE_TYPE": "WORK", "VALUE": " ", "TYPE_ID": "PHONE"},
        {"ID": "11660", "VALUE": "+1999", "TYPE_ID": "PHONE"},
        "junk",
    ]
    assert multifield(read) == [
        {"VALUE": "+15454777777", "VALUE_TYPE": "OTHER"},
        {"VALUE": "+1999"},
    ]
    assert multifield(None) == [] and multifield("x") == []


def test_contact_gets_the_person_communications_address_and_origin() -> None:
    fields = contact_fields(
        lead(
            5,
            BIRTHDATE="1990-01-01T00:00:00+02:00",
            HONORIFIC="HNR_EN_1",
            WEB=[{"ID": "1", "VALUE": "acme.test", "VALUE_TYPE": "WORK"}],
        )
    )
    assert fields == {
        "NAME": "Erasmus",
        "LAST_NAME": "Golden",
        "HONORIFIC": "HNR_EN_1",
        "POST": "CTO",
        "BIRTHDATE": "1990-01-01T00:00:00+02:00",
        "ASSIGNED_BY_ID": "1",
        "SOURCE_ID": "CALL",
        "PHONE": [{"VALUE": "+15550000005", "VALUE_TYPE": "WORK"}],
        "EMAIL": [{"VALUE": "lead5@example.com", "VALUE_TYPE": "WORK"}],
        "WEB": [{"VALUE": "acme.test", "VALUE_TYPE": "WORK"}],
        "ADDRESS": "7677 Hollow Ridge Alley",
        "ADDRESS_CITY": "Jakarta",
        "ADDRESS_COUNTRY": "Indonesia",
        "ORIGINATOR_ID": "b24app",
        "ORIGIN_ID": "lead-5",
    }


def test_company_title_falls_back_to_the_lead_title_then_its_id() -> None:
    assert company_fields(lead(5), communications=False)["TITLE"] == "Acme"
    assert (
        company_fields(lead(5, COMPANY_TITLE=None), communications=False)["TITLE"]
        == "Deal request 5"
    )
    assert (
        company_fields(lead(5, COMPANY_TITLE="", TITLE=" "), communications=False)["TITLE"]
        == "Lead #5"
    )


def test_company_gets_communications_only_when_it_is_the_only_client() -> None:
    alone = company_fields(lead(5), communications=True)
    beside_contact = company_fields(lead(5), communications=False)
    assert alone["PHONE"] == [{"VALUE": "+15550000005", "VALUE_TYPE": "WORK"}]
    assert alone["ADDRESS_CITY"] == "Jakarta"
    assert beside_contact == {
        "TITLE": "Acme",
        "ASSIGNED_BY_ID": "1",
        "ORIGINATOR_ID": "b24app",
        "ORIGIN_ID": "lead-5",
    }
    assert "NAME" not in alone and "LAST_NAME" not in alone


def test_deal_fields_copy_the_lead_and_never_send_lead_id() -> None:
    fields = deal_fields(lead(5, LEAD_ID="5", UTM_CAMPAIGN="spring"), pipeline=7)
    assert fields == {
        "TITLE": "Deal request 5",
        "OPPORTUNITY": "15000.00",
        "IS_MANUAL_OPPORTUNITY": "Y",
        "CURRENCY_ID": "USD",
        "SOURCE_ID": "CALL",
        "ASSIGNED_BY_ID": "1",
        "COMMENTS": "call back",
        "UTM_SOURCE": "google",
        "UTM_CAMPAIGN": "spring",
        "CATEGORY_ID": 7,
        "ORIGINATOR_ID": "b24app",
        "ORIGIN_ID": "lead-5",
    }
    assert deal_fields(lead(5), pipeline=0)["CATEGORY_ID"] == 0


def test_the_docs_lead_maps_cleanly() -> None:
    read = doc("crm.lead.list.page")["result"][0]
    for fields in (
        contact_fields(read),
        company_fields(read, communications=True),
        deal_fields(read, pipeline=0),
    ):
        assert "LEAD_ID" not in fields
        assert not any(k.startswith("UF_") for k in fields)
        assert all(not mapping.is_empty(v) for v in fields.values())
    assert contact_fields(read)["ADDRESS_COUNTRY"] == "Indonesia"
    assert "BIRTHDATE" not in contact_fields(read)


def test_deal_clients() -> None:
    assert deal_clients(contact_id=3, company_id=4) == {
        "CONTACT_ID": 3,
        "CONTACT_IDS": [3],
        "COMPANY_ID": 4,
    }
    assert deal_clients(contact_id=None, company_id=None) == {}


def test_product_rows_go_from_camel_case_to_the_legacy_upper_case() -> None:
    assert product_row(lead_row(17649, 5)) == {
        "PRODUCT_ID": 9621,
        "PRODUCT_NAME": "iphone 14",
        "PRICE": 90000,
        "QUANTITY": 3,
        "DISCOUNT_TYPE_ID": 2,
        "DISCOUNT_RATE": 10,
        "DISCOUNT_SUM": 9090.9,
        "TAX_RATE": 10,
        "TAX_INCLUDED": "Y",
        "MEASURE_CODE": 796,
        "MEASURE_NAME": "pcs",
        "SORT": 10,
    }
    legacy = {
        "PRODUCT_ID": 0,
        "PRODUCT_NAME": "Service",
        "PRICE": 5.5,
        "QUANTITY": 1,
        "OWNER_ID": 5,
        "ID": 3,
    }
    assert product_row(legacy) == {
        "PRODUCT_ID": 0,
        "PRODUCT_NAME": "Service",
        "PRICE": 5.5,
        "QUANTITY": 1,
    }
    assert product_rows([{"taxName": "VAT"}, legacy]) == [product_row(legacy)]


def test_link_ids() -> None:
    assert [mapping.link_id(v) for v in ("0", 0, "", None, "12", 12, True, "x")] == [
        None,
        None,
        None,
        None,
        12,
        12,
        None,
        None,
    ]
