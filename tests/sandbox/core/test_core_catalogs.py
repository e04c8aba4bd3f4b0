"""Product rows, stages and pipelines, duplicate search, timeline comments, crm.item.*."""

from __future__ import annotations

import pytest

ROWS = [
    {"PRODUCT_NAME": "Seat", "PRICE": 100, "QUANTITY": 2},
    {"PRODUCT_NAME": "Setup", "PRICE": 50.5, "QUANTITY": 1, "SORT": 5},
]


def test_productrows_set_replaces_all_rows_and_get_reads_them(call, portal):
    deal_id = call("crm.deal.add", fields={"TITLE": "D"})
    call("crm.deal.productrows.set", id=deal_id, rows=[{"PRODUCT_NAME": "Old", "PRICE": 1}])
    call("crm.deal.productrows.set", id=deal_id, rows=ROWS)

    rows = call("crm.deal.productrows.get", id=deal_id)

    assert [r["PRODUCT_NAME"] for r in rows] == ["Setup", "Seat"]  # by SORT
    assert rows[1]["OWNER_ID"] == str(deal_id) and rows[1]["OWNER_TYPE"] == "D"
    assert isinstance(rows[1]["ID"], str) and rows[1]["PRICE_ACCOUNT"] == "100.00"
    assert portal.counts()["productrow"] == 2


def test_productrows_set_recalculates_a_non_manual_amount(call):
    automatic = call.lead(OPPORTUNITY=1)
    manual = call.lead(OPPORTUNITY=1, IS_MANUAL_OPPORTUNITY="Y")
    for lead_id in (automatic, manual):
        call("crm.lead.productrows.set", id=lead_id, rows=ROWS)

    assert call("crm.lead.get", id=automatic)["OPPORTUNITY"] == "250.50"
    assert call("crm.lead.get", id=manual)["OPPORTUNITY"] == "1.00"


def test_productrows_errors(call):
    assert call.error("crm.lead.productrows.get", id=77).description == "Not found"
    invalid = call.error("crm.deal.productrows.get", id="x")
    assert invalid.description == "The parameter id is invalid or not defined."


def test_item_productrow_list_for_several_owners(call):
    first, second, empty = call.lead(), call.lead(), call.lead()
    call("crm.lead.productrows.set", id=first, rows=ROWS)
    call("crm.lead.productrows.set", id=second, rows=ROWS[:1])

    one = call.full("crm.item.productrow.list", filter={"=ownerType": "L", "=ownerId": first})
    many = call(
        "crm.item.productrow.list", filter={"=ownerType": "L", "=ownerId": [first, second, empty]}
    )

    assert one.total == 2
    row = one.result["productRows"][0]
    assert (row["ownerId"], row["ownerType"], row["productName"], row["price"]) == (
        first,
        "L",
        "Setup",
        50.5,
    )
    assert {"id", "productId", "priceNetto", "quantity", "discountTypeId", "sort"} <= set(row)
    assert [r["ownerId"] for r in many["productRows"]] == [first, first, second]


def test_item_productrow_list_errors(call):
    assert (
        call.error("crm.item.productrow.list", filter={"=ownerType": "L"}).code
        == "REQUIRED_ARG_MISSING"
    )
    missing = call.error("crm.item.productrow.list", filter={"=ownerType": "D", "=ownerId": 5})
    assert (missing.code, missing.status) == ("ACCESS_DENIED", 400)


def test_lead_stages_with_semantics(call, doc):
    stages = call("crm.status.list", filter={"ENTITY_ID": "STATUS"}, order={"SORT": "ASC"})

    assert [(s["STATUS_ID"], s["SEMANTICS"]) for s in stages] == [
        ("NEW", None),
        ("IN_PROCESS", None),
        ("PROCESSED", None),
        ("CONVERTED", "S"),
        ("JUNK", "F"),
    ]
    assert [s["EXTRA"]["SEMANTICS"] for s in stages][-2:] == ["success", "failure"]
    assert set(stages[0]) == set(doc("crm.status.list.lead-stages")["result"][0])


def test_deal_stages_per_pipeline_are_prefixed(call):
    default = call("crm.status.list", filter={"ENTITY_ID": "DEAL_STAGE"})
    renewal = call.full("crm.status.list", filter={"ENTITY_ID": "DEAL_STAGE_7"})

    assert default[0]["STATUS_ID"] == "NEW" and default[0]["CATEGORY_ID"] is None
    assert [s["STATUS_ID"] for s in renewal.result][:1] == ["C7:NEW"]
    assert {s["CATEGORY_ID"] for s in renewal.result} == {"7"}
    assert [s["SEMANTICS"] for s in renewal.result].count("S") == 1
    assert renewal.total == len(renewal.result)
    assert call("crm.status.list", filter={"ENTITY_ID": "DEAL_STAGE_0"}) == []


