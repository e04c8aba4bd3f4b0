"""crm.activity.* and crm.activity.binding.*, and what closing a lead does to its activities."""

from __future__ import annotations

import pytest

LEAD, DEAL, CONTACT = 1, 2, 3


@pytest.fixture
def lead_id(call):
    return call.lead(NAME="Ann")


@pytest.fixture
def deal_id(call):
    return call("crm.deal.add", fields={"TITLE": "Deal"})


def test_add_get_update_completed(call, lead_id):
    activity = call.activity(LEAD, lead_id, ORIGINATOR_ID="b24app", ORIGIN_ID="act-1")
    got = call("crm.activity.get", id=activity)

    assert (got["OWNER_TYPE_ID"], got["OWNER_ID"], got["COMPLETED"]) == ("1", str(lead_id), "N")
    assert (got["PROVIDER_ID"], got["PROVIDER_TYPE_ID"]) == ("VOXIMPLANT_CALL", "CALL")
    assert "COMMUNICATIONS" not in got  # only crm.activity.list with select names it
    assert call("crm.activity.update", id=activity, fields={"COMPLETED": "Y"}) is True
    got = call("crm.activity.get", id=activity)
    assert (got["COMPLETED"], got["STATUS"]) == ("Y", "2")
    found = call("crm.activity.list", filter={"ORIGINATOR_ID": "b24app", "ORIGIN_ID": "act-1"})
    assert [a["ID"] for a in found] == [str(activity)]


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("SUBJECT", "The field SUBJECT is not defined or empty."),
        ("RESPONSIBLE_ID", "The field RESPONSIBLE_ID is not defined or invalid."),
        ("TYPE_ID", "The field TYPE_ID is not defined or invalid."),
        ("COMMUNICATIONS", "The field COMMUNICATIONS is not defined or invalid."),
        ("OWNER_ID", "Could not build binding."),
    ],
)
def test_add_checks_required_fields(call, lead_id, missing, message):
    fields = {
        "OWNER_TYPE_ID": LEAD,
        "OWNER_ID": lead_id,
        "TYPE_ID": 2,
        "SUBJECT": "Call",
        "RESPONSIBLE_ID": 1,
        "COMMUNICATIONS": [{"VALUE": "+1"}],
    }
    del fields[missing]
    error = call.error("crm.activity.add", fields=fields)

    assert error.code == ""
    assert error.description.startswith(message)


def test_a_task_needs_no_communications(call, lead_id):
    task = call(
        "crm.activity.add",
        fields={
            "OWNER_TYPE_ID": LEAD,
            "OWNER_ID": lead_id,
            "TYPE_ID": 3,
            "SUBJECT": "Todo",
            "RESPONSIBLE_ID": 1,
        },
    )

    assert call("crm.activity.get", id=task)["TYPE_ID"] == "3"


def test_list_by_owner_matches_the_primary_owner_only(call, lead_id, deal_id):
    """crm/classes/general/crm_activity.php:1720-1723: OWNER_TYPE_ID/OWNER_ID are columns of
    the activity row (its primary owner); only filter[BINDINGS] joins the binding table
    (:2748-2751) and finds everything bound to the lead."""
    on_lead = call.activity(LEAD, lead_id)
    on_deal = call.activity(DEAL, deal_id)
    contact = call("crm.contact.add", fields={"NAME": "C"})
    with_contact = call.activity(LEAD, lead_id)
    call("crm.activity.binding.add", activityId=on_deal, entityTypeId=LEAD, entityId=lead_id)
    call("crm.activity.binding.add", activityId=with_contact, entityTypeId=3, entityId=contact)

    by_owner = call("crm.activity.list", filter={"OWNER_TYPE_ID": LEAD, "OWNER_ID": lead_id})
    by_binding = call(
        "crm.activity.list", filter={"BINDINGS": [{"OWNER_TYPE_ID": LEAD, "OWNER_ID": lead_id}]}
    )

    # on_deal's owner moved to the lead (the last binding that is not a client); a contact
    # binding leaves the lead the owner.
    assert [a["ID"] for a in by_owner] == [str(on_lead), str(on_deal), str(with_contact)]
    assert [a["ID"] for a in by_binding] == [str(on_lead), str(on_deal), str(with_contact)]
    moved = call.activity(LEAD, lead_id)
    call("crm.activity.binding.add", activityId=moved, entityTypeId=DEAL, entityId=deal_id)
    by_owner = call("crm.activity.list", filter={"OWNER_TYPE_ID": LEAD, "OWNER_ID": lead_id})
    by_binding = call(
        "crm.activity.list", filter={"BINDINGS": [{"OWNER_TYPE_ID": LEAD, "OWNER_ID": lead_id}]}
    )
    assert str(moved) not in [a["ID"] for a in by_owner]
    assert str(moved) in [a["ID"] for a in by_binding]


