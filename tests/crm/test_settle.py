"""Settling: runs that share no lock (two machines, two journals, no Redis) convert the same leads
at once and still leave one deal, one set of clients and one closed lead per lead."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b24app.crm.planner import SETTLE_GROUP, plan_lead
from b24app.crm.policy import Activities, Client, Policy
from b24app.crm.scheduler import (
    BatchOutcome,
    LeadState,
    Status,
    mark_sent,
    next_batch,
    record,
)

from .factories import facts, lead, product_row
from .fakeportal import AnswerLost, FakePortal

DEAL, CONTACT, COMPANY = 2, 3, 4


def _states(
    portal: FakePortal, count: int, policy: Policy, *, activities: int = 2, settle: bool = True
) -> list[LeadState]:
    states = []
    for lead_id in range(1, count + 1):
        data = lead(lead_id)
        activity_ids = [lead_id * 100 + n for n in range(activities)]
        if lead_id not in portal.leads:
            portal.add_lead(data, activity_ids)
        plan = plan_lead(
            data,
            policy=policy,
            facts=facts(),
            activities=activity_ids,
            product_rows=[product_row(0, lead_id)],
        )
        states.append(LeadState.start(replace(plan, settle=settle, token=f"run-{id(states)}")))
    return states


class _Run:
    """One run's executor loop, one batch at a time, so runs can be interleaved."""

    def __init__(self, portal: FakePortal, states: list[LeadState], *, lose: float = 0.0) -> None:
        self.portal, self.states = portal, states
        self.chance = random.Random(len(states))
        self.lose = lose

    def step(self, *, die: bool = False) -> bool:
        """Send one batch and record its answer; `die`: killed once it is sent (kill -9)."""
        batch = next_batch(self.states, size=49)
        if not batch:
            return False
        self.states = mark_sent(self.states, batch)  # journaled before sending
        try:
            if self.chance.random() < self.lose:
                raise AnswerLost
            outcome = BatchOutcome.from_response(self.portal.batch(batch.commands))
        except AnswerLost:
            outcome = BatchOutcome.unknown()
        if die:
            return False
        in_use: dict[tuple[str, int], set[int]] = {}
        for state in self.states:
            for name in ("contact", "company"):
                if entity_id := state.ids.get(name):
                    in_use.setdefault((name, entity_id), set()).add(state.lead_id)
        self.states = record(self.states, batch, outcome, in_use=in_use)
        return True


def _interleave(runs: Sequence[_Run], order: random.Random, *, kill: int | None = None) -> None:
    """Step the runs in a random order until all are done. With `kill`, run 0 is killed -9 in
    the middle of its batch number `kill` and resumed from its journal once the others ended."""
    alive = list(runs)
    sent = 0
    while alive:
        run = order.choice(alive)
        dies = run is runs[0] and kill is not None and sent == kill
        if run is runs[0]:
            sent += 1
        if not run.step(die=dies):
            alive.remove(run)
    if kill is not None:
        while runs[0].step():  # `b24app jobs resume`: its journal goes on where it stopped
            pass


def _assert_one_conversion(portal: FakePortal, count: int, policy: Policy) -> None:
    for lead_id in range(1, count + 1):
        deals = portal.created_for(lead_id, "deal")
        assert len(deals) == 1, (lead_id, deals)
        deal = portal.entities["deal"][deals[0]]
        contacts = portal.created_for(lead_id, "contact")
        companies = portal.created_for(lead_id, "company")
        assert len(contacts) == int(policy.client.wants_contact), (lead_id, contacts)
        assert len(companies) == int(policy.client.wants_company), (lead_id, companies)
        record_ = portal.leads[lead_id]
        assert record_["STATUS_ID"] == "CONVERTED"
        if contacts:
            assert deal["CONTACT_ID"] == contacts[0] == record_["CONTACT_ID"]
        if companies:
            assert deal["COMPANY_ID"] == companies[0] == record_["COMPANY_ID"]
        assert deal["LEAD_ID"] == lead_id
        assert portal.product_rows[deals[0]]
        targets = {(DEAL, deals[0])}
        targets |= {(CONTACT, i) for i in contacts} | {(COMPANY, i) for i in companies}
        for activity_id in (lead_id * 100, lead_id * 100 + 1):
            activity = portal.activities[activity_id]
            if policy.activities is Activities.MOVE:
                assert set(activity.bindings) == targets and not activity.completed
            else:
                assert set(activity.bindings) == targets | {(1, lead_id)}
                assert activity.completed