def test_category_list_includes_the_default_pipeline(call, doc):
    answer = call.full("crm.category.list", entityTypeId=2)
    expected = doc("crm.category.list.deal")

    assert answer.result["categories"][:2] == expected["result"]["categories"]
    assert answer.total == len(answer.result["categories"])
    assert call.error("crm.category.list").code == "100"


def test_findbycomm_phone_and_email(call):
    lead_a = call.lead(PHONE=[{"VALUE": "+1 (555) 010-0000"}], EMAIL=[{"VALUE": "Ann@Example.com"}])
    lead_b = call.lead(PHONE=[{"VALUE": "15550100000 ext. 12"}])
    contact = call("crm.contact.add", fields={"NAME": "C", "PHONE": [{"VALUE": "+15550100000"}]})
    call.lead(PHONE=[{"VALUE": "+15559999999"}])

    by_phone = call("crm.duplicate.findbycomm", type="PHONE", values=["+1 555 010 0000"])
    by_mail = call(
        "crm.duplicate.findbycomm", type="EMAIL", values=["ann@example.com"], entity_type="LEAD"
    )
    contacts_only = call(
        "crm.duplicate.findbycomm", type="PHONE", values=["15550100000"], entity_type="CONTACT"
    )

    assert by_phone == {"LEAD": [lead_a, lead_b], "CONTACT": [contact]}
    assert by_mail == {"LEAD": [lead_a]}
    assert contacts_only == {"CONTACT": [contact]}
    assert call("crm.duplicate.findbycomm", type="EMAIL", values=["nobody@example.com"]) == []


def test_findbycomm_caps_matches_at_twenty_leads_first(call):
    for _ in range(20):
        call.lead(PHONE=[{"VALUE": "+15550200000"}])
    call("crm.contact.add", fields={"NAME": "Hidden", "PHONE": [{"VALUE": "+15550200000"}]})

    found = call("crm.duplicate.findbycomm", type="PHONE", values=["+15550200000"])

    assert list(found) == ["LEAD"] and len(found["LEAD"]) == 20


def test_findbycomm_reads_only_twenty_values(call):
    leads = [call.lead(EMAIL=[{"VALUE": f"u{n}@example.com"}]) for n in range(21)]

    found = call(
        "crm.duplicate.findbycomm", type="EMAIL", values=[f"u{n}@example.com" for n in range(21)]
    )

    assert found["LEAD"] == leads[:20]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"values": ["1"]}, "Communication type is not defined"),
        ({"type": "PHONE"}, "Communication values is not defined"),
        ({"type": "FAX", "values": ["1"]}, ""),
    ],
)
def test_findbycomm_errors(call, params, code):
    assert call.error("crm.duplicate.findbycomm", **params).code == code


def test_timeline_comments(call, clock):
    deal_id = call("crm.deal.add", fields={})
    first = call(
        "crm.timeline.comment.add",
        fields={"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal", "COMMENT": "Converted from lead 5"},
    )
    clock.now += 60
    call(
        "crm.timeline.comment.add",
        fields={"ENTITY_ID": deal_id, "ENTITY_TYPE": "DEAL", "COMMENT": "Second", "AUTHOR_ID": 2},
    )

    listed = call.full(
        "crm.timeline.comment.list", filter={"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal"}
    )

    assert isinstance(first, int)
    assert listed.total == 2
    assert listed.result[0]["COMMENT"] == "Converted from lead 5"
    assert listed.result[1]["AUTHOR_ID"] == "2"
    assert set(listed.result[0]) == {
        "ID",
        "ENTITY_ID",
        "ENTITY_TYPE",
        "CREATED",
        "COMMENT",
        "AUTHOR_ID",
        "FILES",
    }
    assert (
        call.error(
            "crm.timeline.comment.add",
            fields={"ENTITY_ID": 99, "ENTITY_TYPE": "deal", "COMMENT": "x"},
        ).code
        == "NOT_FOUND"
    )
    assert (
        call.error(
            "crm.timeline.comment.add",
            fields={"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal", "COMMENT": " "},
        ).code
        == "INVALID_ARG_VALUE"
    )


