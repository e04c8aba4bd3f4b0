"""Planning one lead: entities created or reused, steps in Bitrix24's order, commands, preview."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from b24app.crm.facts import PortalFacts
from b24app.crm.matching import ClientMatch
from b24app.crm.planner import LeadPlan, PlanError, Source, StepKind, plan_lead, plan_leads, preview
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


@pytest.mark.parametrize(("client", "activities", "pipeline"), COMBINATIONS)
def test_steps_follow_bitrix24s_order_for_every_policy(
    client: Client, activities: Activities, pipeline: int
) -> None:
    policy = Policy(client=client, activities=activities, pipeline=pipeline)
    p = plan(policy=policy, activities=[{"ID": "8"}, {"ID": "9"}], product_rows=[product_row(1, 5)])
    ids = [s.id for s in p.steps]
    creations = {Client.CONTACT: ["c"], Client.COMPANY: ["co"], Client.BOTH: ["co", "c"]}[client]
    moves = ["b8", "u8", "b9", "u9"] if activities is Activities.MOVE else ["a8", "a9"]
    assert ids == [*creations, "d", "s", *moves, "p", "m", "f"]
    after = {s.id: s.after for s in p.steps}
    assert after["d"] == tuple(creations)
    if client is Client.BOTH:
        assert after["c"] == ("co",)
    assert after["s"] == (*creations, "d")  # settled before anything is bound to the deal
    assert all(after[m][0] in ("s", "b8", "b9") for m in moves)
    assert set(after["f"]) == set(ids) - {"f"}

    sent = commands(p)
    deal = next(c for c in sent if c.method == "crm.deal.add").params["fields"]
    assert deal["CATEGORY_ID"] == pipeline
    if client.wants_contact:
        assert (deal["CONTACT_ID"], deal["CONTACT_IDS"]) == (31, [31])
    else:
        assert "CONTACT_ID" not in deal and "CONTACT_IDS" not in deal
    assert (deal.get("COMPANY_ID") == 41) is client.wants_company
    if client is Client.BOTH:
        contact = next(c for c in sent if c.method == "crm.contact.add").params["fields"]
        assert contact["COMPANY_ID"] == 41
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
    assert [c.key for c in sent] == ["L5co", "L5c", "L5d", "L5b8", "L5u8", "L5p", "L5m", "L5f"]
    by_key = {c.key: c for c in sent}
    assert by_key["L5b8"].params == {"activityId": 8, "entityTypeId": 2, "entityId": 21}
    assert by_key["L5u8"].params == {"activityId": 8, "entityTypeId": 1, "entityId": 5}
    assert by_key["L5p"].params["id"] == 21 and by_key["L5p"].params["rows"][0]["PRICE"] == 90000
    assert by_key["L5m"].params == {
        "fields": {
            "ENTITY_ID": 21,
            "ENTITY_TYPE": "deal",
            "COMMENT": "Converted from lead #5 by b24app.",
        }
    }
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
def test_no_lead_id_ever_and_every_creation_is_marked(client: Client) -> None:
    p = plan({"LEAD_ID": "5"}, policy=Policy(client=client), activities=[8])
    sent = commands(p)
    assert "LEAD_ID" not in json.dumps([dict(c.params) for c in sent])
    adds = [
        c
        for c in sent
        if c.method.endswith(".add") and ".binding." not in c.method and "timeline" not in c.method
    ]
    assert adds
    for command in adds:
        assert command.params["fields"]["ORIGINATOR_ID"] == "b24app"
        assert command.params["fields"]["ORIGIN_ID"] == "lead-5"


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
    p = plan({"CONTACT_ID": "77", "COMPANY_ID": "88"}, policy=Policy(client=Client.CONTACT))
    assert (p.contact.source, p.contact.id) == (Source.LEAD, 77)
    assert (p.company.source, p.company.id) == (Source.LEAD, 88)
    assert [s.id for s in p.steps] == ["d", "s", "m", "f"]
    deal = p.command(p.steps[0], p.known_ids).params["fields"]
    assert (deal["CONTACT_ID"], deal["COMPANY_ID"]) == (77, 88)


def test_a_repeat_lead_with_a_contact_gets_a_new_company_bound_to_nothing_else() -> None:
    p = plan({"CONTACT_ID": "77"}, policy=Policy(client=Client.COMPANY))
    assert p.contact.source is Source.LEAD and p.company.created
    assert "PHONE" in p.company.fields  # the company is the only client created
    assert [s.id for s in p.steps] == ["co", "d", "s", "m", "f"]


def test_matched_clients_are_reused() -> None:
    p = plan(policy=Policy(client=Client.BOTH), match=ClientMatch(contact_id=61, company_id=62))
    assert (p.contact.source, p.contact.id, p.company.source, p.company.id) == (
        Source.MATCH,
        61,
        Source.MATCH,
        62,
    )
    assert [s.id for s in p.steps] == ["d", "s", "m", "f"]


def test_a_match_for_an_unwanted_role_is_ignored() -> None:
    p = plan(policy=Policy(client=Client.CONTACT), match=ClientMatch(company_id=62))
    assert p.company is None and p.contact.created


def test_ids_the_journal_recorded_are_never_created_again() -> None:
    p = plan(policy=Policy(client=Client.BOTH), known={"company": 41, "deal": 21}, activities=[8])
    assert p.company.source is Source.JOURNAL and p.deal.source is Source.JOURNAL
    assert [s.id for s in p.steps] == ["c", "s", "a8", "m", "f"]
    assert p.steps[1].after == ("c",)  # settled once this run's contact exists
    assert p.steps[2].after == ("s",)
    assert p.known_ids == {"company": 41, "deal": 21}


def test_completed_activities_are_ignored_and_ids_deduplicated() -> None:
    p = plan(activities=[{"ID": "8", "COMPLETED": "N"}, {"ID": "9", "COMPLETED": "Y"}, 8, "10"])
    assert p.activities == (8, 10)


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
        "create": ["company", "deal"],
        "reuse": {"contact": {"id": 77, "source": "lead"}},
        "pipeline": 7,
        "move": [8, 9],
        "complete": [],
        "product_rows": 1,
        "stage": "CONVERTED",
    }
    assert view.text() == (
        "lead 5: create company, deal (pipeline 7); reuse contact #77 (lead); "
        "move 2 open activities to the deal; copy 1 product row(s); "
        "lead -> CONVERTED"
    )
    assert "complete 1 open activity" in preview(plan(activities=[8])).text()


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
