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


def test_contact_gets_the_native_field_list_and_origin() -> None:
    """leadconversionmapper.php:103-127: person, COMMENTS, SOURCE, UTM, multifields (the address
    is written apart: the universal API has no ADDRESS fields)."""
    fields = contact_fields(
        lead(
            5,
            BIRTHDATE="1990-01-01T00:00:00+02:00",
            HONORIFIC="HNR_EN_1",
            OPENED="Y",
            FACE_ID="7",
            WEB=[{"ID": "1", "VALUE": "acme.test", "VALUE_TYPE": "WORK"}],
        )
    )
    assert fields == {
        "NAME": "Erasmus",
        "LAST_NAME": "Golden",
        "HONORIFIC": "HNR_EN_1",
        "POST": "CTO",
        "BIRTHDATE": "1990-01-01T00:00:00+02:00",
        "COMMENTS": "call back",
        "OPENED": "Y",
        "ASSIGNED_BY_ID": "1",
        "SOURCE_ID": "CALL",
        "UTM_SOURCE": "google",
        "PHONE": [{"VALUE": "+15550000005", "VALUE_TYPE": "WORK"}],
        "EMAIL": [{"VALUE": "lead5@example.com", "VALUE_TYPE": "WORK"}],
        "WEB": [{"VALUE": "acme.test", "VALUE_TYPE": "WORK"}],
        "ORIGINATOR_ID": "b24app",
        "ORIGIN_ID": "lead-5",
    }
    assert mapping.address_fields(lead(5)) == {
        "ADDRESS": "7677 Hollow Ridge Alley",
        "ADDRESS_CITY": "Jakarta",
        "ADDRESS_COUNTRY": "Indonesia",
    }


def test_a_contact_without_a_name_gets_the_default_name() -> None:
    """leadconversionmapper.php:324-332."""
    fields = contact_fields(lead(5, NAME="", LAST_NAME=None))
    assert fields["NAME"] == mapping.DEFAULT_CONTACT_NAME


def test_company_title_falls_back_to_the_lead_title_then_its_id() -> None:
    """leadconversionmapper.php:144: COMPANY_TITLE, else the lead's TITLE."""
    assert company_fields(lead(5))["TITLE"] == "Acme"
    assert company_fields(lead(5, COMPANY_TITLE=None))["TITLE"] == "Deal request 5"
    assert company_fields(lead(5, COMPANY_TITLE="", TITLE=" "))["TITLE"] == "Lead #5"


def test_company_gets_the_communications_like_the_contact() -> None:
    """leadconversionmapper.php:140-160 copies PHONE/EMAIL/WEB/IM to the company too."""
    fields = company_fields(lead(5))
    assert fields == {
        "TITLE": "Acme",
        "COMMENTS": "call back",
        "ASSIGNED_BY_ID": "1",
        "UTM_SOURCE": "google",
        "PHONE": [{"VALUE": "+15550000005", "VALUE_TYPE": "WORK"}],
        "EMAIL": [{"VALUE": "lead5@example.com", "VALUE_TYPE": "WORK"}],
        "ORIGINATOR_ID": "b24app",
        "ORIGIN_ID": "lead-5",
    }


def test_deal_fields_copy_the_lead_with_the_first_deal_type() -> None:
    fields = deal_fields(
        lead(5, LEAD_ID="5", UTM_CAMPAIGN="spring", WEBFORM_ID="3"), pipeline=7, deal_type="SALE"
    )
    assert fields == {
        "TITLE": "Deal request 5",
        "OPPORTUNITY": "15000.00",
        "CURRENCY_ID": "USD",
        "SOURCE_ID": "CALL",
        "ASSIGNED_BY_ID": "1",
        "COMMENTS": "call back",
        "UTM_SOURCE": "google",
        "UTM_CAMPAIGN": "spring",
        "TYPE_ID": "SALE",
        "CATEGORY_ID": 7,
        "ORIGINATOR_ID": "b24app",
        "ORIGIN_ID": "lead-5",
    }
    assert deal_fields(lead(5), pipeline=0)["CATEGORY_ID"] == 0
    assert "TYPE_ID" not in deal_fields(lead(5), pipeline=0)


def test_the_docs_lead_maps_cleanly() -> None:
    read = doc("crm.lead.list.page")["result"][0]
    for fields in (contact_fields(read), company_fields(read), deal_fields(read, pipeline=0)):
        assert "LEAD_ID" not in fields
        assert not any(k.startswith("UF_") for k in fields)
        assert all(not mapping.is_empty(v) for v in fields.values())
    assert mapping.address_fields(read)["ADDRESS_COUNTRY"] == "Indonesia"
    assert "BIRTHDATE" not in contact_fields(read)


def test_item_fields_are_camel_case_with_lead_id_and_fm() -> None:
    """crm.item.add speaks camelCase, takes `leadId` (Factory/Deal.php:415-421) and `fm`."""
    fields = contact_fields(lead(5)) | {"COMPANY_ID": 9, "ORIGIN_VERSION": "t1"}
    item = mapping.item_fields(fields, lead_id=5)
    assert item["leadId"] == 5
    assert item["lastName"] == "Golden" and item["assignedById"] == "1"
    assert item["originatorId"] == "b24app" and item["originId"] == "lead-5"
    assert item["originVersion"] == "t1" and item["companyId"] == 9
    assert item["utmSource"] == "google"
    assert item["fm"] == [
        {"typeId": "PHONE", "valueType": "WORK", "value": "+15550000005"},
        {"typeId": "EMAIL", "valueType": "WORK", "value": "lead5@example.com"},
    ]
    assert "PHONE" not in item and "phone" not in item
    assert mapping.item_id({"item": {"id": 17, "title": "x"}}) == 17
    assert mapping.item_id(17) == 17 and mapping.item_id({"item": None}) is None


def test_deal_clients() -> None:
    assert deal_clients(contact_ids=[3, 5], company_id=4) == {
        "CONTACT_IDS": [3, 5],
        "COMPANY_ID": 4,
    }
    assert deal_clients(contact_ids=(), company_id=None) == {}


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
