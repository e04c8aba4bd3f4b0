"""A lead that arrives while its portal's automatic job runs joins that job's next batch: the
running job absorbs the gathering one (`Journal.absorb`), so a burst keeps one job record and
one run; and the portal facts a run reads are cached per portal, never across a mode switch
(issue 16)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from b24app import turns
from b24app.crm import conversion
from b24app.crm.conversion import resume
from b24app.crm.policy import Policy
from b24app.crm.reader import Reader, forget_facts
from b24app.store.db import utc_now
from b24app.store.journal import DONE, PENDING, JobRow, Journal
from tests.conversion.conftest import client_for
from tests.conversion.portalstate import call, created, duplicates
from tests.jobs.test_coalescing import _add_leads as _add

KINDS = ("event", "sweep")


class _ArrivingLeads:
    """A journal whose first `absorb` sees `late` leads gathered just before it (an import's
    events arriving while the job runs)."""

    def __init__(self, journal: Journal, late: list[int], policy: dict[str, Any]) -> None:
        self._journal = journal
        self._late = late
        self._policy = policy
        self.gathered: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._journal, name)

    def absorb(self, job_id: int) -> tuple[int, ...]:
        if self._late:
            job, _, _ = self._journal.gather(
                kind="event", policy=self._policy, lead_ids=self._late, kinds=KINDS
            )
            self.gathered.append(job.id)
            self._late = []
        return self._journal.absorb(job_id)


def test_a_running_automatic_job_absorbs_the_leads_gathered_meanwhile(
    make_sandbox: Any, journal: Journal
) -> None:
    sandbox = make_sandbox(seed_leads=0)
    core = sandbox.portal
    first, late = _add(core, 60), _add(core, 40)
    policy = Policy().to_dict()
    job, _, created_now = journal.gather(kind="event", policy=policy, lead_ids=first, kinds=KINDS)
    assert created_now
    arriving = _ArrivingLeads(journal, late, policy)

    report = resume(client_for(sandbox), arriving, job.id)  # type: ignore[arg-type]

    assert report.status == DONE and report.converted == 100
    [merged] = arriving.gathered
    assert journal.job(merged) is None  # merged into the running job: one record
    assert journal.job(job.id).lead_ids == (*first, *late)
    deals = created(core, "deal")
    assert all(len(deals[lead]) == 1 for lead in first + late)
    assert not duplicates(core)
    assert journal.live_jobs() == []


def test_absorb_takes_only_gathering_jobs_of_the_same_policy_into_a_job_this_process_runs(
    make_sandbox: Any, journal: Journal
) -> None:
    make_sandbox(seed_leads=0)
    policy = Policy().to_dict()
    other = Policy.from_dict({"client": "both"}).to_dict()
    running, _, _ = journal.gather(kind="event", policy=policy, lead_ids=[1, 2], kinds=KINDS)
    assert journal.absorb(running.id) == ()  # pending, not claimed: nothing runs it
    journal.claim_job(running.id)
    gathering, _, _ = journal.gather(kind="sweep", policy=policy, lead_ids=[2, 3, 4], kinds=KINDS)
    foreign, _, _ = journal.gather(kind="event", policy=other, lead_ids=[5], kinds=KINDS)

    assert journal.absorb(running.id) == (3, 4)  # 2 it holds already

    assert journal.job(gathering.id) is None
    assert journal.job(running.id).lead_ids == (1, 2, 3, 4)
    assert journal.job(foreign.id).status == PENDING  # another policy: its own job
    assert journal.absorb(running.id) == ()
    later, _, created_now = journal.gather(kind="event", policy=policy, lead_ids=[6], kinds=KINDS)
    assert created_now and later.id != running.id  # a running job takes no leads by `gather`


def test_the_portal_facts_are_read_once_for_runs_close_together_not_across_a_mode_switch(
    make_sandbox: Any, journal: Journal
) -> None:
    sandbox = make_sandbox(seed_leads=0)
    client = client_for(sandbox)
    forget_facts(client)
    before = sandbox.stats()["sub_calls"].get("crm.status.list", 0)

    first = Reader(client).facts_and_mode((0,), reuse=True)
    reader = Reader(client)
    second = reader.facts_and_mode((0,), reuse=True)

    assert reader.reused and second[1] == first[1]
    assert sandbox.stats()["sub_calls"].get("crm.status.list", 0) - before == 3  # one read
    forget_facts(client)  # what a run does when its batches' mode check sees a switch
    again = Reader(client)
    again.facts_and_mode((0,), reuse=True)
    assert not again.reused


def test_a_run_that_sees_the_mode_change_drops_the_cached_facts(
    make_sandbox: Any, journal: Journal
) -> None:
    sandbox = make_sandbox(seed_leads=0)
    core = sandbox.portal
    client = client_for(sandbox)
    Reader(client).facts_and_mode((0,), reuse=True)  # cached: Classic
    assert sandbox.set_mode("simple")["converted"] == 0
    leads = [  # added through REST without a NAME: Bitrix24 leaves them as leads
        int(call(core, "crm.lead.add", {"fields": {"TITLE": f"t{i}", "STATUS_ID": "NEW"}}))
        for i in range(3)
    ]

    conversion.convert(client, journal, Policy(), lead_ids=leads, kind="event")

    fresh = Reader(client)
    _, mode = fresh.facts_and_mode((0,), reuse=True)
    assert not fresh.reused and mode is not None and mode.label == "simple"
    assert not duplicates(core)


def test_a_burst_of_a_requests_worth_is_due_once_it_goes_quiet_not_at_the_window_end() -> None:
    now = utc_now()
    opened = now - dt.timedelta(seconds=2)

    def gathering(leads: int, joined: dt.datetime) -> JobRow:
        return JobRow(
            id=1,
            portal="p",
            kind="event",
            policy={},
            lead_ids=tuple(range(1, leads + 1)),
            status=PENDING,
            created_at=opened,
            heartbeat_at=joined,
        )

    quiet = now - dt.timedelta(seconds=turns.QUIET + 0.1)
    burst = gathering(200, quiet)  # 200 leads, the last one joined over QUIET ago
    assert turns.next_job([burst], now=now, window=5, batch=500) == burst
    still = gathering(200, now)  # leads still joining: the burst goes on
    assert turns.next_job([still], now=now, window=5, batch=500) is None
    assert turns.next_due([still], window=5) == now + dt.timedelta(seconds=turns.QUIET)
    few = gathering(10, quiet)  # a trickle (forms, telephony): the window as before
    assert turns.next_job([few], now=now, window=5, batch=500) is None
    assert turns.next_due([few], window=5) == opened + dt.timedelta(seconds=5)


def test_gathering_records_when_a_lead_last_joined(make_sandbox: Any, journal: Journal) -> None:
    make_sandbox(seed_leads=0)
    first, _, _ = journal.gather(kind="event", policy={}, lead_ids=[1], kinds=KINDS)
    assert first.heartbeat_at is not None
    again, _, _ = journal.gather(kind="event", policy={}, lead_ids=[2], kinds=KINDS)
    assert again.id == first.id and again.heartbeat_at >= first.heartbeat_at


def test_a_slice_goes_on_while_nobody_waits_and_pauses_when_someone_does(
    make_sandbox: Any, journal: Journal
) -> None:
    sandbox = make_sandbox(seed_leads=0)
    core = sandbox.portal
    leads = _add(core, 90)
    policy = Policy().to_dict()
    job, _, _ = journal.gather(kind="event", policy=policy, lead_ids=leads, kinds=KINDS)
    asked: list[bool] = []

    def go_on() -> bool:  # nobody waits for the first extra share, someone for the next
        asked.append(len(asked) == 0)
        return asked[-1]

    first = resume(client_for(sandbox), journal, job.id, max_leads=25, go_on=go_on)

    assert first.status == PENDING and asked == [True, False]
    assert 25 < first.converted <= 50  # two shares in one run, then paused
    done = resume(client_for(sandbox), journal, job.id, go_on=lambda: True)
    assert done.status == DONE and done.converted == 90
    assert not duplicates(core)


def test_a_job_of_known_leads_reads_them_in_its_facts_request(
    make_sandbox: Any, journal: Journal
) -> None:
    sandbox = make_sandbox(seed_leads=0)
    ids = _add(sandbox.portal, 30)
    job = journal.gather(kind="event", policy=Policy().to_dict(), lead_ids=ids, kinds=KINDS)[0]
    forget_facts(client := client_for(sandbox))
    before = sandbox.stats()

    report = resume(client, journal, job.id)

    after = sandbox.stats()
    assert (report.status, report.converted, duplicates(sandbox.portal)) == (DONE, 30, {})
    requests = after["http_requests"] - before["http_requests"]
    # every write batch carries one mode check, the facts request the other
    checks = after["sub_calls"]["crm.settings.mode.get"] - before["sub_calls"].get(
        "crm.settings.mode.get", 0
    )
    # reading: the facts with the leads and their listings by id, then the comments - two
    # requests (four before: facts, leads, listings, comments)
    assert requests - (checks - 1) == 2


def test_leads_read_with_the_facts_serve_only_the_ids_they_cover(make_sandbox: Any) -> None:
    sandbox = make_sandbox(seed_leads=0)
    ids = _add(sandbox.portal, 5)
    client = client_for(sandbox)
    forget_facts(client)
    reader = Reader(client)

    def listed() -> int:
        return int(sandbox.stats()["sub_calls"].get("crm.lead.list", 0))

    reader.facts_and_mode((0,), leads=ids[:3])
    before = listed()
    wider = [int(lead["ID"]) for chunk in reader.leads_by_id(ids).chunks() for lead in chunk]
    assert wider == ids and listed() > before  # not covered: all of them read again

    reader.facts_and_mode((0,), leads=ids)
    before = listed()
    covered = [int(lead["ID"]) for chunk in reader.leads_by_id(ids[1:4]).chunks() for lead in chunk]
    assert covered == ids[1:4] and listed() == before  # from the facts request: no read
    again = [int(lead["ID"]) for chunk in reader.leads_by_id(ids[1:4]).chunks() for lead in chunk]
    assert again == ids[1:4] and listed() > before  # good for one read only


def test_a_run_holds_no_lead_back_while_leads_keep_arriving(
    make_sandbox: Any, journal: Journal, monkeypatch: Any
) -> None:
    from b24app.crm import scheduler

    sandbox = make_sandbox(seed_leads=0)
    core = sandbox.portal
    first = _add(core, 60)
    waves = [_add(core, 30), _add(core, 30), _add(core, 30)]
    policy = Policy().to_dict()
    job = journal.gather(kind="event", policy=policy, lead_ids=first, kinds=KINDS)[0]
    arriving = _ArrivingLeads(journal, [], policy)

    def absorb(job_id: int) -> tuple[int, ...]:  # one wave of an import per absorb
        if waves:
            wave = waves.pop(0)
            arriving.gathered.append(
                journal.gather(kind="event", policy=policy, lead_ids=wave, kinds=KINDS)[0].id
            )
        return journal.absorb(job_id)

    arriving.absorb = absorb  # type: ignore[method-assign]
    looked: list[int] = []
    real = scheduler.best_starts

    def best_starts(states: Any, *, size: int) -> int | None:
        looked.append(len(arriving.gathered))
        return real(states, size=size)

    monkeypatch.setattr(scheduler, "best_starts", best_starts)

    report = resume(client_for(sandbox), arriving, job.id)  # type: ignore[arg-type]

    assert report.status == DONE and report.converted == 150 and not duplicates(core)
    assert len(arriving.gathered) == 3
    # asked while the run held the leads it started with, then only once no more came (the
    # last absorb came back empty): never while the waves were coming in
    assert looked and looked[0] == 0
    assert not [n for n in looked if 0 < n < 3]


def test_listings_read_with_the_facts_leave_out_activities_other_covered_leads_own() -> None:
    from b24app.crm.reader import _only

    rows = [
        {"ID": 1, "OWNER_TYPE_ID": 1, "OWNER_ID": 10},  # the lead planned now
        {"ID": 2, "OWNER_TYPE_ID": 1, "OWNER_ID": 11},  # a covered lead planned later
        {"ID": 3, "OWNER_TYPE_ID": 3, "OWNER_ID": 11},  # primary owner a contact: foreign
    ]
    found = _only({"a0": rows, "r": [{"ownerId": 11}]}, {10}, {10, 11})
    assert [row["ID"] for row in found["a0"]] == [1, 3]
    assert found["r"] == [{"ownerId": 11}]  # product rows are sorted out by owner later
