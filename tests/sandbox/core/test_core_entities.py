"""crm.lead/deal/contact/company: add, get, list, update, delete, fields; platform rules."""

from __future__ import annotations

import pytest

from sandbox.errors import ApiError
from sandbox.portal import CallContext


def test_add_returns_int_and_get_answers_string_typed_fields(call, doc):
    lead_id = call.lead(
        NAME="Gleb", LAST_NAME="Titov", OPPORTUNITY=15000, ASSIGNED_BY_ID=2, BIRTHDATE="1980-02-03"
    )
    lead = call("crm.lead.get", id=lead_id)

    assert isinstance(lead_id, int)
    assert lead["ID"] == str(lead_id)
    assert lead["OPPORTUNITY"] == "15000.00"
    assert lead["ASSIGNED_BY_ID"] == "2"
    assert lead["DATE_CREATE"] == "2024-05-29T19:26:40+03:00"
    assert lead["BIRTHDATE"] == "1980-02-03T00:00:00+03:00"
    assert lead["DATE_CLOSED"] == ""
    assert lead["STATUS_ID"] == "NEW"
    assert lead["STATUS_SEMANTIC_ID"] == "P"
    # every field of the doc's list example is there (its UF_* belong to that portal)
    example = doc("crm.lead.list.page")["result"][0]
    assert {k for k in example if not k.startswith("UF_")} <= set(lead)


def test_multifields_read_back_with_ids_and_type(call):
    lead_id = call.lead(
        PHONE=[{"VALUE": "+1 555 0100", "VALUE_TYPE": "WORK"}, {"VALUE": "+1 555 0101"}],
        EMAIL=[{"VALUE": "a@example.com", "VALUE_TYPE": "HOME"}],
    )
    lead = call("crm.lead.get", id=lead_id)

    phones = lead["PHONE"]
    assert [p["VALUE"] for p in phones] == ["+1 555 0100", "+1 555 0101"]
    assert [p["VALUE_TYPE"] for p in phones] == ["WORK", "WORK"]
    assert all(p["TYPE_ID"] == "PHONE" and p["ID"].isdigit() for p in phones)
    assert lead["EMAIL"][0]["VALUE_TYPE"] == "HOME"
    assert lead["HAS_PHONE"] == "Y" and lead["HAS_EMAIL"] == "Y"
    assert "WEB" not in lead


def test_multifield_update_edits_by_id_deletes_and_appends_without_id(call):
    lead_id = call.lead(PHONE=[{"VALUE": "111"}, {"VALUE": "222"}])
    first, second = call("crm.lead.get", id=lead_id)["PHONE"]

    call(
        "crm.lead.update",
        id=lead_id,
        fields={
            "PHONE": [
                {"ID": first["ID"], "VALUE": "333", "VALUE_TYPE": "MOBILE"},
                {"ID": second["ID"], "DELETE": "Y"},
                {"VALUE": "444"},
            ]
        },
    )
    phones = call("crm.lead.get", id=lead_id)["PHONE"]

    assert (phones[0]["ID"], phones[0]["VALUE"], phones[0]["VALUE_TYPE"]) == (
        first["ID"],
        "333",
        "MOBILE",
    )
    assert [p["VALUE"] for p in phones] == ["333", "444"]


def test_update_with_phone_without_id_adds_a_second_phone(call):
    """The legacy API appends; it never replaces the list (a classic duplicate-phone trap)."""
    lead_id = call.lead(PHONE=[{"VALUE": "111"}])
    call("crm.lead.update", id=lead_id, fields={"PHONE": [{"VALUE": "111"}]})

    assert [p["VALUE"] for p in call("crm.lead.get", id=lead_id)["PHONE"]] == ["111", "111"]


def test_unknown_and_read_only_fields_are_dropped_silently(call):
    lead_id = call.lead(
        NO_SUCH_FIELD="x", STATUS_SEMANTIC_ID="S", IS_RETURN_CUSTOMER="Y", DATE_CREATE="2001-01-01"
    )
    lead = call("crm.lead.get", id=lead_id)

    assert "NO_SUCH_FIELD" not in lead
    assert lead["STATUS_SEMANTIC_ID"] == "P"
    assert lead["IS_RETURN_CUSTOMER"] == "N"
    assert lead["DATE_CREATE"].startswith("2024-")


@pytest.mark.parametrize("kind", ["deal", "contact", "company"])
def test_lead_id_is_read_only_on_add_and_update(call, kind):
    lead_id = call.lead(NAME="Origin")
    item_id = call(f"crm.{kind}.add", fields={"TITLE": "T", "NAME": "N", "LEAD_ID": lead_id})
    call(f"crm.{kind}.update", id=item_id, fields={"LEAD_ID": lead_id})

    assert call(f"crm.{kind}.get", id=item_id)["LEAD_ID"] is None
    assert call(f"crm.{kind}.list", filter={"LEAD_ID": lead_id}) == []
    described = call(f"crm.{kind}.fields")["LEAD_ID"]
    assert described["isReadOnly"] is True
    assert described["type"] == "crm_lead"


