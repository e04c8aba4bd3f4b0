"""CRM mode: reading it, the missing REST setter, Simple-mode conversion, the UI switch."""

from __future__ import annotations

import pytest

from sandbox.portal import CallContext, Portal
from tests.sandbox.core.conftest import Caller


def test_mode_get_and_enum_match_the_docs(call, portal, doc):
    assert call("crm.settings.mode.get") == doc("crm.settings.mode.get")["result"] == 1
    assert call("crm.enum.settings.mode") == doc("crm.enum.settings.mode")["result"]
    portal.set_mode("simple")
    assert call("crm.settings.mode.get") == 2


def test_no_rest_method_sets_the_mode(call, portal):
    error = call.error("crm.settings.mode.set", mode=2)

    assert (error.code, error.status) == ("ERROR_METHOD_NOT_FOUND", 404)
    assert portal.mode == "classic"


def test_portal_starts_in_the_mode_it_is_given(clock):
    assert Portal(mode="simple", clock=clock).mode == "simple"
    with pytest.raises(ValueError, match="unknown CRM mode"):
        Portal(mode="expert")


def test_simple_mode_converts_a_new_lead_with_a_name_at_once(call, portal, events):
    portal.set_mode("simple")
    lead_id = call.lead(
        TITLE="From website",
        NAME="Klaus",
        LAST_NAME="Weber",
        OPPORTUNITY=700,
        PHONE=[{"VALUE": "+49301234", "VALUE_TYPE": "WORK"}],
    )

    lead = call("crm.lead.get", id=lead_id)
    assert (lead["STATUS_ID"], lead["STATUS_SEMANTIC_ID"]) == ("CONVERTED", "S")
    deals = call("crm.deal.list", filter={"LEAD_ID": lead_id}, select=["*"])
    assert len(deals) == 1
    deal = deals[0]
    assert (deal["TITLE"], deal["OPPORTUNITY"], deal["LEAD_ID"]) == (
        "From website",
        "700.00",
        str(lead_id),
    )
    contact = call("crm.contact.get", id=int(deal["CONTACT_ID"]))
    assert (contact["NAME"], contact["LAST_NAME"], contact["LEAD_ID"]) == (
        "Klaus",
        "Weber",
        str(lead_id),
    )
    assert contact["PHONE"][0]["VALUE"] == "+49301234"
    assert lead["CONTACT_ID"] == deal["CONTACT_ID"]
    assert ("ONCRMLEADADD", {"FIELDS": {"ID": lead_id}}) in events
    assert ("ONCRMDEALADD", {"FIELDS": {"ID": int(deal["ID"])}}) in events


def test_simple_mode_keeps_a_lead_without_a_name(call, portal):
    portal.set_mode("simple")
    lead_id = call.lead(COMPANY_TITLE="Acme")

    assert call("crm.lead.get", id=lead_id)["STATUS_ID"] == "NEW"
    assert portal.counts()["deal"] == 0


def test_classic_mode_never_converts(call, portal):
    lead_id = call.lead(NAME="Klaus")

    assert call("crm.lead.get", id=lead_id)["STATUS_ID"] == "NEW"
    assert portal.counts()["deal"] == 0


def test_switch_to_simple_converts_only_active_leads(call, portal):
    active = call.lead(NAME="Ann", STATUS_ID="IN_PROCESS")
    junk = call.lead(NAME="Bob", STATUS_ID="JUNK")
    done = call.lead(NAME="Cid", STATUS_ID="CONVERTED")

    summary = portal.set_mode("simple")

    assert summary == {"mode": "simple", "converted": 1}
    assert call("crm.lead.get", id=active)["STATUS_ID"] == "CONVERTED"
    assert call("crm.lead.get", id=junk)["STATUS_ID"] == "JUNK"
    assert [d["LEAD_ID"] for d in call("crm.deal.list", select=["LEAD_ID"])] == [str(active)]
    assert call("crm.deal.list", filter={"LEAD_ID": done}) == []


def test_switch_builds_company_contact_deal_with_links_and_product_rows(call, portal):
    lead_id = call.lead(
        TITLE="Big order",
        NAME="Ann",
        LAST_NAME="Lee",
        COMPANY_TITLE="Acme",
        OPPORTUNITY=1,
        EMAIL=[{"VALUE": "ann@acme.example"}],
    )
    call(
        "crm.lead.productrows.set",
        id=lead_id,
        rows=[{"PRODUCT_NAME": "Seat", "PRICE": 100, "QUANTITY": 3}],
    )

    portal.set_mode("simple", client="both", pipeline=7)

    lead = call("crm.lead.get", id=lead_id)
    company = call("crm.company.get", id=int(lead["COMPANY_ID"]))
    contact = call("crm.contact.get", id=int(lead["CONTACT_ID"]))
    deal = call("crm.deal.list", filter={"LEAD_ID": lead_id}, select=["*"])[0]
    assert company["TITLE"] == "Acme" and company["LEAD_ID"] == str(lead_id)
    assert contact["COMPANY_ID"] == company["ID"] and contact["LEAD_ID"] == str(lead_id)
    assert (deal["CATEGORY_ID"], deal["STAGE_ID"]) == ("7", "C7:NEW")
    assert (deal["COMPANY_ID"], deal["CONTACT_ID"]) == (company["ID"], contact["ID"])
    rows = call("crm.deal.productrows.get", id=int(deal["ID"]))
    assert [(r["PRODUCT_NAME"], r["PRICE"], r["QUANTITY"]) for r in rows] == [("Seat", 100, 3)]
    assert deal["OPPORTUNITY"] == "300.00"
    # the converter links the lead to its client without marking it a repeat lead
    assert lead["IS_RETURN_CUSTOMER"] == "N"


