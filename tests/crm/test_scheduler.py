"""The scheduler and the executor loop against an in-memory portal: order, floor, exactly once."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b24app.crm.planner import LeadPlan, PlanError, plan_lead
from b24app.crm.policy import Activities, Client, Policy
from b24app.crm.scheduler import (
    MAX_TRIES,
    BatchOutcome,
    CommandError,
    LeadState,
    Status,
    best_starts,
    mark_sent,
    next_batch,
    record,
    tally,
)
from b24app.rest.command import Command

from .factories import doc, facts, lead, product_row
from .fakeportal import LEAD, Activity, FakePortal, Fault, run

NO_ADDRESS = {"ADDRESS": None, "ADDRESS_CITY": None, "ADDRESS_COUNTRY": None}


def setup(
    count: int = 1,
    *,
    policy: Policy | None = None,
    activities: int = 0,
    rows: int = 0,
    first: int = 1,
    **lead_fields: Any,
) -> tuple[FakePortal, list[LeadState]]:
    portal = FakePortal()
    states = []
    for lead_id in range(first, first + count):
        data = lead(lead_id, **(NO_ADDRESS | lead_fields))
        activity_ids = [lead_id * 100 + n for n in range(activities)]
        portal.add_lead(data, activity_ids)
        states.append(
            LeadState.start(
                plan_lead(
                    data,
                    policy=policy or Policy(),
                    facts=facts(),
                    activities=activity_ids,
                    product_rows=[product_row(n, lead_id) for n in range(rows)],
                )
            )
        )
    return portal, states


def methods_by_batch(portal: FakePortal) -> list[list[str]]:
    return [sorted(c.method for c in batch) for batch in portal.batches]


def assert_converted_once(portal: FakePortal, states: Sequence[LeadState], policy: Policy) -> None:
    for state in states:
        lead_id = state.lead_id
        assert state.status is Status.CONVERTED, state.progress
        assert portal.leads[lead_id]["STATUS_ID"] == "CONVERTED"
        assert len(portal.created_for(lead_id, "deal")) == 1
        assert len(portal.created_for(lead_id, "contact")) == int(policy.client.wants_contact)
        assert len(portal.created_for(lead_id, "company")) == int(policy.client.wants_company)
        deal_id = state.ids["deal"]
        assert portal.entities["deal"][deal_id]["LEAD_ID"] == lead_id
        targets = {(2, deal_id)} | {
            (type_id, state.ids[name])
            for name, type_id in (("contact", 3), ("company", 4))
            if name in state.created
        }
        for activity_id in state.plan.activities:
            activity = portal.activities[activity_id]
            if policy.activities is Activities.MOVE:
                assert set(activity.bindings) == targets and not activity.completed
            else:
                assert set(activity.bindings) == targets | {(LEAD, lead_id)}
                assert activity.completed


@pytest.mark.parametrize("client", list(Client))
@pytest.mark.parametrize("activities", list(Activities))
@pytest.mark.parametrize("pipeline", [0, 7])
def test_one_lead_runs_in_bitrix24s_order(
    client: Client, activities: Activities, pipeline: int
) -> None:
    policy = Policy(client=client, activities=activities, pipeline=pipeline)
    portal, states = setup(policy=policy, activities=2, rows=1)
    states = run(portal, states)
    creations = [["crm.item.add"]] * (2 if client is Client.BOTH else 1)
    binds = ["crm.activity.binding.add"] * 2 * (3 if client is Client.BOTH else 2)
    on_deal = ["crm.deal.productrows.set"]
    if activities is Activities.MOVE:
        tail = [
            sorted(binds + on_deal),
            ["crm.activity.binding.delete"] * 2,
            ["crm.lead.update"],
        ]
    else:
        tail = [sorted(binds + ["crm.activity.update"] * 2 + on_deal), ["crm.lead.update"]]
    settle = [["crm.deal.list"]]  # the deal is settled before anything is bound to it
    assert methods_by_batch(portal) == [*creations, ["crm.item.add"], *settle, *tail]
    assert_converted_once(portal, states, policy)
    deal = portal.entities["deal"][states[0].ids["deal"]]
    assert deal["CATEGORY_ID"] == pipeline
    assert portal.product_rows[states[0].ids["deal"]][0]["PRODUCT_NAME"] == "iphone 14"
    lead_after = portal.leads[1]
    assert lead_after.get("CONTACT_ID") == states[0].ids.get("contact")
    assert lead_after.get("COMPANY_ID", "0") == states[0].ids.get("company", "0")


def test_many_leads_share_batches_and_the_lead_closes_last() -> None:
    policy = Policy(client=Client.BOTH, activities=Activities.MOVE)
    portal, states = setup(30, policy=policy, activities=2, rows=1)
    states = run(portal, states)
    assert_converted_once(portal, states, policy)
    assert len(portal.batches) <= math.ceil(count_commands(states) / 50) + 6
    for state in states:
        lead_id = state.lead_id

        def of(method: str, lead_id: int = lead_id) -> int:
            hits = portal.position(
                lambda c: (
                    c.method == method
                    and c.key.startswith(f"L{lead_id}")
                    and not c.key[len(f"L{lead_id}")].isdigit()
                )
            )
            assert len(hits) >= 1
            return hits[0]

        added = portal.position(
            lambda c, lead_id=lead_id: c.method == "crm.item.add" and c.key == f"L{lead_id}d"
        )[0]
        assert of("crm.item.add") < added < of("crm.activity.binding.add")
        assert of("crm.activity.binding.add") < of("crm.activity.binding.delete")
        assert of("crm.activity.binding.delete") < of("crm.lead.update")


def test_activities_would_be_auto_completed_if_the_lead_closed_first() -> None:
    """The fake portal completes a closing lead's activities as Bitrix24 does: move them first."""
    portal = FakePortal()
    portal.add_lead(lead(1), [7])
    portal.call(Command("x", "crm.lead.update", {"id": 1, "fields": {"STATUS_ID": "CONVERTED"}}))
    assert portal.activities[7].completed


