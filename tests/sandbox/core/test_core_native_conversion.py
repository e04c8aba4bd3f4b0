"""The sandbox's native lead conversion, rule by rule against crm/lib/conversion/* (yuliai/
bitrix-modules); the admin's Classic -> Simple switch drives it."""

from __future__ import annotations

import base64

from sandbox.portal import CallContext, Portal
from tests.sandbox.core.conftest import Caller


def test_every_created_entity_carries_lead_id_and_the_lead_gets_its_clients(call, portal):
    """leadconversionmapper.php:335-337 (LEAD_ID), leadconverter.php:642-647,710-721 (links),
    :814-860 (CONVERTED + CONTACT_ID/COMPANY_ID on the lead)."""
    lead_id = call.lead(NAME="Ann", COMPANY_TITLE="Acme")

    portal.set_mode("simple", client="both")

    lead = call("crm.lead.get", id=lead_id)
    (deal,) = call("crm.deal.list", filter={"LEAD_ID": lead_id})
    (contact,) = call("crm.contact.list", filter={"LEAD_ID": lead_id})
    (company,) = call("crm.company.list", filter={"LEAD_ID": lead_id})
    assert lead["STATUS_ID"] == "CONVERTED"
    assert (lead["CONTACT_ID"], lead["COMPANY_ID"]) == (contact["ID"], company["ID"])
    assert (deal["CONTACT_ID"], deal["COMPANY_ID"]) == (contact["ID"], company["ID"])
    assert contact["COMPANY_ID"] == company["ID"]


def test_field_map_defaults_and_fallbacks(call, portal):
    """leadconversionmapper.php:78-213 (maps), :144 (company title fallback), :351-355 (deal
    type), :324-332 (default contact name), UTM on all three; OBSERVER/STATUS_DESCRIPTION not."""
    lead_id = call.lead(
        TITLE="Website inquiry",
        COMMENTS="call after 5",
        OPENED="N",
        SOURCE_ID="WEB",
        SOURCE_DESCRIPTION="form",
        UTM_SOURCE="google",
        STATUS_DESCRIPTION="hot",
        ADDRESS_CITY="Berlin",
        PHONE=[{"VALUE": "+49 1"}],
    )

    portal.set_mode("simple", client="both")

    (deal,) = call("crm.deal.list", filter={"LEAD_ID": lead_id}, select=["*", "UTM_SOURCE"])
    (contact,) = call("crm.contact.list", filter={"LEAD_ID": lead_id}, select=["*", "PHONE"])
    (company,) = call("crm.company.list", filter={"LEAD_ID": lead_id}, select=["*", "PHONE"])
    assert company["TITLE"] == "Website inquiry"
    assert contact["NAME"] == "Untitled"
    assert (deal["TYPE_ID"], deal["UTM_SOURCE"], deal["SOURCE_DESCRIPTION"]) == (
        "SALE",
        "google",
        "form",
    )
    assert (contact["COMMENTS"], contact["OPENED"], contact["SOURCE_ID"]) == (
        "call after 5",
        "N",
        "WEB",
    )
    assert contact["ADDRESS_CITY"] == company["ADDRESS_CITY"] == "Berlin"
    assert contact["PHONE"][0]["VALUE"] == company["PHONE"][0]["VALUE"] == "+49 1"
    lead_phone = call("crm.lead.get", id=lead_id)["PHONE"][0]["ID"]
    assert contact["PHONE"][0]["ID"] != lead_phone  # new values, not the lead's


def test_repeat_lead_makes_a_deal_only_with_every_contact_and_its_company(call, portal):
    """leadconversionscheme.php:63-66, leadconverter.php:695-709."""
    first = call("crm.contact.add", fields={"NAME": "A"})
    second = call("crm.contact.add", fields={"NAME": "B"})
    company_id = call("crm.company.add", fields={"TITLE": "Co"})
    lead_id = call.lead(NAME="Ann", CONTACT_IDS=[first, second], COMPANY_ID=company_id)

    portal.set_mode("simple", client="both")

    (deal,) = call("crm.deal.list", filter={"LEAD_ID": lead_id})
    items = call("crm.deal.contact.items.get", id=deal["ID"])
    assert [i["CONTACT_ID"] for i in items] == [first, second]
    assert deal["COMPANY_ID"] == str(company_id)
    assert call("crm.contact.list", filter={"LEAD_ID": lead_id}) == []


def test_activities_bound_to_every_target_and_completed_on_close():
    """entityconverter.php:1131-1284; crm_lead.php:2746-2781 (closing completes what is open,
    also when bound to the open deal). Knob conversion_activities=code."""
    portal = Portal(knobs={"conversion_activities": "code"})
    call = Caller(portal, CallContext())
    lead_id = call.lead(NAME="Ann")
    open_one = call.activity(1, lead_id)
    done = call.activity(1, lead_id, COMPLETED="Y")

    portal.set_mode("simple")

    deal_id = int(call("crm.deal.list", filter={"LEAD_ID": lead_id})[0]["ID"])
    for activity in (open_one, done):
        bound = call("crm.activity.binding.list", activityId=activity)
        assert {"entityTypeId": 2, "entityId": deal_id} in bound
        assert {"entityTypeId": 1, "entityId": lead_id} in bound
    assert call("crm.activity.get", id=open_one)["COMPLETED"] == "Y"