def test_binding_add_moves_the_owner_and_refuses_a_repeat(call, lead_id, deal_id):
    """crm/lib/controller/activity/binding.php:56-88,262-281: the new bindings go through
    CCrmActivity::Update, which sets the owner to the one binding, or to the last that is not a
    contact/company (crm_activity.php:557-577,1219-1243); a second add: ACTIVITY_IS_ALREADY_BOUND.
    """
    activity = call.activity(LEAD, lead_id)
    company = call("crm.company.add", fields={"TITLE": "Co"})

    call("crm.activity.binding.add", activityId=activity, entityTypeId=DEAL, entityId=deal_id)
    after_deal = call("crm.activity.get", id=activity)
    call("crm.activity.binding.add", activityId=activity, entityTypeId=4, entityId=company)
    after_company = call("crm.activity.get", id=activity)
    repeat = call.error(
        "crm.activity.binding.add", activityId=activity, entityTypeId=DEAL, entityId=deal_id
    )
    call("crm.activity.binding.delete", activityId=activity, entityTypeId=DEAL, entityId=deal_id)
    after_delete = call("crm.activity.get", id=activity)

    assert (after_deal["OWNER_TYPE_ID"], after_deal["OWNER_ID"]) == ("2", str(deal_id))
    assert (after_company["OWNER_TYPE_ID"], after_company["OWNER_ID"]) == ("2", str(deal_id))
    assert repeat.code == "ACTIVITY_IS_ALREADY_BOUND"
    assert (after_delete["OWNER_TYPE_ID"], after_delete["OWNER_ID"]) == ("1", str(lead_id))


def test_owner_conditions_hold_on_one_binding(call, lead_id, deal_id):
    """Bound to (lead A, deal B): OWNER_TYPE_ID=lead + OWNER_ID=B must not match."""
    second_lead = call.lead()
    second_deal = call("crm.deal.add", fields={})
    assert second_lead == second_deal
    activity = call.activity(LEAD, lead_id)
    call("crm.activity.binding.add", activityId=activity, entityTypeId=DEAL, entityId=second_deal)

    mixed = call("crm.activity.list", filter={"OWNER_TYPE_ID": LEAD, "OWNER_ID": second_deal})
    exact = call("crm.activity.list", filter={"OWNER_TYPE_ID": DEAL, "OWNER_ID": second_deal})

    assert mixed == []
    assert [a["ID"] for a in exact] == [str(activity)]


def test_bindings_filter(call, lead_id, deal_id):
    on_lead = call.activity(LEAD, lead_id)
    on_deal = call.activity(DEAL, deal_id)

    by_type = call("crm.activity.list", filter={"BINDINGS": [{"OWNER_TYPE_ID": DEAL}]})
    either = call(
        "crm.activity.list",
        filter={
            "BINDINGS": [{"OWNER_TYPE_ID": LEAD, "OWNER_ID": lead_id}, {"OWNER_TYPE_ID": DEAL}]
        },
    )

    assert [a["ID"] for a in by_type] == [str(on_deal)]
    assert [a["ID"] for a in either] == [str(on_lead), str(on_deal)]


def test_open_activities_of_a_lead(call, lead_id):
    done = call.activity(LEAD, lead_id, COMPLETED="Y")
    open_ = call.activity(LEAD, lead_id)

    found = call(
        "crm.activity.list", filter={"OWNER_TYPE_ID": 1, "OWNER_ID": lead_id, "COMPLETED": "N"}
    )

    assert done != open_
    assert [a["ID"] for a in found] == [str(open_)]


def test_list_orders_by_start_time_and_selects_communications_only_by_name(call, lead_id):
    late = call.activity(LEAD, lead_id, START_TIME="2030-01-01T10:00:00+03:00")
    early = call.activity(LEAD, lead_id, START_TIME="2029-01-01T10:00:00+03:00")

    rows = call("crm.activity.list", filter={"OWNER_ID": lead_id, "OWNER_TYPE_ID": LEAD})
    chosen = call("crm.activity.list", select=["ID", "COMMUNICATIONS"], order={"ID": "ASC"})

    assert [r["ID"] for r in rows] == [str(early), str(late)]
    assert "COMMUNICATIONS" not in rows[0]
    assert chosen[0] == {"ID": str(late), "COMMUNICATIONS": [{"VALUE": "+15550001111"}]}


@pytest.mark.parametrize("status", ["CONVERTED", "JUNK"])
def test_closing_a_lead_completes_its_open_activities(call, lead_id, deal_id, status):
    on_lead = call.activity(LEAD, lead_id)
    elsewhere = call.activity(DEAL, deal_id)

    call("crm.lead.update", id=lead_id, fields={"STATUS_ID": status})

    got = call("crm.activity.get", id=on_lead)
    assert (got["COMPLETED"], got["STATUS"]) == ("Y", "3")
    assert call("crm.activity.get", id=elsewhere)["COMPLETED"] == "N"