def test_a_failed_company_stops_only_its_own_lead() -> None:
    policy = Policy(client=Client.BOTH, activities=Activities.MOVE)
    portal, states = setup(3, policy=policy, activities=1)
    portal.fault = lambda n, c: Fault("error", "", "Title is required") if c.key == "L2co" else None
    states = run(portal, states)
    by_id = {s.lead_id: s for s in states}
    assert by_id[2].status is Status.FAILED
    assert by_id[2].progress.error == "step co (crm.item.add) failed: error: Title is required"
    assert portal.leads[2]["STATUS_ID"] == "NEW"
    assert not any(c.key.startswith("L2") and c.key != "L2co" for c in portal.executed)
    assert [by_id[1].status, by_id[3].status] == [Status.CONVERTED, Status.CONVERTED]
    assert portal.activities[200].bindings == [(LEAD, 2)]
    assert tally(states) == {
        Status.SKIPPED: 0,
        Status.PENDING: 0,
        Status.CREATING: 0,
        Status.CONVERTED: 2,
        Status.FAILED: 1,
    }


def test_the_lead_never_closes_when_its_deal_failed() -> None:
    portal, states = setup(2, activities=1)
    portal.fault = lambda n, c: (
        Fault("error", "ACCESS_DENIED", "Access denied") if c.key == "L1d" else None
    )
    states = run(portal, states)
    assert states[0].status is Status.FAILED
    assert portal.leads[1]["STATUS_ID"] == "NEW"
    assert not portal.activities[100].completed
    assert portal.created_for(1, "contact")  # created before the deal failed: kept, recorded
    assert states[0].created == {"contact": portal.created_for(1, "contact")[0]}
    assert states[1].status is Status.CONVERTED


def test_a_failed_activity_move_keeps_the_lead_open() -> None:
    portal, states = setup(1, policy=Policy(activities=Activities.MOVE), activities=2)
    portal.fault = lambda n, c: Fault("error", "ACCESS_DENIED", "") if c.key == "L1b101" else None
    states = run(portal, states)
    assert states[0].status is Status.FAILED
    assert portal.leads[1]["STATUS_ID"] == "NEW"
    assert not any(c.method == "crm.lead.update" for c in portal.executed)