@pytest.mark.parametrize("kind", ["lead", "deal", "contact", "company"])
def test_originator_and_origin_id_are_writable_and_filterable(call, kind):
    item_id = call(
        f"crm.{kind}.add", fields={"TITLE": "T", "ORIGINATOR_ID": "b24app", "ORIGIN_ID": "lead-7"}
    )
    call(f"crm.{kind}.add", fields={"TITLE": "Other", "ORIGINATOR_ID": "b24app", "ORIGIN_ID": "x"})

    found = call(
        f"crm.{kind}.list",
        filter={"ORIGINATOR_ID": "b24app", "ORIGIN_ID": "lead-7"},
        select=["ID", "ORIGIN_ID"],
    )
    assert found == [{"ID": str(item_id), "ORIGIN_ID": "lead-7"}]
    assert call(f"crm.{kind}.fields")["ORIGIN_ID"]["isReadOnly"] is False


def test_setting_contact_or_company_makes_a_repeat_lead(call):
    contact_id = call("crm.contact.add", fields={"NAME": "Ann"})
    company_id = call("crm.company.add", fields={"TITLE": "Acme"})
    plain = call.lead()
    with_contact = call.lead(CONTACT_ID=contact_id)
    call("crm.lead.update", id=plain, fields={"COMPANY_ID": company_id})

    assert call("crm.lead.get", id=with_contact)["IS_RETURN_CUSTOMER"] == "Y"
    updated = call("crm.lead.get", id=plain)
    assert updated["IS_RETURN_CUSTOMER"] == "Y"
    assert updated["COMPANY_ID"] == str(company_id)


@pytest.mark.parametrize(
    ("status", "semantic", "closed"),
    [("IN_PROCESS", "P", False), ("CONVERTED", "S", True), ("JUNK", "F", True)],
)
def test_lead_semantic_follows_the_stage(call, clock, status, semantic, closed):
    lead_id = call.lead()
    clock.now += 3600
    call("crm.lead.update", id=lead_id, fields={"STATUS_ID": status})
    lead = call("crm.lead.get", id=lead_id)

    assert lead["STATUS_SEMANTIC_ID"] == semantic
    assert (lead["DATE_CLOSED"] != "") is closed
    assert lead["MOVED_TIME"] == lead["DATE_MODIFY"] != lead["DATE_CREATE"]


def test_unknown_lead_stage_is_ignored_on_update(call):
    lead_id = call.lead(STATUS_ID="IN_PROCESS")
    call("crm.lead.update", id=lead_id, fields={"STATUS_ID": "NOPE", "TITLE": "Renamed"})
    lead = call("crm.lead.get", id=lead_id)

    assert (lead["STATUS_ID"], lead["TITLE"]) == ("IN_PROCESS", "Renamed")


def test_deal_defaults_to_first_stage_of_its_pipeline(call):
    default = call("crm.deal.add", fields={"TITLE": "A"})
    renewal = call("crm.deal.add", fields={"TITLE": "B", "CATEGORY_ID": 7})
    wrong_stage = call("crm.deal.add", fields={"TITLE": "C", "CATEGORY_ID": 7, "STAGE_ID": "WON"})

    assert call("crm.deal.get", id=default)["STAGE_ID"] == "NEW"
    got = call("crm.deal.get", id=renewal)
    assert (got["CATEGORY_ID"], got["STAGE_ID"], got["IS_NEW"]) == ("7", "C7:NEW", "Y")
    assert call("crm.deal.get", id=wrong_stage)["STAGE_ID"] == "C7:NEW"


def test_deal_category_is_immutable_through_update(call):
    deal_id = call("crm.deal.add", fields={"CATEGORY_ID": 7})
    call("crm.deal.update", id=deal_id, fields={"CATEGORY_ID": 0, "STAGE_ID": "C7:WON"})
    deal = call("crm.deal.get", id=deal_id)

    assert deal["CATEGORY_ID"] == "7"
    assert (deal["STAGE_ID"], deal["STAGE_SEMANTIC_ID"], deal["CLOSED"]) == ("C7:WON", "S", "Y")
    assert call("crm.deal.fields")["CATEGORY_ID"]["isImmutable"] is True


def test_deal_update_ignores_a_stage_of_another_pipeline(call):
    deal_id = call("crm.deal.add", fields={"CATEGORY_ID": 7})
    call("crm.deal.update", id=deal_id, fields={"STAGE_ID": "WON"})

    assert call("crm.deal.get", id=deal_id)["STAGE_ID"] == "C7:NEW"


def test_unknown_category_is_an_error_and_creates_nothing(call, portal):
    error = call.error("crm.deal.add", fields={"TITLE": "X", "CATEGORY_ID": 42})

    assert error.code == ""
    assert "42" in error.description
    assert portal.counts()["deal"] == 0