def test_timeline_comments_follow_to_the_targets(call, portal):
    """crm/lib/timeline/entitycontroller.php:78-125."""
    lead_id = call.lead(NAME="Ann")
    call(
        "crm.timeline.comment.add",
        fields={"ENTITY_ID": lead_id, "ENTITY_TYPE": "lead", "COMMENT": "n"},
    )

    portal.set_mode("simple")

    deal_id = call("crm.deal.list", filter={"LEAD_ID": lead_id})[0]["ID"]
    on_deal = call(
        "crm.timeline.comment.list", filter={"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal"}
    )
    assert [c["COMMENT"] for c in on_deal] == ["n"]


def test_requisite_from_the_address_and_the_deal_linked_to_an_existing_one(call, portal):
    """leadconverter.php:862-965 + addressrequisiteconverter.php:42-135 (new client: requisite
    from its address); :754-797 (deal linked to the client's requisite existing at deal time)."""
    lead_id = call.lead(NAME="Ann", COMPANY_TITLE="Acme", ADDRESS="Main 1", ADDRESS_CITY="Rome")
    known = call("crm.company.add", fields={"TITLE": "Known"})
    requisite_id = call(
        "crm.requisite.add",
        fields={"ENTITY_TYPE_ID": 4, "ENTITY_ID": known, "PRESET_ID": 1, "NAME": "Known"},
    )
    repeat = call.lead(NAME="Bob", COMPANY_ID=known)

    portal.set_mode("simple", client="both")

    company_id = call("crm.company.list", filter={"LEAD_ID": lead_id})[0]["ID"]
    (made,) = call("crm.requisite.list", filter={"ENTITY_TYPE_ID": 4, "ENTITY_ID": company_id})
    assert (made["NAME"], made["ADDRESS_ONLY"], made["PRESET_ID"]) == ("Acme", "Y", "1")
    (address,) = call("crm.address.list", filter={"ENTITY_TYPE_ID": 8, "ENTITY_ID": made["ID"]})
    assert (address["ADDRESS_1"], address["CITY"], address["TYPE_ID"]) == ("Main 1", "Rome", "1")
    repeat_deal = call("crm.deal.list", filter={"LEAD_ID": repeat})[0]["ID"]
    link = call("crm.requisite.link.get", entityTypeId=2, entityId=repeat_deal)
    assert link["REQUISITE_ID"] == str(requisite_id)


def test_custom_fields_pair_by_label_enums_by_text_files_copied():
    """userfieldsynchronizer.php:514-566 (label/type/multiple), entityconversionmapper.php:
    300-480 (enum by text, files copied, address without id), converter.php:93-113 (sync)."""
    portal = Portal()
    call = Caller(portal, CallContext())
    enum = [{"VALUE": "Red"}, {"VALUE": "Blue"}]
    for kind, name in (("lead", "L1"), ("deal", "D9")):
        call(
            f"crm.{kind}.userfield.add",
            fields={
                "FIELD_NAME": name,
                "USER_TYPE_ID": "enumeration",
                "EDIT_FORM_LABEL": "Favourite Colour",
                "LIST": enum[::-1] if kind == "deal" else enum,
            },
        )
    call(
        "crm.lead.userfield.add",
        fields={"FIELD_NAME": "F", "USER_TYPE_ID": "file", "LABEL": "Brief"},
    )
    call(
        "crm.lead.userfield.add",
        fields={"FIELD_NAME": "A", "USER_TYPE_ID": "address", "LABEL": "Office"},
    )
    blue = call("crm.lead.userfield.list", filter={"FIELD_NAME": "UF_CRM_L1"})[0]["LIST"][1]["ID"]
    body = base64.b64encode(b"doc").decode()
    lead_id = call.lead(
        NAME="Ann", UF_CRM_L1=blue, UF_CRM_F={"fileData": ["a.txt", body]}, UF_CRM_A="Main 1|1;2|77"
    )

    portal.set_mode("simple")

    deal = call("crm.deal.list", filter={"LEAD_ID": lead_id}, select=["UF_*"])[0]
    deal_blue = next(
        i["ID"] for i in call("crm.deal.userfield.get", id=2)["LIST"] if i["VALUE"] == "Blue"
    )
    assert deal["UF_CRM_D9"] == deal_blue
    fields = {
        f["EDIT_FORM_LABEL"]: f["FIELD_NAME"]
        for f in call("crm.deal.userfield.list", filter={"LANG": "en"})
    }
    file_value = deal[fields["Brief"]]
    lead_file = call("crm.lead.get", id=lead_id)["UF_CRM_F"]
    assert file_value["id"] != lead_file["id"] and portal.file(file_value["id"]) == (
        "a.txt",
        b"doc",
    )
    assert deal[fields["Office"]] == "Main 1|1;2"


def test_simple_add_knob_code_converts_a_lead_without_name():
    """crm/lib/automation/factory.php:235-240 (code) vs api-reference/crm/leads/index.md (docs)."""
    for reading, expected in (("docs", "NEW"), ("code", "CONVERTED")):
        portal = Portal(mode="simple", knobs={"simple_add": reading})
        call = Caller(portal, CallContext())
        lead_id = call.lead(TITLE="no name")
        assert call("crm.lead.get", id=lead_id)["STATUS_ID"] == expected