@pytest.mark.parametrize("when", ["after", "before"])
def test_a_whole_batch_with_unknown_outcome_is_verified_not_duplicated(when: str) -> None:
    policy = Policy(client=Client.BOTH, activities=Activities.MOVE)
    portal, states = setup(20, policy=policy, activities=2, rows=1)
    portal.lose = lambda n: when if n in (0, 1, 2, 3, 5) else None
    states = run(portal, states)
    assert_converted_once(portal, states, policy)
    verifies = [c for batch in portal.batches for c in batch if c.key.endswith("v")]
    assert verifies and {c.method for c in verifies} <= {
        "crm.company.list",
        "crm.contact.list",
        "crm.deal.list",
        "crm.lead.list",
    }


def test_an_ambiguous_server_error_is_checked_before_resending() -> None:
    portal, states = setup(2, policy=Policy(client=Client.BOTH))
    portal.fault = lambda n, c: (
        Fault("ambiguous", "INTERNAL_SERVER_ERROR") if n == 0 and c.key == "L1co" else None
    )
    states = run(portal, states)
    assert_converted_once(portal, states, Policy(client=Client.BOTH))
    assert [c.key for c in portal.batches[1] if c.key.startswith("L1")] == ["L1cov"]


def test_a_rejected_command_is_simply_sent_again() -> None:
    portal, states = setup(1)
    portal.fault = lambda n, c: (
        Fault("error", "QUERY_LIMIT_EXCEEDED") if n == 0 and c.key == "L1c" else None
    )
    states = run(portal, states)
    assert_converted_once(portal, states, Policy())
    assert [[c.key for c in b] for b in portal.batches[:2]] == [["L1c"], ["L1c"]]


def test_a_lost_timeline_binding_is_simply_sent_again_and_false_fails_the_lead() -> None:
    """crm.timeline.bindings.bind is an upsert, and answers false when access is denied
    (restservice.php:16260-16304)."""
    portal, states = setup(2)
    states = [
        LeadState.start(replace(state.plan, comments=(70 + state.lead_id,))) for state in states
    ]
    portal.lose = lambda n: "after" if n == 3 else None  # the batch with the bindings
    portal.fault = lambda n, c: (
        Fault("ambiguous", "INTERNAL_SERVER_ERROR") if c.key == "L2t72" and n == 4 else None
    )
    states = run(portal, states)
    assert_converted_once(portal, states, Policy())
    assert portal.timeline[71] == {
        ("deal", states[0].ids["deal"]),
        ("contact", states[0].ids["contact"]),
    }
    keys = [c.key for c in portal.executed]
    assert keys.count("L1t71") == 2  # lost, sent again: no check needed

    portal, states = setup(1)
    states = [LeadState.start(replace(states[0].plan, comments=(70,)))]
    refuse = portal._crm_timeline_bindings_bind
    portal._crm_timeline_bindings_bind = lambda p: (
        False if p["fields"]["ENTITY_TYPE"] == "deal" else refuse(p)
    )  # type: ignore[method-assign]
    states = run(portal, states)
    assert states[0].status is Status.FAILED
    assert "crm.timeline.bindings.bind" in (states[0].progress.error or "")
    assert portal.leads[1]["STATUS_ID"] == "NEW"


def test_already_bound_and_binding_not_found_count_as_done() -> None:
    portal, states = setup(1, policy=Policy(activities=Activities.MOVE), activities=1)
    lost = {3}  # the batch with binding.add (it ran): resent, "already bound"

    def lose(n: int) -> str | None:
        if any(c.key == "L1u100" for c in portal.batches[n]) and not lost - {3}:
            lost.add(n)  # the first binding.delete (it ran): resent, "binding not found"
        return "after" if n in lost else None

    portal.lose = lose
    states = run(portal, states)
    assert_converted_once(portal, states, Policy(activities=Activities.MOVE))
    keys = [c.key for c in portal.executed]
    assert keys.count("L1b100") == 2 and keys.count("L1u100") == 2


def test_a_deleted_activity_is_skipped() -> None:
    portal, states = setup(1, policy=Policy(activities=Activities.MOVE), activities=2)
    del portal.activities[101]
    states = run(portal, states)
    assert states[0].status is Status.CONVERTED
    assert {"b101", "u101"} <= states[0].progress.done
    assert not any(c.key == "L1u101" for c in portal.executed)


