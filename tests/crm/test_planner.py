"""Planning one lead: entities created or reused, steps in Bitrix24's order, commands, preview."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from typing import Any

import pytest

from b24app.crm.facts import PortalFacts
from b24app.crm.matching import ClientMatch
from b24app.crm.planner import (
    LeadPlan,
    PlanError,
    Source,
    StepKind,
    Surroundings,
    plan_lead,
    plan_leads,
    preview,
)
from b24app.crm.policy import Activities, Client, LeadSelection, Policy
from b24app.rest.command import Command

from .factories import facts, lead, product_row

ALL_IDS = {"company": 41, "contact": 31, "deal": 21}


def plan(lead_fields: dict[str, Any] | None = None, **kwargs: Any) -> LeadPlan:
    policy = kwargs.pop("policy", Policy())
    return plan_lead(lead(5, **(lead_fields or {})), policy=policy, facts=facts(), **kwargs)


def commands(p: LeadPlan, ids: dict[str, int] | None = None) -> list[Command]:
    known = {**ALL_IDS, **(ids or {})}
    # Settle steps are read SETTLE_GROUP leads a call (planner.settle_command), not per lead.
    return [p.command(step, known) for step in p.steps if step.kind is not StepKind.SETTLE]


COMBINATIONS = list(itertools.product(Client, Activities, (0, 7)))


def item(sent: list[Command], entity_type: int) -> dict[str, Any]:
    """The fields of the `crm.item.add` of one entity type among `sent`."""
    return next(
        c.params["fields"]
        for c in sent
        if c.method == "crm.item.add" and c.params["entityTypeId"] == entity_type
    )


@pytest.mark.parametrize(("client", "activities", "pipeline"), COMBINATIONS)
def test_steps_follow_bitrix24s_order_for_every_policy(
    client: Client, activities: Activities, pipeline: int
) -> None:
    policy = Policy(client=client, activities=activities, pipeline=pipeline)
    p = plan(policy=policy, activities=[{"ID": "8"}, {"ID": "9"}], product_rows=[product_row(1, 5)])
    ids = [s.id for s in p.steps]
    creations = {Client.CONTACT: ["c"], Client.COMPANY: ["co"], Client.BOTH: ["co", "c"]}[client]
    suffixes = {Client.CONTACT: ["c"], Client.COMPANY: ["co"], Client.BOTH: ["c", "co"]}[client]
    addresses = ["w" + c for c in creations]  # the lead has an address

    def moves(a: int) -> list[str]:
        binds = [f"b{a}", *(f"b{x}{a}" for x in suffixes)]
        return [*binds, f"u{a}"] if activities is Activities.MOVE else [*binds, f"a{a}"]

    assert ids == [*creations, "d", "s", *addresses, *moves(8), *moves(9), "p", "f"]
    after = {s.id: s.after for s in p.steps}
    assert after["d"] == tuple(creations)
    if client is Client.BOTH:
        assert after["c"] == ("co",)
    assert after["s"] == (*creations, "d")  # settled before anything is bound to the deal
    for step in ids:
        if step[0] in "bawp":
            assert after[step] == ("s",)
    if activities is Activities.MOVE:  # the lead is unbound once every other binding exists
        assert set(after["u8"]) == {"b8", *(f"b{x}8" for x in suffixes)}
    assert set(after["f"]) == set(ids) - {"f"}

    sent = commands(p)
    deal = item(sent, 2)
    assert deal["categoryId"] == pipeline and deal["leadId"] == 5
    if client.wants_contact:
        assert deal["contactIds"] == [31]
    else:
        assert "contactIds" not in deal
    assert (deal.get("companyId") == 41) is client.wants_company
    if client is Client.BOTH:
        assert item(sent, 3)["companyId"] == 41
    finish = sent[-1]
    assert finish.method == "crm.lead.update"
    assert finish.params["fields"]["STATUS_ID"] == "CONVERTED"


def test_commands_have_short_deterministic_keys_and_literal_ids() -> None:
    p = plan(
        policy=Policy(client=Client.BOTH, activities=Activities.MOVE),
        activities=[8],
        product_rows=[product_row(1, 5)],
    )
    sent = commands(p)
    assert [c.key for c in sent] == [
        *("L5co", "L5c", "L5d", "L5wco", "L5wc"),
        *("L5b8", "L5bc8", "L5bco8", "L5u8", "L5p", "L5f"),
    ]
    by_key = {c.key: c for c in sent}
    assert by_key["L5b8"].params == {"activityId": 8, "entityTypeId": 2, "entityId": 21}
    assert by_key["L5bc8"].params == {"activityId": 8, "entityTypeId": 3, "entityId": 31}
    assert by_key["L5bco8"].params == {"activityId": 8, "entityTypeId": 4, "entityId": 41}
    assert by_key["L5u8"].params == {"activityId": 8, "entityTypeId": 1, "entityId": 5}
    assert by_key["L5wc"].params == {
        "id": 31,
        "fields": {
            "ADDRESS": "7677 Hollow Ridge Alley",
            "ADDRESS_CITY": "Jakarta",
            "ADDRESS_COUNTRY": "Indonesia",
        },
    }
    assert by_key["L5wco"].method == "crm.company.update"
    assert by_key["L5p"].params["id"] == 21 and by_key["L5p"].params["rows"][0]["PRICE"] == 90000
    assert by_key["L5f"].params == {
        "id": 5,
        "fields": {"STATUS_ID": "CONVERTED", "CONTACT_ID": 31, "COMPANY_ID": 41},
    }
    assert "$result" not in json.dumps([dict(c.params) for c in sent])


def test_complete_marks_activities_done() -> None:
    p = plan(activities=[8])
    complete = next(c for c in commands(p) if c.key == "L5a8")
    assert (complete.method, complete.params) == (
        "crm.activity.update",
        {"id": 8, "fields": {"COMPLETED": "Y"}},
    )


@pytest.mark.parametrize("client", list(Client))
def test_lead_id_on_every_creation_and_every_creation_is_marked(client: Client) -> None:
    """crm.item.add writes `leadId` (Factory/Deal.php:415-421); ORIGINATOR_ID/ORIGIN_ID stay
    the idempotency key; a client this run creates carries its token in ORIGIN_VERSION."""
    p = replace(plan({"LEAD_ID": "5"}, policy=Policy(client=client), activities=[8]), token="t1")
    sent = commands(p)
    adds = [c for c in sent if c.method == "crm.item.add"]
    assert len(adds) == (3 if client is Client.BOTH else 2)
    assert not [c for c in sent if c.method in ("crm.deal.add", "crm.contact.add")]
    for command in adds:
        fields = command.params["fields"]
        assert fields["leadId"] == 5
        assert (fields["originatorId"], fields["originId"]) == ("b24app", "lead-5")
        if command.params["entityTypeId"] != 2:
            assert fields["originVersion"] == "t1"


def test_closed_activities_and_comments_are_bound_to_every_new_entity() -> None:
    """entityconverter.php:1131-1284, timeline/entitycontroller.php:78-125."""
    p = plan_lead(
        lead(5, ADDRESS=None, ADDRESS_CITY=None, ADDRESS_COUNTRY=None),
        policy=Policy(client=Client.BOTH),
        facts=facts(),
        around=Surroundings(
            activities=[{"ID": "8", "COMPLETED": "N"}, {"ID": "9", "COMPLETED": "Y"}],
            comments=[70],
        ),
    )
    assert (p.activities, p.closed, p.comments) == ((8,), (9,), (70,))
    ids = [s.id for s in p.steps]
    assert ids == [
        *("co", "c", "d", "s"),
        *("b8", "bc8", "bco8", "a8", "b9", "bc9", "bco9"),
        *("t70", "tc70", "tco70", "f"),
    ]
    by_key = {c.key: c for c in commands(p)}
    assert by_key["L5tc70"].params == {
        "fields": {"OWNER_ID": 70, "ENTITY_ID": 31, "ENTITY_TYPE": "contact"}
    }
    assert by_key["L5t70"].method == "crm.timeline.bindings.bind"


def test_requisites_from_the_address_and_the_deal_linked_to_an_existing_one() -> None:
    """leadconverter.php:754-797 (deal link at deal time), :862-965 (requisite from address)."""
    with_presets = replace(facts(), presets={"company": 1, "contact": 2}, deal_type="SALE")
    p = plan_lead(lead(5), policy=Policy(client=Client.BOTH), facts=with_presets)
    assert sorted(p.requisites) == ["company", "contact"]
    assert p.requisites["contact"].name == "Erasmus Golden"
    assert p.requisites["company"].address == {
        "ADDRESS_1": "7677 Hollow Ridge Alley",
        "CITY": "Jakarta",
        "COUNTRY": "Indonesia",
    }
    by_key = {c.key: c for c in commands(p, {"requisite_contact": 90, "requisite_company": 91})}
    assert by_key["L5rc"].params["fields"] == {
        "ENTITY_TYPE_ID": 3,
        "ENTITY_ID": 31,
        "PRESET_ID": 2,
        "NAME": "Erasmus Golden",
        "ACTIVE": "Y",
        "ADDRESS_ONLY": "Y",
        "SORT": 500,
    }
    assert by_key["L5rac"].params["fields"] == {
        "TYPE_ID": 1,
        "ENTITY_TYPE_ID": 8,
        "ENTITY_ID": 90,
        "ANCHOR_TYPE_ID": 3,
        "ANCHOR_ID": 31,
        "ADDRESS_1": "7677 Hollow Ridge Alley",
        "CITY": "Jakarta",
        "COUNTRY": "Indonesia",
    }
    assert item(list(by_key.values()), 2)["typeId"] == "SALE"
    repeat = plan_lead(
        lead(5, COMPANY_ID="88"),
        policy=Policy(client=Client.BOTH),
        facts=with_presets,
        around=Surroundings(requisites={"company": 12}),
    )
    assert repeat.deal_requisite == 12 and repeat.requisites == {}
    link = next(c for c in commands(repeat) if c.key == "L5rl")
    assert link.params["fields"]["REQUISITE_ID"] == 12
    assert link.params["fields"]["ENTITY_ID"] == 21


def test_the_success_stage_comes_from_the_facts() -> None:
    portal = PortalFacts.from_results(
        statuses=[
            {"ENTITY_ID": "STATUS", "STATUS_ID": "FRESH", "SEMANTICS": None},
            {"ENTITY_ID": "STATUS", "STATUS_ID": "GOOD_LEAD", "SEMANTICS": "S"},
        ]
    )
    p = plan_lead(lead(5, STATUS_ID="FRESH"), policy=Policy(), facts=portal)
    assert p.success_stage == "GOOD_LEAD"
    assert commands(p)[-1].params["fields"]["STATUS_ID"] == "GOOD_LEAD"


@pytest.mark.parametrize(
    ("stage", "reason"),
    [("JUNK", "stage JUNK is not an active lead stage"), ("CONVERTED", "already converted")],
)
def test_non_active_leads_are_not_planned(stage: str, reason: str) -> None:
    p = plan({"STATUS_ID": stage}, activities=[8])
    assert p.skip == reason and p.steps == ()
    assert preview(p).text() == f"lead 5: skipped ({reason})"


def test_a_repeat_lead_reuses_its_clients_whatever_the_policy() -> None:
    """leadconversionscheme.php:63-66: a deal only, with every contact and the company."""
    p = plan(
        {"CONTACT_ID": "77", "COMPANY_ID": "88"},
        policy=Policy(client=Client.CONTACT),
        around=Surroundings(contacts=[78, 77], activities=[8]),
    )
    assert (p.contact.source, p.contact.id) == (Source.LEAD, 77)
    assert (p.company.source, p.company.id) == (Source.LEAD, 88)
    assert p.contacts == (77, 78)
    assert [s.id for s in p.steps] == ["d", "s", "b8", "a8", "f"]  # bound to the deal only
    deal = p.command(p.steps[0], p.known_ids).params["fields"]
    assert (deal["contactIds"], deal["companyId"]) == ([77, 78], 88)


def test_a_repeat_lead_gets_a_deal_only_whatever_the_policy_wants() -> None:
    p = plan({"CONTACT_ID": "77"}, policy=Policy(client=Client.BOTH))
    assert p.contact.source is Source.LEAD and p.company is None
    assert [s.id for s in p.steps] == ["d", "s", "f"]
    assert preview(p).text().startswith("lead 5: repeat lead: a deal only; create deal")


def test_matched_clients_are_reused() -> None:
    p = plan(policy=Policy(client=Client.BOTH), match=ClientMatch(contact_id=61, company_id=62))
    assert (p.contact.source, p.contact.id, p.company.source, p.company.id) == (
        Source.MATCH,
        61,
        Source.MATCH,
        62,
    )
    assert [s.id for s in p.steps] == ["d", "s", "f"]


def test_a_match_for_an_unwanted_role_is_ignored() -> None:
    p = plan(policy=Policy(client=Client.CONTACT), match=ClientMatch(company_id=62))
    assert p.company is None and p.contact.created


def test_ids_the_journal_recorded_are_never_created_again() -> None:
    p = plan(policy=Policy(client=Client.BOTH), known={"company": 41, "deal": 21}, activities=[8])
    assert p.company.source is Source.JOURNAL and p.deal.source is Source.JOURNAL
    assert [s.id for s in p.steps] == ["c", "s", "lco", "wc", "ld", "b8", "bc8", "bco8", "a8", "f"]
    assert p.steps[1].after == ("c",)  # settled once this run's contact exists
    assert p.steps[2].after == ("s",)
    # found by ORIGIN_ID: perhaps made by an earlier release, without LEAD_ID
    link = p.command(p.steps[2], {**p.known_ids, "contact": 31})
    assert (link.method, link.params) == (
        "crm.item.update",
        {"entityTypeId": 4, "id": 41, "fields": {"leadId": 5}},
    )
    assert p.known_ids == {"company": 41, "deal": 21}


def test_completed_activities_are_kept_apart_and_ids_deduplicated() -> None:
    p = plan(activities=[{"ID": "8", "COMPLETED": "N"}, {"ID": "9", "COMPLETED": "Y"}, 8, "10"])
    assert (p.activities, p.closed) == ((8, 10), (9,))


def test_bad_input_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="without a positive ID"):
        plan_lead(lead(5, ID="0"), policy=Policy(), facts=facts())
    with pytest.raises(PlanError, match="has no positive ID"):
        plan(activities=[{"SUBJECT": "call"}])
    with pytest.raises(PlanError, match="not a stored lead plan"):
        LeadPlan.from_dict({"lead_id": 5, "company": {"source": "stolen"}})


def test_plan_round_trips_through_json() -> None:
    p = plan(
        policy=Policy(client=Client.BOTH, activities=Activities.MOVE, pipeline=7),
        activities=[8],
        product_rows=[product_row(1, 5)],
        match=ClientMatch(company_id=9),
    )
    p = replace(p, comments=(3,), closed=(11,), contacts=(4,), deal_requisite=6)
    again = LeadPlan.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p
    assert again.steps == p.steps


def test_repr_carries_no_personal_data() -> None:
    text = repr(plan(policy=Policy(client=Client.BOTH), product_rows=[product_row(1, 5)]))
    assert "Erasmus" not in text and "example.com" not in text and "+1555" not in text


def test_preview_says_what_would_happen() -> None:
    p = plan(
        {"CONTACT_ID": "77"},
        policy=Policy(client=Client.BOTH, activities=Activities.MOVE, pipeline=7),
        activities=[8, 9],
        product_rows=[product_row(1, 5)],
    )
    view = preview(p)
    assert view.to_dict() == {
        "lead_id": 5,
        "skip": None,
        "create": ["deal"],
        "reuse": {"contact": {"id": 77, "source": "lead"}},
        "pipeline": 7,
        "move": [8, 9],
        "complete": [],
        "product_rows": 1,
        "stage": "CONVERTED",
        "repeat": True,
        "contacts": [77],
        "closed_activities": 0,
        "comments": 0,
        "bound_to": ["deal"],
        "requisites": [],
        "deal_requisite": None,
    }
    assert view.text() == (
        "lead 5: repeat lead: a deal only; create deal (pipeline 7); reuse contact #77 (lead); "
        "move 2 open activities to the deal; copy 1 product row(s); "
        "lead -> CONVERTED"
    )
    full = preview(
        plan(
            policy=Policy(client=Client.BOTH),
            around=Surroundings(activities=[8, {"ID": 9, "COMPLETED": "Y"}], comments=[3, 4]),
        )
    ).text()
    assert "complete 1 open activity" in full
    assert "bind 1 closed activity to the deal, contact, company" in full
    assert "bind 2 comment(s) to the deal, contact, company" in full


def test_plan_leads_follows_the_selection_and_passes_extras_by_lead() -> None:
    leads = [lead(5), lead(6, SOURCE_ID="WEB"), lead(7, STATUS_ID="JUNK")]
    plans = plan_leads(
        leads,
        policy=Policy(leads=LeadSelection(sources=("CALL",))),
        facts=facts(),
        activities={5: [8]},
        known={7: {"deal": 3}},
    )
    assert [(p.lead_id, p.skip) for p in plans] == [
        (5, None),
        (7, "stage JUNK is not an active lead stage"),
    ]
    assert plans[0].activities == (8,)
    assert [s.kind for s in plans[0].steps][:2] == [StepKind.CONTACT, StepKind.DEAL]