def test_deal_contact_ids_set_contact_id_and_are_not_listed(call):
    first = call("crm.contact.add", fields={"NAME": "A"})
    second = call("crm.contact.add", fields={"NAME": "B"})
    deal_id = call("crm.deal.add", fields={"CONTACT_IDS": [first, second]})
    deal = call("crm.deal.get", id=deal_id)

    assert deal["CONTACT_ID"] == str(first)
    assert "CONTACT_IDS" not in deal


def test_company_needs_a_title(call):
    error = call.error("crm.company.add", fields={"COMPANY_TYPE": "CUSTOMER"})

    assert (error.code, error.status) == ("", 400)


@pytest.mark.parametrize(
    ("method", "text"),
    [
        ("crm.lead.get", "Not found"),
        ("crm.lead.update", "Lead is not found"),
        ("crm.lead.delete", "Not found"),
        ("crm.deal.get", "Not found"),
        ("crm.deal.update", "Not found"),
        ("crm.contact.update", "Contact is not found"),
        ("crm.company.update", "Company is not found"),
    ],
)
def test_missing_item_is_not_found(call, method, text):
    """Legacy errors: empty code, HTTP 400, the proxy's own text (RestException's defaults,
    crm/classes/general/restservice.php:1310-1322): get :5902, lead update :5971-5973, deal
    update :6384, contact update :8425, company update :8118."""
    error = call.error(method, id=999, fields={"TITLE": "x"})

    assert (error.body(), error.status) == ({"error": "", "error_description": text}, 400)


@pytest.mark.parametrize("bad", [None, 0, -3, "abc", "ID"])
def test_invalid_id(call, bad):
    error = call.error("crm.lead.get", id=bad)

    assert error.description == "ID is not defined or invalid."


def test_uppercase_parameter_names_are_read_like_lowercase_ones(call):
    """Bitrix24's legacy methods accept `ID`/`FIELDS` as well as `id`/`fields` (the docs send both);
    the lower-case key wins when both are present."""
    lead_id = call.lead()

    assert call("crm.lead.get", ID=lead_id)["ID"] == str(lead_id)
    new_id = call("crm.lead.add", FIELDS={"TITLE": "upper"})
    assert call("crm.lead.get", id=new_id)["TITLE"] == "upper"
    assert call("crm.lead.get", id=lead_id, ID=new_id)["ID"] == str(lead_id)
    assert call.error("crm.lead.add", fields="x", FIELDS={"TITLE": "y"}).description == (
        "Parameter 'fields' must be array."
    )


def test_delete_removes_the_lead_its_rows_and_its_own_activities(call, portal):
    lead_id = call.lead()
    deal_id = call("crm.deal.add", fields={})
    call("crm.lead.productrows.set", id=lead_id, rows=[{"PRODUCT_NAME": "P", "PRICE": 5}])
    own = call.activity(1, lead_id)
    shared = call.activity(1, lead_id)
    call("crm.activity.binding.add", activityId=shared, entityTypeId=2, entityId=deal_id)

    assert call("crm.lead.delete", id=lead_id) is True
    assert portal.counts()["lead"] == 0
    assert portal.counts()["productrow"] == 0
    assert call.error("crm.activity.get", id=own).description == "Activity is not found."
    assert call("crm.activity.get", id=shared)["OWNER_ID"] == str(deal_id)


def test_access_denied_without_crm_rights(portal, doc):
    denied = CallContext(user_id=3, is_admin=False, crm_access=False)

    with pytest.raises(ApiError) as caught:
        portal.dispatch("crm.lead.list", {}, denied)

    assert caught.value.body() == doc("crm.lead.list.error-access-denied")


def test_ordinary_user_is_the_default_responsible_and_author(portal):
    user = CallContext(user_id=2, is_admin=False)
    lead_id = portal.dispatch("crm.lead.add", {"fields": {"TITLE": "x"}}, user).result
    lead = portal.dispatch("crm.lead.get", {"id": lead_id}, user).result

    assert (lead["ASSIGNED_BY_ID"], lead["CREATED_BY_ID"]) == ("2", "2")


def test_lead_events_fire_after_each_change(call, events):
    lead_id = call.lead()
    call("crm.lead.update", id=lead_id, fields={"TITLE": "x"})
    call("crm.lead.delete", id=lead_id)
    call("crm.lead.list")

    assert events == [
        ("ONCRMLEADADD", {"FIELDS": {"ID": lead_id}}),
        ("ONCRMLEADUPDATE", {"FIELDS": {"ID": lead_id}}),
        ("ONCRMLEADDELETE", {"FIELDS": {"ID": lead_id}}),
    ]


def test_failed_call_fires_no_event(call, events):
    call.error("crm.lead.update", id=12345, fields={"TITLE": "x"})

    assert events == []


def test_fields_describe_every_stored_field(call):
    described = call("crm.lead.fields")
    lead = call("crm.lead.get", id=call.lead())

    assert set(lead) <= set(described)
    assert described["PHONE"]["type"] == "crm_multifield"
    assert described["PHONE"]["isMultiple"] is True
    assert described["STATUS_ID"]["statusType"] == "STATUS"
    assert described["ID"]["isReadOnly"] is True