def test_item_list_and_get_speak_camel_case(call):
    call(
        "crm.lead.userfield.add",
        fields={"FIELD_NAME": "1720019876534", "USER_TYPE_ID": "string", "LABEL": "Ref"},
    )
    lead_id = call.lead(
        NAME="Ann",
        OPPORTUNITY=999.9,
        STATUS_ID="IN_PROCESS",
        PHONE=[{"VALUE": "+1"}],
        UF_CRM_1720019876534="321",
    )

    item = call("crm.item.get", entityTypeId=1, id=lead_id)["item"]
    page = call.full(
        "crm.item.list",
        entityTypeId=1,
        filter={"@stageId": ["IN_PROCESS"], ">=opportunity": 900},
        select=["id", "stageId"],
    )

    assert (item["id"], item["stageId"], item["stageSemanticId"], item["opportunity"]) == (
        lead_id,
        "IN_PROCESS",
        "P",
        999.9,
    )
    assert (item["companyId"], item["contactIds"], item["entityTypeId"]) == (0, [], 1)
    assert item["fm"][0]["typeId"] == "PHONE" and item["fm"][0]["value"] == "+1"
    assert item["ufCrm_1720019876534"] == "321"
    assert page.result == {"items": [{"id": lead_id, "stageId": "IN_PROCESS", "entityTypeId": 1}]}
    assert page.total == 1


def test_item_deal_fields(call):
    deal_id = call("crm.deal.add", fields={"CATEGORY_ID": 7, "ORIGIN_ID": "x"})

    items = call("crm.item.list", entityTypeId=2, filter={"categoryId": 7, "originId": "x"})[
        "items"
    ]

    assert items[0]["id"] == deal_id
    assert (items[0]["stageId"], items[0]["categoryId"], items[0]["leadId"]) == ("C7:NEW", 7, 0)


def test_item_errors(call):
    lead_id = call.lead()

    bad_filter = call.error("crm.item.list", entityTypeId=1, filter={"noSuchField": 1})
    assert (bad_filter.code, bad_filter.description) == (
        "INVALID_ARG_VALUE",
        "Invalid filter: field 'noSuchField' is not allowed in filter",
    )
    assert (
        call.error("crm.item.list", entityTypeId=1, order={"nope": "ASC"}).code
        == "INVALID_ARG_VALUE"
    )
    assert call.error("crm.item.get", entityTypeId=1, id=lead_id + 1).code == "NOT_FOUND"
    assert call.error("crm.item.get", entityTypeId=7777, id=1).code == "NOT_FOUND"


def test_recalculated_amount_fires_an_update_event(call, events):
    lead_id = call.lead()
    call("crm.lead.productrows.set", id=lead_id, rows=ROWS)

    assert events[-1] == ("ONCRMLEADUPDATE", {"FIELDS": {"ID": lead_id}})


def test_item_productrow_list_owner_array_as_the_code_reads_it(call):
    """crm/lib/controller/item/productrow.php:367-399: `=ownerId: [ids]` reaches the ORM as IN
    (missing owners give no rows, no error); `@ownerId` alone is a missing `=ownerId`; numbers
    are typed (:281-309). Knob productrow_owner_arrays=code, the default."""
    first, second = call.lead(), call.lead()
    call("crm.lead.productrows.set", id=second, rows=ROWS)

    many = call(
        "crm.item.productrow.list", filter={"=ownerType": "L", "=ownerId": [first, second, 999]}
    )
    at_only = call.error("crm.item.productrow.list", filter={"=ownerType": "L", "@ownerId": [2]})
    empty = call.error("crm.item.productrow.list", filter={"=ownerType": "L", "=ownerId": []})

    assert [r["ownerId"] for r in many["productRows"]] == [second, second]
    row = many["productRows"][0]
    assert all(isinstance(row[k], int) for k in ("id", "ownerId", "productId", "sort"))
    assert isinstance(row["price"], float | int) and not isinstance(row["price"], bool)
    assert (at_only.code, at_only.description) == (
        "REQUIRED_ARG_MISSING",
        "Argument '=ownerId' is required",
    )
    assert empty.code == "ACCESS_DENIED"


def test_item_productrow_list_owner_array_as_the_docs_read_it(portal, call):
    """Knob productrow_owner_arrays=docs: "the only key that accepts an array of values is @id
    ... the method ignores an array" (docs api-reference/crm/universal/product-rows/
    crm-item-productrow-list.md) - the required `=ownerId` counts as missing."""
    portal.set_knob("productrow_owner_arrays", "docs")
    lead_id = call.lead()

    error = call.error(
        "crm.item.productrow.list", filter={"=ownerType": "L", "=ownerId": [lead_id]}
    )
    one = call("crm.item.productrow.list", filter={"=ownerType": "L", "=ownerId": lead_id})

    assert error.code == "REQUIRED_ARG_MISSING"
    assert one == {"productRows": []}
