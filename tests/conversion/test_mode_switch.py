"""The admin switches the CRM to Simple while a conversion runs: Bitrix24 converts the leads in
work itself, b24app settles what it holds - 0 leads lost, 0 duplicates, activities as the rule says.

The switch is made deterministic by a hook on the sandbox core: it flips the mode right before or
right after the n-th call of a given method, i.e. inside a batch at a chosen point of a lead's
chain (client created, deal created, activity moved, lead closed). The verdict is chaos's own
(`chaos.verdict`), read from the portal: every lead in work at the start is at the success stage
with exactly one deal, contact, company; every open activity is where its converter's rule puts it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from b24app.crm.conversion import convert, resume
from b24app.crm.policy import Policy
from b24app.crm.reconcile import reconcile
from b24app.crm.scheduler import LeadState
from b24app.rest.command import Command
from b24app.store.journal import DONE, INTERRUPTED, Journal
from chaos.verdict import capture, verify
from demo.checks import core_query, rows

from .conftest import client_for


@dataclass
class Flip:
    """Switch the sandbox to Simple around the `nth` call of `method` (once)."""

    method: str
    nth: int
    after: bool = True
    client: str = "contact"
    complete: bool = True
    seen: int = 0
    flipped: int | None = None  # leads Bitrix24 converted at the switch
    entity_type: int | None = None  # crm.item.add: only calls for this entityTypeId count

    def install(self, sandbox: Any) -> None:
        core = sandbox.portal
        dispatch = core.dispatch

        def hooked(method: str, params: dict, ctx: Any) -> Any:
            hit = method.lower() == self.method and self.flipped is None
            if self.entity_type is not None:
                hit = hit and str(params.get("entityTypeId")) == str(self.entity_type)
            if hit:
                self.seen += 1
                hit = self.seen == self.nth
            if hit and not self.after:
                self._flip(sandbox)
            out = dispatch(method, params, ctx)
            if hit and self.after:
                self._flip(sandbox)
            return out

        core.dispatch = hooked

    def _flip(self, sandbox: Any) -> None:
        summary = sandbox.set_mode("simple", client=self.client, complete_activities=self.complete)
        self.flipped = summary["converted"]


def _failures(checks: Sequence[Any]) -> list[str]:
    return [f"{check.name}: {check.detail}" for check in checks if not check.ok]


# b24app creates with crm.item.add (entityTypeId 3: contact, 2: deal)
CLIENT_CREATED = Flip("crm.item.add", 6, entity_type=3)
DEAL_ABOUT = Flip("crm.item.add", 6, after=False, entity_type=2)
DEAL_CREATED = Flip("crm.item.add", 6, client="both", complete=False, entity_type=2)
LEAD_CLOSED = Flip("crm.lead.update", 4, client="both")
CASES = {
    "move, after a contact was created": ("move", CLIENT_CREATED),
    "move, before a deal is created": ("move", DEAL_ABOUT),
    "move, after a deal was created": ("move", DEAL_CREATED),
    "move, after an activity was bound to b24app's deal": (
        "move",
        Flip("crm.activity.binding.add", 9),
    ),
    "move, after an activity moved to b24app's deal (Bitrix24 moves too)": pytest.param(
        "move",
        Flip("crm.activity.binding.delete", 9, complete=False),
        # b24app's clients carry LEAD_ID and are adopted by Bitrix24; once reconcile deletes
        # b24app's deal the sandbox makes the activity's first remaining binding (the contact)
        # its owner, where the verdict wants Bitrix24's deal (docs/parity.md, "Not closed")
        marks=pytest.mark.xfail(strict=True, reason="owner after reconcile: docs/parity.md"),
    ),
    "move, after a lead was closed by b24app": ("move", LEAD_CLOSED),
    "complete, after a contact was created": ("complete", CLIENT_CREATED),
    "complete, after a deal was created": ("complete", DEAL_CREATED),
    "complete, after an activity was completed (Bitrix24 moves)": (
        "complete",
        Flip("crm.activity.update", 9, complete=False),
    ),
    "complete, after an activity was completed": ("complete", Flip("crm.activity.update", 9)),
    "complete, after a lead was closed by b24app": ("complete", LEAD_CLOSED),
}


@pytest.mark.parametrize(("activities", "flip"), CASES.values(), ids=CASES.keys())
def test_a_switch_mid_run_loses_and_duplicates_nothing(
    make_sandbox: Any, journal: Journal, activities: str, flip: Flip
) -> None:
    sandbox = make_sandbox(seed_leads=60)
    query = core_query(sandbox)
    before = capture(query)
    flip = Flip(
        flip.method, flip.nth, flip.after, flip.client, flip.complete, entity_type=flip.entity_type
    )
    flip.install(sandbox)
    policy = Policy.from_dict({"client": "both", "activities": activities, "pipeline": 0})

    report = convert(client_for(sandbox), journal, policy)

    assert flip.flipped, "the switch happened mid-run"
    checks = verify(
        query, before, client="both", activities=activities, platform_completes=flip.complete
    )
    assert not _failures(checks), _failures(checks)
    assert report.status == DONE and report.error and "Simple mode" in report.error
    by_bitrix = [lead for lead in report.leads if "by Bitrix24" in (lead.error or "")]
    assert by_bitrix and all(lead.status == "converted" and lead.deal_id for lead in by_bitrix)
    deals = {int(d["ID"]): d for d in rows(query, "crm.deal.list", select=("ID", "LEAD_ID"))}
    assert all(int(deals[lead.deal_id]["LEAD_ID"]) == lead.lead_id for lead in by_bitrix)
    leads = {
        int(lead["ID"]): lead
        for lead in rows(query, "crm.lead.list", select=("ID", "CONTACT_ID", "COMPANY_ID"))
    }
    for lead in by_bitrix:  # the lead links Bitrix24's clients, even if b24app closed it after
        row = leads[lead.lead_id]
        assert (_id(row["CONTACT_ID"]), _id(row["COMPANY_ID"])) == (
            lead.contact_id,
            lead.company_id,
        )
    assert journal.unfinished() == []


def _id(value: Any) -> int | None:
    return int(value) if value not in (None, "", "0", 0) else None


def test_a_switch_in_a_later_slice_ends_the_job(make_sandbox: Any, journal: Journal) -> None:
    """A job run in slices (the worker's fair share): the slice that sees the switch ends it."""
    sandbox = make_sandbox(seed_leads=80)
    query = core_query(sandbox)
    before = capture(query)
    client = client_for(sandbox)
    policy = Policy.from_dict({"client": "both", "activities": "move"})
    first = convert(client, journal, policy, max_leads=30)
    assert first.status == "pending" and first.converted == 30
    flip = Flip("crm.item.add", 12, entity_type=2)
    flip.install(sandbox)

    report = resume(client, journal, first.job_id or 0, max_leads=30)

    assert flip.flipped and report.status == DONE and "Simple mode" in (report.error or "")
    checks = verify(query, before, client="both", activities="move", platform_completes=True)
    assert not _failures(checks), _failures(checks)
    assert journal.unfinished() == []


def test_a_switch_before_the_job_starts_leaves_everything_to_bitrix24(
    make_sandbox: Any, journal: Journal
) -> None:
    """A job that starts in Simple mode (the listeners' path) converts what Bitrix24 left."""
    sandbox = make_sandbox(seed_leads=40)
    assert sandbox.set_mode("simple")["converted"] > 0
    policy = Policy.from_dict({"client": "contact", "activities": "move"})

    report = convert(client_for(sandbox), journal, policy)

    assert report.status == DONE and report.error is None and report.converted == 0


class Crash(BaseException):
    """Stands for kill -9: nothing after it runs in this process (the journal stays as is)."""


class Dying:
    """A portal client that dies before sending the first batch that `when` picks."""

    def __init__(self, client: Any, when: Callable[[Sequence[Command]], bool]) -> None:
        self.client = client
        self.when = when
        self.died = False

    @property
    def requests_made(self) -> int:
        return self.client.requests_made

    def _check(self, commands: Sequence[Command]) -> None:
        if not self.died and self.when(commands):
            self.died = True
            raise Crash

    def call(self, method: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.client.call(method, params, **kw)

    def batch(self, commands: Sequence[Command], **kw: Any) -> Any:
        self._check(commands)
        return self.client.batch(commands, **kw)

    def batch_many(self, commands: Sequence[Command], **kw: Any) -> Any:
        self._check(commands)
        return self.client.batch_many(commands, **kw)

    def iterate(self, method: str, params: Any = None, **kw: Any) -> Iterator[dict[str, Any]]:
        return self.client.iterate(method, params, **kw)


def _calls(method: str, *, filtering: str | None = None) -> Callable[[Sequence[Command]], bool]:
    def when(commands: Sequence[Command]) -> bool:
        return any(
            c.method == method and (filtering is None or filtering in c.params.get("filter", {}))
            for c in commands
        )

    return when


CRASHES = {
    "before the settling starts": _calls("crm.deal.list", filtering="@LEAD_ID"),
    "after activities were put back, before b24app's deal is deleted": _calls("crm.deal.delete"),
}
# No "before its contact is deleted": b24app's clients carry LEAD_ID, so Bitrix24's converter
# reuses them (leadconverter.php:320-344) and only b24app's deal is left to delete.


@pytest.mark.parametrize("when", CRASHES.values(), ids=CRASHES.keys())
def test_kill_9_while_settling_then_resume_still_ends_without_duplicates(
    make_sandbox: Any, journal: Journal, when: Callable[[Sequence[Command]], bool]
) -> None:
    sandbox = make_sandbox(seed_leads=60)
    query = core_query(sandbox)
    before = capture(query)
    flip = Flip("crm.activity.binding.delete", 12)
    flip.install(sandbox)
    policy = Policy.from_dict({"client": "both", "activities": "move"})
    dying = Dying(client_for(sandbox), lambda commands: flip.flipped is not None and when(commands))
    with pytest.raises(Crash):
        convert(dying, journal, policy)
    job = journal.jobs()[0]
    assert job.status == INTERRUPTED and journal.unfinished()

    report = resume(client_for(sandbox), journal, job.id)

    checks = verify(query, before, client="both", activities="move", platform_completes=True)
    assert not _failures(checks), _failures(checks)
    assert report.status == DONE and journal.unfinished() == []


def test_reconcile_twice_changes_nothing_more(make_sandbox: Any, journal: Journal) -> None:
    """Settling is idempotent: a second pass over the same states finds nothing left to undo."""
    sandbox = make_sandbox(seed_leads=60)
    flip = Flip("crm.item.add", 5, entity_type=2)
    flip.install(sandbox)
    client = client_for(sandbox)
    held: list[LeadState] = []
    dying = Dying(client, lambda commands: flip.flipped is not None)
    with pytest.raises(Crash):
        convert(dying, journal, Policy.from_dict({"client": "both", "activities": "move"}))
    for record in journal.unfinished():
        assert record.state is not None
        held.append(LeadState.from_dict(record.state))
    assert held

    first = reconcile(client, held)
    counts = sandbox.portal.counts()
    second = reconcile(client, held)

    assert first.taken and set(second.taken) == set(first.taken)
    assert all(not taken.removed for taken in second.taken.values())
    assert sandbox.portal.counts() == counts