def test_a_step_meeting_only_transient_errors_gives_up_and_retry_resumes() -> None:
    portal, states = setup(1)
    portal.fault = lambda n, c: Fault("error", "QUERY_LIMIT_EXCEEDED") if c.key == "L1c" else None
    states = run(portal, states)
    assert states[0].status is Status.FAILED
    assert states[0].progress.error == f"step c gave up after {MAX_TRIES} transient errors"
    assert len(portal.batches) == MAX_TRIES and not portal.executed
    portal.fault = lambda n, c: None
    states = run(portal, [s.retry() for s in states])
    assert_converted_once(portal, states, Policy())


def test_a_lead_failed_while_unsure_checks_before_creating_on_retry() -> None:
    portal, states = setup(1)
    portal.fault = lambda n, c: (
        Fault("ambiguous", "INTERNAL_SERVER_ERROR") if c.key in ("L1c", "L1cv") else None
    )
    states = run(portal, states)
    assert states[0].status is Status.FAILED and "c" in states[0].progress.unsure
    assert len(portal.created_for(1, "contact")) == 1
    portal.fault = lambda n, c: None
    states = run(portal, [s.retry() for s in states])
    assert_converted_once(portal, states, Policy())
    assert portal.batches[MAX_TRIES][0].key == "L1cv"


def test_lost_answers_alone_never_fail_a_lead() -> None:
    portal, states = setup(1)
    portal.lose = lambda n: "before" if n < 3 * MAX_TRIES else None
    states = run(portal, states)
    assert_converted_once(portal, states, Policy())


def test_a_crash_between_sending_and_recording_creates_nothing_twice() -> None:
    policy = Policy(client=Client.BOTH, activities=Activities.MOVE)
    portal, states = setup(5, policy=policy, activities=1, rows=1)
    journal: list[list[dict[str, Any]]] = []

    def persist(current: list[LeadState]) -> list[LeadState]:
        journal.append(json.loads(json.dumps([s.to_dict() for s in current])))
        return [LeadState.from_dict(d) for d in journal[-1]]

    batch = next_batch(states)
    states = persist(mark_sent(states, batch))
    portal.batch(batch.commands)  # ... and the process dies before recording the answer
    restarted = [LeadState.from_dict(d) for d in journal[-1]]
    states = run(portal, restarted, persist=persist)
    assert_converted_once(portal, states, policy)


def test_resuming_from_journal_ids_reuses_and_links_them_to_the_lead() -> None:
    policy = Policy(client=Client.BOTH)
    portal, states = setup(1, policy=policy)
    states = run(portal, states)
    ids = states[0].ids
    portal.leads[1]["STATUS_ID"] = "NEW"  # pretend the finalization never happened
    again = plan_lead(
        portal.leads[1] | {"CONTACT_ID": None, "COMPANY_ID": "0"},
        policy=policy,
        facts=facts(),
        known=ids,
    )
    before = len(portal.executed)
    states = run(portal, [LeadState.start(again)])
    sent = [c.key for c in portal.executed[before:]]
    # settled; the entities found get LEAD_ID (an earlier release made them without it)
    assert sent == ["S1", "L1lco", "L1lc", "L1ld", "L1f"]
    assert_converted_once(portal, states, policy)


def test_the_same_lead_twice_is_refused() -> None:
    _portal, states = setup(1)
    with pytest.raises(PlanError, match="appears twice"):
        next_batch(states * 2)


def test_skipped_leads_are_never_sent() -> None:
    portal, states = setup(2, STATUS_ID="JUNK")
    assert [s.status for s in states] == [Status.SKIPPED] * 2
    assert not next_batch(states)
    assert run(portal, states) == states and portal.batches == []


def test_a_creation_answer_that_is_not_an_id_is_verified() -> None:
    _portal, states = setup(1)
    batch = next_batch(states)
    states = record(mark_sent(states, batch), batch, BatchOutcome(results={"L1c": True}))
    assert [c.key for c in next_batch(states).commands] == ["L1cv"]


def test_verification_errors_fail_the_lead_but_keep_the_step_unsure() -> None:
    _portal, states = setup(1)
    batch = next_batch(states)
    states = record(mark_sent(states, batch), batch, BatchOutcome.unknown())
    check = next_batch(states)
    states = record(
        mark_sent(states, check),
        check,
        BatchOutcome(errors={"L1cv": CommandError("ACCESS_DENIED", "Access denied")}),
    )
    assert states[0].status is Status.FAILED
    assert "checking step c (crm.contact.list) failed: ACCESS_DENIED" in states[0].progress.error
    assert "c" in states[0].progress.unsure


