"""crm.item.add/update, contact items, timeline bindings, requisites, addresses and links, each
against the server code it follows (yuliai/bitrix-modules, module/path:line in the test names'
docstrings)."""

from __future__ import annotations

from sandbox.portal import CallContext
from tests.sandbox.core.conftest import Caller

DENIED = CallContext(user_id=3, is_admin=False, crm_access=False)


def test_item_add_takes_lead_id_and_legacy_get_shows_it(call):
    """crm/lib/Service/Factory/Deal.php:415-421, Contact.php:326-332, Company.php:271-277."""
    lead_id = call.lead(NAME="Ann")
    deal = call("crm.item.add", entityTypeId=2, fields={"title": "D", "leadId": lead_id})["item"]
    contact = call("crm.item.add", entityTypeId=3, fields={"name": "C", "leadId": lead_id})["item"]
    company = call("crm.item.add", entityTypeId=4, fields={"title": "Co", "leadId": lead_id})

    assert deal["leadId"] == lead_id and isinstance(deal["id"], int)
    assert call("crm.deal.get", id=deal["id"])["LEAD_ID"] == str(lead_id)
    assert call("crm.contact.get", id=contact["id"])["LEAD_ID"] == str(lead_id)
    assert call("crm.company.get", id=company["item"]["id"])["LEAD_ID"] == str(lead_id)


def test_legacy_add_still_drops_lead_id(call):
    """crm/classes/general/crm_deal.php:393-395: LEAD_ID is read-only in crm.deal.add."""
    lead_id = call.lead(NAME="Ann")
    deal_id = call("crm.deal.add", fields={"TITLE": "D", "LEAD_ID": lead_id})

    assert call("crm.deal.get", id=deal_id)["LEAD_ID"] is None


def test_item_add_types_numbers_skips_unknown_fields_and_writes_fm(call):
    """crm/lib/controller/item.php:285-305 (unknown names skipped) and :1219-1252 (fm)."""
    item = call(
        "crm.item.add",
        entityTypeId=3,
        fields={
            "name": "C",
            "assignedById": "2",
            "noSuchField": 1,
            "fm": [{"typeId": "PHONE", "value": "+100", "valueType": "WORK"}, {"value": "x"}],
        },
    )["item"]

    assert item["assignedById"] == 2
    assert "noSuchField" not in item
    assert [(f["typeId"], f["value"]) for f in item["fm"]] == [("PHONE", "+100")]
    assert call("crm.contact.get", id=item["id"])["PHONE"][0]["VALUE"] == "+100"


def test_item_update_sets_lead_id_and_answers_item(call):
    """crm/lib/controller/item.php:503-572: {"item": ...} after the update."""
    lead_id = call.lead(NAME="Ann")
    deal_id = call("crm.deal.add", fields={"TITLE": "D"})
    item = call("crm.item.update", entityTypeId=2, id=deal_id, fields={"leadId": lead_id})

    assert item["item"]["leadId"] == lead_id
    assert call("crm.deal.list", filter={"LEAD_ID": lead_id}, select=["ID"]) == [
        {"ID": str(deal_id)}
    ]
    missing = call.error("crm.item.update", entityTypeId=2, id=999, fields={"title": "x"})
    assert missing.code == "NOT_FOUND"


def test_item_add_refuses_a_lead_the_caller_cannot_read(call):
    """crm/lib/Field/AbstractRelatedEntityField.php:11-40."""
    error = call.error("crm.item.add", entityTypeId=2, fields={"title": "D", "leadId": 4242})

    assert error.description == "[Lead #4242] Access denied"


def test_lead_contact_items_get_is_typed_and_ordered(call):
    """crm/classes/general/restservice.php:11185-11213; crm/lib/binding/leadcontact.php:165-175."""
    first = call("crm.contact.add", fields={"NAME": "A"})
    second = call("crm.contact.add", fields={"NAME": "B"})
    lead_id = call.lead(CONTACT_IDS=[first, second])

    assert call("crm.lead.contact.items.get", id=lead_id) == [
        {"CONTACT_ID": first, "SORT": 10, "ROLE_ID": 0, "IS_PRIMARY": "Y"},
        {"CONTACT_ID": second, "SORT": 20, "ROLE_ID": 0, "IS_PRIMARY": "N"},
    ]
    assert call.error("crm.lead.contact.items.get", id=999).description == "Not found"


def test_timeline_bindings_bind_list_and_comment_list_through_bindings(call):
    """crm/classes/general/restservice.php:16232-16304 (bind/list), :16038-16060 (comments)."""
    lead_id = call.lead(NAME="Ann")
    deal_id = call("crm.deal.add", fields={"TITLE": "D"})
    comment_id = call(
        "crm.timeline.comment.add",
        fields={"ENTITY_ID": lead_id, "ENTITY_TYPE": "lead", "COMMENT": "hi"},
    )
    fields = {"OWNER_ID": comment_id, "ENTITY_ID": deal_id, "ENTITY_TYPE": "deal"}

    assert call("crm.timeline.bindings.bind", fields=fields) is True
    assert call("crm.timeline.bindings.bind", fields=fields) is True  # an upsert
    assert call("crm.timeline.bindings.list", filter={"OWNER_ID": comment_id}) == [
        {"OWNER_ID": str(comment_id), "ENTITY_ID": str(lead_id), "ENTITY_TYPE": "lead"},
        {"OWNER_ID": str(comment_id), "ENTITY_ID": str(deal_id), "ENTITY_TYPE": "deal"},
    ]
    on_deal = call(
        "crm.timeline.comment.list", filter={"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal"}
    )
    assert [(c["ID"], c["ENTITY_ID"], c["ENTITY_TYPE"]) for c in on_deal] == [
        (str(comment_id), str(deal_id), "deal")
    ]