@pytest.mark.parametrize("client", list(Client))
@pytest.mark.parametrize("activities", list(Activities))
def test_two_runs_in_lockstep_leave_one_conversion_per_lead(
    client: Client, activities: Activities
) -> None:
    policy = Policy(client=client, activities=activities)
    portal = FakePortal()
    one, two = _Run(portal, _states(portal, 25, policy)), _Run(portal, _states(portal, 25, policy))
    while one.step() | two.step():
        pass

    _assert_one_conversion(portal, 25, policy)
    for run in (one, two):
        assert all(state.status is Status.CONVERTED for state in run.states)
    notes = [s.settle_note for run in (one, two) for s in run.states if s.settle_note]
    assert notes, "the runs raced on every lead: the losers say so"
    assert all("(the lowest id) was kept" in note for note in notes)


def test_the_settle_listings_read_many_leads_at_once() -> None:
    policy = Policy(client=Client.CONTACT)
    portal = FakePortal()
    run = _Run(portal, _states(portal, 40, policy, activities=0))
    while run.step():
        pass
    listings = [c for batch in portal.batches for c in batch if c.key.startswith("S")]
    assert len(listings) == -(-40 // SETTLE_GROUP)
    assert {c.method for c in listings} == {"crm.deal.list"}
    assert all(len(c.params["filter"]["@ORIGIN_ID"]) <= SETTLE_GROUP for c in listings)
    assert not any(s.settle_note for s in run.states)  # alone: nothing to settle


def test_without_settling_two_runs_duplicate_which_is_why_it_exists() -> None:
    policy = Policy(client=Client.BOTH)
    portal = FakePortal()
    one = _Run(portal, _states(portal, 5, policy, settle=False))
    two = _Run(portal, _states(portal, 5, policy, settle=False))
    while one.step() | two.step():
        pass
    assert any(len(portal.created_for(i, "deal")) > 1 for i in range(1, 6))


def test_a_loser_finishes_the_lead_of_a_winner_that_died() -> None:
    policy = Policy(client=Client.BOTH, activities=Activities.MOVE)
    portal = FakePortal()
    one, two = _Run(portal, _states(portal, 3, policy)), _Run(portal, _states(portal, 3, policy))
    for _ in range(3):  # company, contact, deal: run one dies before it settles, never resumed
        one.step()
    while two.step():
        pass

    _assert_one_conversion(portal, 3, policy)
    kept = [portal.created_for(i, "deal")[0] for i in range(1, 4)]
    assert kept == [one.states[i].ids["deal"] for i in range(3)], "the dead run's deals won"


def test_a_run_killed_after_the_other_finished_settles_when_resumed() -> None:
    policy = Policy(client=Client.BOTH)
    portal = FakePortal()
    one, two = _Run(portal, _states(portal, 3, policy)), _Run(portal, _states(portal, 3, policy))
    one.step()
    one.step()  # company, contact
    while two.step():
        pass
    one.step(die=True)  # its deals are created, then it is killed -9: duplicates for now
    assert all(len(portal.created_for(i, "deal")) == 2 for i in range(1, 4))

    while one.step():  # resumed
        pass

    _assert_one_conversion(portal, 3, policy)
    assert all(state.status is Status.CONVERTED for state in one.states)
    assert all("was kept" in (state.settle_note or "") for state in one.states)


def test_a_client_another_lead_of_the_run_uses_is_kept() -> None:
    from b24app.crm.planner import Found
    from b24app.crm.scheduler import settle

    policy = Policy(client=Client.CONTACT)
    portal = FakePortal()
    state = _states(portal, 1, policy)[0]
    state = replace(state, progress=replace(state.progress, ids={"contact": 7, "deal": 9}))
    found = Found(deals={5: (6, None), 9: (7, None)})

    settled = settle(state, found, in_use={("contact", 7): {1, 2}})

    assert settled.ids["deal"] == 5 and settled.ids["contact"] == 6
    assert settled.progress.discard == {"deal:9": 9}
    assert settled.progress.kept == {"contact:7": 7}
    assert "another lead uses" in (settled.settle_note or "")
    assert [s.id for s in settled.steps if s.id.startswith("x")] == ["xd9"]
    finish = next(s for s in settled.steps if s.id == "f")
    assert "xd9" in finish.after


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    runs=st.integers(2, 3),
    client=st.sampled_from(Client),
    activities=st.sampled_from(Activities),
    seed=st.integers(0, 2**32),
    lose=st.sampled_from([0.0, 0.2]),
    kill=st.one_of(st.none(), st.integers(0, 12)),
)
def test_any_interleaving_of_runs_leaves_one_conversion_per_lead(
    runs: int,
    client: Client,
    activities: Activities,
    seed: int,
    lose: float,
    kill: int | None,
) -> None:
    policy = Policy(client=client, activities=activities)
    portal = FakePortal()
    all_runs = [_Run(portal, _states(portal, 12, policy), lose=lose) for _ in range(runs)]
    _interleave(all_runs, random.Random(seed), kill=kill)

    _assert_one_conversion(portal, 12, policy)
    for run in all_runs:
        statuses: dict[Any, int] = {}
        for state in run.states:
            statuses[state.status] = statuses.get(state.status, 0) + 1
        assert statuses == {Status.CONVERTED: 12}, statuses