def test_batch_outcome_reads_the_docs_answers() -> None:
    ok = BatchOutcome.from_response(doc("batch.success"))
    assert set(ok.results) == {"get_user", "get_department"} and ok.errors == {}
    failed = BatchOutcome.from_response(doc("batch.result_error.halt0"))
    assert failed.results == {}
    assert failed.errors["get_user"] == CommandError("insufficient_scope", "")
    assert BatchOutcome.from_response(doc("batch.result_error.halt0")["result"]) == failed


def test_batch_outcome_adapts_the_rest_clients_batch_result() -> None:
    from b24app.errors import OutcomeUnknown
    from b24app.rest.response import BatchResult

    parsed = BatchResult.parse(
        doc("batch.result_error.halt0"),
        {"get_user": "user.get", "get_department": "department.get"},
    )
    outcome = BatchOutcome.from_result(parsed)
    assert outcome.errors["get_user"] == CommandError("insufficient_scope", "")
    lost = BatchResult(results={"a": 5}, errors={"b": OutcomeUnknown("timeout")})
    assert BatchOutcome.from_result(lost) == BatchOutcome(results={"a": 5})


def test_state_round_trips_through_json_and_rejects_garbage() -> None:
    _portal, states = setup(1, policy=Policy(client=Client.BOTH), activities=1)
    batch = next_batch(states)
    states = mark_sent(states, batch)
    again = LeadState.from_dict(json.loads(json.dumps(states[0].to_dict())))
    assert again == states[0] and again.status is Status.CREATING
    with pytest.raises(PlanError):
        LeadState.from_dict({"plan": {"lead_id": "x"}})
    with pytest.raises(PlanError):
        LeadState.from_dict(
            {"plan": LeadPlan(lead_id=1).to_dict(), "progress": {"ids": {"deal": "many"}}}
        )


def test_state_json_text_reads_back_as_its_dict() -> None:
    """`to_json` (the plan encoded once) reads back as `to_dict()`, its keys sorted."""
    _portal, states = setup(3, policy=Policy(client=Client.BOTH), activities=1)
    for _ in range(3):
        batch = next_batch(states)
        if not batch:
            break
        states = mark_sent(states, batch)
        for state in states:
            text = state.to_json()
            assert json.loads(text) == state.to_dict()
            assert text.index('"plan"') < text.index('"progress"')
            assert LeadState.from_dict(json.loads(state.to_json())) == state
    plan = states[0].plan
    assert plan.json_text is plan.json_text  # encoded once
    assert plan.known_ids is not plan.known_ids  # a copy each time: callers may change theirs


def count_commands(states: Sequence[LeadState]) -> int:
    """The calls the plans make, settle steps apart (those are read SETTLE_GROUP leads a call)."""
    return sum(len([t for t in s.plan.steps if t.id != "s"]) for s in states)


@pytest.mark.slow  # about 50 s of planning
def test_two_thousand_leads_take_the_request_floor() -> None:
    """client both, activities move, ~1.5 activities per lead, some product rows."""
    policy = Policy(client=Client.BOTH, activities=Activities.MOVE)
    portal = FakePortal()
    states = []
    for lead_id in range(1, 2001):
        data = lead(lead_id)
        activity_ids = [lead_id * 10 + n for n in range(lead_id % 4)]  # 0..3: 1.5 on average
        portal.add_lead(data, activity_ids)
        rows = [product_row(1, lead_id)] if lead_id % 3 == 0 else []
        states.append(
            LeadState.start(
                plan_lead(
                    data, policy=policy, facts=facts(), activities=activity_ids, product_rows=rows
                )
            )
        )
    steps = count_commands(states)
    states = run(portal, states)
    assert tally(states)[Status.CONVERTED] == 2000
    sent = sum(len(b) for b in portal.batches)
    listings = sum(c.key.startswith("S") for b in portal.batches for c in b)
    assert sent == steps + listings
    assert listings <= math.ceil(2000 / 5)  # settling reads 5 or more leads per listing
    floor = math.ceil(sent / 50)
    assert len(portal.batches) <= floor + 7
    assert len(portal.batches) <= 1.05 * floor
    requests = len(portal.batches)
    print(f"2000 leads: {steps} + {listings} commands, floor {floor}, requests {requests}")