def test_timeline_bindings_bind_answers_false_when_access_is_denied(portal, call):
    """crm/classes/general/restservice.php:16260-16304: 'Access denied.' -> result false."""
    lead_id = call.lead(NAME="Ann")
    comment_id = call(
        "crm.timeline.comment.add",
        fields={"ENTITY_ID": lead_id, "ENTITY_TYPE": "lead", "COMMENT": "hi"},
    )
    denied = Caller(portal, DENIED)
    fields = {"OWNER_ID": comment_id, "ENTITY_ID": lead_id, "ENTITY_TYPE": "lead"}

    assert denied("crm.timeline.bindings.bind", fields=fields) is False
    assert call("crm.timeline.bindings.bind", fields={**fields, "ENTITY_ID": 999}) is False
    bad = call.error("crm.timeline.bindings.bind", fields={**fields, "ENTITY_TYPE": "x"})
    assert (bad.code, bad.description) == ("", "ENTITY_TYPE is not defined or invalid.")


def test_requisite_add_checks_in_the_proxy_order_and_lists(call):
    """crm/classes/general/restservice.php:13190-13250 (CCrmRequisiteRestProxy::innerAdd)."""
    company_id = call("crm.company.add", fields={"TITLE": "Co"})
    base = {"ENTITY_TYPE_ID": 4, "ENTITY_ID": company_id, "PRESET_ID": 1, "NAME": "Co"}

    assert call.error("crm.requisite.add", fields={**base, "ENTITY_TYPE_ID": 0}).description == (
        "ENTITY_TYPE_ID is not defined or invalid."
    )
    assert call.error("crm.requisite.add", fields={**base, "PRESET_ID": 0}).description == (
        "PRESET_ID is not defined or invalid."
    )
    assert call.error("crm.requisite.add", fields={**base, "ENTITY_ID": 999}).description == (
        "Entity not found."
    )
    requisite_id = call("crm.requisite.add", fields=base)
    listed = call("crm.requisite.list", filter={"ENTITY_TYPE_ID": 4, "ENTITY_ID": company_id})
    assert [r["ID"] for r in listed] == [str(requisite_id)]
    assert call.error("crm.requisite.get", id=999).description == (
        "The Requisite with ID '999' is not found"
    )


def test_address_is_keyed_by_type_and_owner(call):
    """crm/classes/general/restservice.php:14466-14590 ("TypeAddress exists." / "not found.")."""
    company_id = call("crm.company.add", fields={"TITLE": "Co"})
    requisite_id = call(
        "crm.requisite.add",
        fields={"ENTITY_TYPE_ID": 4, "ENTITY_ID": company_id, "PRESET_ID": 1, "NAME": "Co"},
    )
    key = {"TYPE_ID": 1, "ENTITY_TYPE_ID": 8, "ENTITY_ID": requisite_id}

    assert call("crm.address.add", fields={**key, "CITY": "Berlin"}) is True
    assert call.error("crm.address.add", fields=key).description == "TypeAddress exists."
    assert call("crm.address.update", fields={**key, "ADDRESS_1": "Main 1"}) is True
    (address,) = call("crm.address.list", filter={"ENTITY_TYPE_ID": 8, "ENTITY_ID": requisite_id})
    assert (address["CITY"], address["ADDRESS_1"], address["TYPE_ID"]) == ("Berlin", "Main 1", "1")
    assert call("crm.address.delete", fields=key) is True
    assert call.error("crm.address.update", fields=key).description == "TypeAddress not found."


def test_requisite_link_register_and_get(call):
    """crm/classes/general/restservice.php:13873-13990 (register, get: IDs as strings)."""
    company_id = call("crm.company.add", fields={"TITLE": "Co"})
    requisite_id = call(
        "crm.requisite.add",
        fields={"ENTITY_TYPE_ID": 4, "ENTITY_ID": company_id, "PRESET_ID": 1, "NAME": "Co"},
    )
    deal_id = call("crm.deal.add", fields={"TITLE": "D", "COMPANY_ID": company_id})
    other = call("crm.deal.add", fields={"TITLE": "E"})
    link = {"ENTITY_TYPE_ID": 2, "ENTITY_ID": deal_id, "REQUISITE_ID": requisite_id}

    assert call.error("crm.requisite.link.get", entityTypeId=2, entityId=deal_id).description == (
        "Not found"
    )
    assert call("crm.requisite.link.register", fields=link) is True
    got = call("crm.requisite.link.get", entityTypeId=2, entityId=deal_id)
    assert got["REQUISITE_ID"] == str(requisite_id) and got["BANK_DETAIL_ID"] == "0"
    assert call.error("crm.requisite.link.register", fields={**link, "ENTITY_ID": other})