def test_switch_company_only_client(call, portal):
    lead_id = call.lead(TITLE="Inquiry", COMPANY_TITLE="Acme", PHONE=[{"VALUE": "+1555"}])

    portal.set_mode("simple", client="company")

    lead = call("crm.lead.get", id=lead_id)
    assert lead["CONTACT_ID"] is None
    company = call("crm.company.get", id=int(lead["COMPANY_ID"]))
    assert company["PHONE"][0]["VALUE"] == "+1555"
    assert portal.counts()["contact"] == 0


def test_switch_reuses_the_client_of_a_repeat_lead(call, portal):
    contact_id = call("crm.contact.add", fields={"NAME": "Ann"})
    lead_id = call.lead(NAME="Ann", CONTACT_ID=contact_id)

    portal.set_mode("simple")

    deal = call("crm.deal.list", filter={"LEAD_ID": lead_id}, select=["CONTACT_ID"])[0]
    assert deal["CONTACT_ID"] == str(contact_id)
    assert portal.counts()["contact"] == 1


def test_switch_completes_activities_by_default(call, portal):
    lead_id = call.lead(NAME="Ann")
    activity = call.activity(1, lead_id)

    portal.set_mode("simple")

    got = call("crm.activity.get", id=activity)
    assert (got["COMPLETED"], got["OWNER_TYPE_ID"], got["OWNER_ID"]) == ("Y", "1", str(lead_id))


def test_switch_can_keep_activities_open_bound_to_the_lead_and_every_target():
    """crm/lib/conversion/entityconverter.php:1131-1284 (bind to every target, lead binding
    stays) and crm/lib/automation/factory.php:594-605 (completeActivities off); knob
    conversion_activities=code."""
    portal = Portal(knobs={"conversion_activities": "code"})
    call = Caller(portal, CallContext())
    lead_id = call.lead(NAME="Ann")
    activity = call.activity(1, lead_id)

    portal.set_mode("simple", complete_activities=False)

    deal_id = int(call("crm.deal.list", filter={"LEAD_ID": lead_id})[0]["ID"])
    contact_id = int(call("crm.contact.list", filter={"LEAD_ID": lead_id})[0]["ID"])
    got = call("crm.activity.get", id=activity)
    assert (got["COMPLETED"], got["OWNER_TYPE_ID"], got["OWNER_ID"]) == ("N", "1", str(lead_id))
    bindings = call("crm.activity.binding.list", activityId=activity)
    assert bindings == [
        {"entityTypeId": 1, "entityId": lead_id},
        {"entityTypeId": 2, "entityId": deal_id},
        {"entityTypeId": 3, "entityId": contact_id},
    ]


def test_switch_options_apply_to_later_rest_leads(call, portal):
    portal.set_mode("simple", client="both", pipeline=9)
    lead_id = call.lead(NAME="Ann", COMPANY_TITLE="Acme")

    deal = call("crm.deal.list", filter={"LEAD_ID": lead_id}, select=["*"])[0]
    assert (deal["CATEGORY_ID"], deal["STAGE_ID"]) == ("9", "C9:NEW")
    assert deal["COMPANY_ID"] is not None


def test_switch_back_to_classic_converts_nothing(call, portal):
    portal.set_mode("simple")
    lead_id = call.lead(COMPANY_TITLE="No name")

    assert portal.set_mode("classic") == {"mode": "classic", "converted": 0}
    assert call("crm.lead.get", id=lead_id)["STATUS_ID"] == "NEW"
    assert call("crm.settings.mode.get") == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"client": "everyone"}, "unknown client"),
        ({"pipeline": 42}, "unknown deal pipeline"),
    ],
)
def test_switch_rejects_bad_options(portal, options, message):
    with pytest.raises(ValueError, match=message):
        portal.set_mode("simple", **options)
    assert portal.mode == "classic"


def test_switch_docs_reading_moves_open_activities_to_the_deal(call, portal):
    """helpdesk.bitrix24.com/open/17645664 ("moved to deals"): knob conversion_activities=docs."""
    lead_id = call.lead(NAME="Ann")
    activity = call.activity(1, lead_id)

    portal.set_mode("simple", complete_activities=False)

    deal_id = int(call("crm.deal.list", filter={"LEAD_ID": lead_id})[0]["ID"])
    got = call("crm.activity.get", id=activity)
    assert (got["COMPLETED"], got["OWNER_TYPE_ID"], got["OWNER_ID"]) == ("N", "2", str(deal_id))