# --- properties --------------------------------------------------------------------------------

lead_shapes = st.fixed_dictionaries(
    {
        "contact": st.booleans(),
        "company": st.booleans(),
        "activities": st.integers(0, 4),
        "rows": st.integers(0, 2),
        "active": st.integers(0, 5),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shapes=st.lists(lead_shapes, min_size=1, max_size=25),
    client=st.sampled_from(Client),
    activities=st.sampled_from(Activities),
    seed=st.integers(0, 2**32),
    loss=st.sampled_from([0.0, 0.1, 0.3]),
    errors=st.sampled_from([0.0, 0.05]),
)
def test_no_fault_makes_a_duplicate_or_closes_a_lead_early(
    shapes: list[dict[str, Any]],
    client: Client,
    activities: Activities,
    seed: int,
    loss: float,
    errors: float,
) -> None:
    chance = random.Random(seed)
    policy = Policy(client=client, activities=activities)
    portal = FakePortal()
    states = []
    for lead_id, shape in enumerate(shapes, 1):
        data = lead(
            lead_id,
            STATUS_ID="NEW" if shape["active"] else "JUNK",
            CONTACT_ID="9" if shape["contact"] else None,
            COMPANY_ID="8" if shape["company"] else "0",
        )
        activity_ids = [lead_id * 10 + n for n in range(shape["activities"])]
        portal.add_lead(data, activity_ids)
        states.append(
            LeadState.start(
                plan_lead(
                    data,
                    policy=policy,
                    facts=facts(),
                    activities=activity_ids,
                    product_rows=[product_row(n, lead_id) for n in range(shape["rows"])],
                )
            )
        )
    codes = ["QUERY_LIMIT_EXCEEDED", "ACCESS_DENIED", "INTERNAL_SERVER_ERROR"]

    def fault(n: int, command: Command) -> Fault | None:
        if chance.random() >= errors:
            return None
        code = chance.choice(codes)
        return Fault("ambiguous" if code == "INTERNAL_SERVER_ERROR" else "error", code)

    portal.fault = fault
    portal.lose = lambda n: chance.choice(["after", "before"]) if chance.random() < loss else None

    states = run(portal, states)

    for state in states:
        lead_id = state.lead_id
        for entity in ("company", "contact", "deal"):
            assert len(portal.created_for(lead_id, entity)) <= 1
        closed = portal.leads[lead_id]["STATUS_ID"] == "CONVERTED"
        # A closing call whose answer was lost and whose check then failed stays unsure (the
        # lead failed, to be checked by a retry): never reported converted while open.
        assert closed == (state.status is Status.CONVERTED) or (
            closed and "f" in state.progress.unsure
        )
        if state.status is Status.SKIPPED:
            assert not any(
                c.key.startswith(f"L{lead_id}") and not c.key[len(f"L{lead_id}")].isdigit()
                for c in portal.executed
            )
        if closed:
            deal_id = state.ids["deal"]
            assert portal.created_for(lead_id, "deal") == [deal_id]
            assert portal.entities["deal"][deal_id]["LEAD_ID"] == lead_id
            for activity_id in state.plan.activities:
                activity: Activity = portal.activities[activity_id]
                assert (2, deal_id) in activity.bindings
                if activities is Activities.MOVE:
                    assert (LEAD, lead_id) not in activity.bindings and not activity.completed
                else:
                    assert activity.completed
        if (
            state.status is Status.CONVERTED
            and client.wants_contact
            and not shape_contact(shapes, lead_id)
            and not shapes[lead_id - 1]["company"]  # a repeat lead gets a deal only
        ):
            assert state.ids["contact"] == portal.created_for(lead_id, "contact")[0]


def shape_contact(shapes: list[dict[str, Any]], lead_id: int) -> bool:
    return bool(shapes[lead_id - 1]["contact"])


def test_a_job_of_the_earlier_release_resumes_and_creates_nothing_twice() -> None:
    """A plan stored by the release before LEAD_ID (legacy adds, the deal comment, no `native`),
    its deal's answer lost mid-run, is finished by this one: nothing is created twice, the
    entities it made get LEAD_ID through crm.item.update, no comment is added any more."""
    policy = Policy(client=Client.BOTH, activities=Activities.MOVE)
    portal, states = setup(1, policy=policy, activities=1, rows=1)
    old = states[0].plan.to_dict()
    for key in ("native", "closed", "comments", "contacts", "address", "requisites"):
        old.pop(key, None)
    old.pop("deal_requisite", None)
    old["company"]["fields"] = company_fields_old = {
        "TITLE": "Acme",
        "ORIGINATOR_ID": "b24app",
        "ORIGIN_ID": "lead-1",
    }
    old["contact"]["fields"] = {"NAME": "Erasmus", "ORIGINATOR_ID": "b24app", "ORIGIN_ID": "lead-1"}
    old["deal"]["fields"] = {
        "TITLE": "Deal request 1",
        "ORIGINATOR_ID": "b24app",
        "ORIGIN_ID": "lead-1",
    }
    # the earlier release created company and contact with the legacy methods, sent the deal,
    # and died before its answer came back (the step is "unsure")
    company = portal.call(Command("x", "crm.company.add", {"fields": company_fields_old}))
    contact = portal.call(
        Command(
            "y", "crm.contact.add", {"fields": old["contact"]["fields"] | {"COMPANY_ID": company}}
        )
    )
    deal = portal.call(
        Command(
            "z",
            "crm.deal.add",
            {
                "fields": old["deal"]["fields"]
                | {"CONTACT_ID": contact, "CONTACT_IDS": [contact], "COMPANY_ID": company}
            },
        )
    )
    stored = {
        "plan": old,
        "progress": {
            "ids": {"company": company, "contact": contact},
            "done": ["co", "c"],
            "unsure": ["d"],
        },
    }
    state = LeadState.from_dict(json.loads(json.dumps(stored)))
    assert not state.plan.native and "m" not in [s.id for s in state.plan.steps]
    before = len(portal.executed)
    states = run(portal, [state])
    assert states[0].status is Status.CONVERTED
    for entity in ("company", "contact", "deal"):
        assert len(portal.created_for(1, entity)) == 1, entity
    sent = [c.method for c in portal.executed[before:]]
    assert "crm.deal.add" not in sent and "crm.item.add" not in sent  # found, not re-created
    assert portal.entities["deal"][deal]["LEAD_ID"] == 1
    assert portal.entities["contact"][contact]["LEAD_ID"] == 1
    assert portal.entities["company"][company]["LEAD_ID"] == 1
    assert portal.activities[100].bindings == [(2, deal)]  # as the earlier release planned
    assert portal.leads[1]["STATUS_ID"] == "CONVERTED"


@pytest.mark.parametrize(
    ("count", "policy", "greedy", "fewer"),
    [
        (200, Policy(), 15, 14),  # the 200-lead import of issue 16
        (50, Policy(), 7, 6),
        (30, Policy(client=Client.BOTH, activities=Activities.MOVE), None, None),
    ],
)
def test_the_last_leads_are_taken_up_so_the_tail_drains_in_fewer_batches(
    count: int, policy: Policy, greedy: int | None, fewer: int | None
) -> None:
    def drain(look: bool) -> tuple[FakePortal, list[LeadState], int]:
        portal, states = setup(count, policy=policy, activities=1 if greedy is None else 0)
        batches = 0
        while batch := next_batch(
            states, size=49, starts=best_starts(states, size=49) if look else None
        ):
            batches += 1
            states = mark_sent(states, batch)
            states = record(states, batch, BatchOutcome.from_response(portal.batch(batch.commands)))
        return portal, states, batches

    _, _, as_before = drain(look=False)
    portal, states, batches = drain(look=True)

    assert_converted_once(portal, states, policy)
    assert batches <= as_before  # never more than taking up every lead that fits
    if greedy is not None:
        assert (as_before, batches) == (greedy, fewer)


def test_best_starts_takes_everything_that_fits_when_no_lead_waits() -> None:
    portal, states = setup(3)
    assert best_starts(states) is None  # three leads fit: nothing to hold back
    states = run(portal, states)
    assert best_starts(states) is None  # all converted