def test_moving_between_process_stages_keeps_activities_open(call, lead_id):
    activity = call.activity(LEAD, lead_id)

    call("crm.lead.update", id=lead_id, fields={"STATUS_ID": "PROCESSED"})

    assert call("crm.activity.get", id=activity)["COMPLETED"] == "N"


def test_moving_activities_to_the_deal_first_keeps_them_open(call, lead_id, deal_id):
    """The documented way around auto-completion: rebind to the deal, then close the lead."""
    activity = call.activity(LEAD, lead_id)
    call("crm.activity.binding.add", activityId=activity, entityTypeId=DEAL, entityId=deal_id)
    call("crm.activity.binding.delete", activityId=activity, entityTypeId=LEAD, entityId=lead_id)

    call("crm.lead.update", id=lead_id, fields={"STATUS_ID": "CONVERTED"})

    got = call("crm.activity.get", id=activity)
    assert (got["COMPLETED"], got["OWNER_TYPE_ID"], got["OWNER_ID"]) == ("N", "2", str(deal_id))


def test_bounce_through_converted_clears_lead_id(call, portal, lead_id):
    portal.set_mode("simple")
    deal = call("crm.deal.list", select=["ID", "LEAD_ID", "CONTACT_ID"])[0]
    assert deal["LEAD_ID"] == str(lead_id)

    call("crm.lead.update", id=lead_id, fields={"STATUS_ID": "IN_PROCESS"})

    assert call("crm.deal.get", id=int(deal["ID"]))["LEAD_ID"] is None
    assert call("crm.contact.get", id=int(deal["CONTACT_ID"]))["LEAD_ID"] is None


def test_binding_list_matches_the_doc_shape(call, lead_id, deal_id, doc):
    activity = call.activity(LEAD, lead_id)
    call("crm.activity.binding.add", activityId=activity, entityTypeId=DEAL, entityId=deal_id)

    listed = call("crm.activity.binding.list", activityId=activity)

    assert listed == [
        {"entityTypeId": 1, "entityId": lead_id},
        {"entityTypeId": 2, "entityId": deal_id},
    ]
    assert set(listed[0]) == set(doc("crm.activity.binding.list")["result"][0])


def test_binding_errors(call, lead_id, deal_id):
    activity = call.activity(LEAD, lead_id)

    assert (
        call.error(
            "crm.activity.binding.add", activityId=999, entityTypeId=2, entityId=deal_id
        ).code
        == "NOT_FOUND"
    )
    assert (
        call.error(
            "crm.activity.binding.add", activityId=activity, entityTypeId=2, entityId=999
        ).code
        == "OWNER_NOT_FOUND"
    )
    assert (
        call.error(
            "crm.activity.binding.add", activityId=activity, entityTypeId=1, entityId=lead_id
        ).code
        == "ACTIVITY_IS_ALREADY_BOUND"
    )
    assert (
        call.error(
            "crm.activity.binding.delete", activityId=activity, entityTypeId=2, entityId=deal_id
        ).code
        == "BINDING_NOT_FOUND"
    )
    assert (
        call.error(
            "crm.activity.binding.delete", activityId=activity, entityTypeId=1, entityId=lead_id
        ).code
        == "LAST_BINDING_CANNOT_BE_DELETED"
    )
    missing = call.error("crm.activity.binding.add", entityTypeId=2, entityId=deal_id)
    assert (missing.code, missing.description) == (
        "100",
        "Could not find value for parameter {activityId}",
    )


def test_binding_move_only_within_one_type(call, lead_id, deal_id):
    activity = call.activity(LEAD, lead_id)
    other_lead = call.lead()

    error = call.error(
        "crm.activity.binding.move",
        activityId=activity,
        sourceEntityTypeId=LEAD,
        sourceEntityId=lead_id,
        targetEntityTypeId=DEAL,
        targetEntityId=deal_id,
    )
    assert (error.code, error.status) == ("SOURCE_AND_TARGET_ENTITY_TYPES_ARE_NOT_EQUAL_ERROR", 400)
    moved = call(
        "crm.activity.binding.move",
        activityId=activity,
        sourceEntityTypeId=LEAD,
        sourceEntityId=lead_id,
        targetEntityTypeId=LEAD,
        targetEntityId=other_lead,
    )
    assert moved is True
    assert call("crm.activity.binding.list", activityId=activity) == [
        {"entityTypeId": 1, "entityId": other_lead}
    ]


def test_at_most_one_hundred_bindings(call, lead_id):
    activity = call.activity(LEAD, lead_id)
    for _ in range(99):
        deal = call("crm.deal.add", fields={})
        call("crm.activity.binding.add", activityId=activity, entityTypeId=DEAL, entityId=deal)
    one_more = call("crm.deal.add", fields={})

    error = call.error(
        "crm.activity.binding.add", activityId=activity, entityTypeId=DEAL, entityId=one_more
    )

    assert error.code == "TOO_MANY_BINDINGS"
    assert len(call("crm.activity.binding.list", activityId=activity)) == 100
