"""Event conversions coalesce per portal: the window, a full batch, echoes that cost nothing,
one automatic job record, admin jobs first, and why a job waits (issue 16).

Jobs run in immediate mode against a sandbox; the clock is injected (`Jobs(now=...)`), so a
window "passes" by moving the clock, never by sleeping.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from b24app import turns
from b24app.crm.policy import Policy
from b24app.jobs import Jobs
from b24app.store.db import utc_now
from b24app.store.journal import DONE, PENDING
from tests.conversion.portalstate import call, created, duplicates

HOUR = 3600.0


def _add_leads(core: Any, count: int, title: str = "import") -> list[int]:
    return [
        int(
            call(
                core,
                "crm.lead.add",
                {"fields": {"TITLE": f"{title} {i}", "NAME": "Ana", "STATUS_ID": "NEW"}},
            )
        )
        for i in range(count)
    ]


def _jobs(installed: Any, **options: Any) -> tuple[Any, Jobs, dict[str, dt.timedelta]]:
    app = installed(seed_leads=3)
    clock = {"ahead": dt.timedelta(0)}  # how far the test moved the clock
    jobs = Jobs(app.settings, immediate=True, now=lambda: utc_now() + clock["ahead"], **options)
    rule = Policy.from_dict({"auto": {"enabled": True}}).to_dict()
    jobs.services.portal_settings.save_policy(app.member_id, rule, by="1")
    return app, jobs, clock


def _requests(app: Any) -> int:
    return int(app.sandbox.stats()["http_requests"])


def _scheduled(jobs: Jobs) -> list[Any]:
    return [t for t in jobs.huey.scheduled() if t.name == "convert_job"]


def test_leads_gather_in_one_job_until_the_window_ends_then_convert_together(
    installed: Any,
) -> None:
    app, jobs, clock = _jobs(installed, window=HOUR, batch=500)
    core = app.sandbox.portal
    leads = _add_leads(core, 5)
    before = _requests(app)

    for lead in leads:
        jobs.lead_event(app.member_id, lead, "ONCRMLEADADD")

    journal = jobs.services.journal(app.member_id)
    [job] = journal.live_jobs()
    assert (job.kind, job.status, job.lead_ids) == ("event", PENDING, tuple(leads))
    assert _requests(app) == before  # gathering costs no REST request
    assert not created(core, "deal")
    assert len(_scheduled(jobs)) == 1  # one run, at the end of the window

    jobs._convert_job(app.member_id, job.id)  # a turn before the window ends: nothing runs
    assert journal.job(job.id).status == PENDING
    assert _requests(app) == before

    clock["ahead"] = dt.timedelta(seconds=HOUR + 60)
    jobs.run_job(app.member_id, job.id)

    done = journal.job(job.id)
    assert (done.status, done.converted) == (DONE, 5)
    assert all(len(created(core, "deal")[lead]) == 1 for lead in leads)
    assert [j.id for j in journal.jobs(50) if j.kind == "event"] == [job.id]


def test_a_full_batch_converts_at_once_without_waiting_for_the_window(installed: Any) -> None:
    app, jobs, _ = _jobs(installed, window=HOUR, batch=3)
    core = app.sandbox.portal
    first, second, third, late = _add_leads(core, 4)

    for lead in (first, second):
        jobs.lead_event(app.member_id, lead, "ONCRMLEADADD")
    assert not created(core, "deal")
    jobs.lead_event(app.member_id, third, "ONCRMLEADADD")  # the batch is full

    deals = created(core, "deal")
    assert all(len(deals[lead]) == 1 for lead in (first, second, third))
    journal = jobs.services.journal(app.member_id)
    [batch] = [j for j in journal.jobs(50) if j.kind == "event"]
    assert (batch.status, batch.converted, batch.lead_ids) == (DONE, 3, (first, second, third))

    jobs.lead_event(app.member_id, late, "ONCRMLEADADD")  # the next batch: a new job
    [waiting] = journal.live_jobs()
    assert waiting.id != batch.id and waiting.lead_ids == (late,)


def test_the_apps_own_changes_echoing_back_cost_no_request_and_no_job(installed: Any) -> None:
    app, jobs, _ = _jobs(installed, window=0.0)
    core = app.sandbox.portal
    leads = _add_leads(core, 3)
    for lead in leads:
        jobs.lead_event(app.member_id, lead, "ONCRMLEADADD")
    journal = jobs.services.journal(app.member_id)
    jobs_before = [j.id for j in journal.jobs(50)]
    assert all(call(core, "crm.lead.get", {"id": i})["STATUS_ID"] == "CONVERTED" for i in leads)
    before = _requests(app)

    for lead in leads:  # the closing crm.lead.update of each, as Bitrix24 sends it
        jobs.lead_event(app.member_id, lead, "ONCRMLEADUPDATE")
        jobs.lead_event(app.member_id, lead, "ONCRMLEADUPDATE")

    assert _requests(app) == before
    assert [j.id for j in journal.jobs(50)] == jobs_before
    assert not duplicates(core)


def test_an_echo_for_a_lead_underway_is_left_to_its_job(installed: Any) -> None:
    app, jobs, _ = _jobs(installed, window=HOUR)
    core = app.sandbox.portal
    [lead] = _add_leads(core, 1)
    journal = jobs.services.journal(app.member_id)
    job = journal.create_job(kind="app", policy=Policy().to_dict(), lead_ids=[lead])
    journal.save(job.id, [_underway(lead)])
    before = _requests(app)

    jobs.lead_event(app.member_id, lead, "ONCRMLEADUPDATE")

    assert _requests(app) == before
    assert [j.id for j in journal.live_jobs()] == [job.id]


def _underway(lead_id: int) -> Any:
    from b24app.store.journal import LeadEntry

    return LeadEntry(lead_id=lead_id, status="creating", state={"lead_id": lead_id})


def test_sweeps_and_events_merge_into_the_open_automatic_job(installed: Any) -> None:
    app, jobs, _ = _jobs(installed, window=HOUR)
    core = app.sandbox.portal
    [by_event] = _add_leads(core, 1, "event")
    jobs.lead_event(app.member_id, by_event, "ONCRMLEADADD")
    [lost] = _add_leads(core, 1, "lost event")
    from b24app import listeners

    outcome = listeners.sweep_portal(jobs.services, app.member_id, gathering=True)

    journal = jobs.services.journal(app.member_id)
    [job] = journal.live_jobs()
    assert outcome.job_id == job.id
    assert by_event in job.lead_ids and lost in job.lead_ids
    assert not created(core, "deal")


def test_an_admin_job_runs_before_the_due_automatic_job_of_its_portal(installed: Any) -> None:
    app, jobs, clock = _jobs(installed, window=HOUR)
    core = app.sandbox.portal
    leads = _add_leads(core, 2)
    for lead in leads:
        jobs.lead_event(app.member_id, lead, "ONCRMLEADADD")
    journal = jobs.services.journal(app.member_id)
    [automatic] = journal.live_jobs()
    admin = journal.create_job(kind="app", policy=Policy().to_dict())
    clock["ahead"] = dt.timedelta(seconds=HOUR + 60)  # both are due now

    wait = turns.wait_of(
        journal.job(automatic.id),
        journal.live_jobs(),
        now=jobs.now(),
        window=HOUR,
        batch=500,
    )
    assert wait is not None and (wait.place, wait.behind) == (2, (admin.id,))

    jobs.run_job(app.member_id, automatic.id)  # the automatic job's task: admin goes first

    first, second = journal.job(admin.id), journal.job(automatic.id)
    assert first.status == DONE and second.status == DONE
    assert first.finished_at <= second.started_at


def test_why_a_job_waits_names_what_it_is_behind_and_its_place() -> None:
    now = utc_now()

    def row(job_id: int, kind: str, status: str, **extra: Any) -> Any:
        from b24app.store.journal import JobRow

        return JobRow(
            id=job_id,
            portal="p",
            kind=kind,
            policy={},
            lead_ids=extra.pop("lead_ids", None),
            status=status,
            created_at=extra.pop("created_at", now),
            **extra,
        )

    running = row(1, "event", "running", started_at=now)
    admin = row(3, "app", PENDING)
    gathering = row(2, "event", PENDING, lead_ids=(5, 6))
    later_admin = row(4, "app", PENDING)
    live = [running, gathering, admin, later_admin]

    first = turns.wait_of(admin, live, now=now, window=60, batch=500)
    assert first is not None
    assert (first.place, first.behind, first.reason) == (2, (1,), "running")
    assert "behind job 1" in first.text
    second = turns.wait_of(later_admin, live, now=now, window=60, batch=500)
    assert second is not None and (second.place, second.behind) == (3, (1, 3))
    gather = turns.wait_of(gathering, live, now=now, window=60, batch=500)
    assert gather is not None and gather.reason == "gathering" and gather.place == 4
    assert gather.until == now + dt.timedelta(seconds=60)
    assert turns.wait_of(running, live, now=now, window=60, batch=500) is None
    assert turns.next_job(live, now=now, window=60, batch=500) == admin
    assert turns.next_job([gathering], now=now, window=60, batch=500) is None
    assert turns.next_job([gathering], now=now, window=60, batch=2) == gathering


def test_the_job_list_pages_through_history(installed: Any) -> None:
    app, jobs, _ = _jobs(installed)
    journal = jobs.services.journal(app.member_id)
    made = [journal.create_job(kind="app", policy=Policy().to_dict()).id for _ in range(25)]

    first = journal.jobs(10)
    second = journal.jobs(10, before=first[-1].id)
    third = journal.jobs(10, before=second[-1].id)
    assert [j.id for j in first + second + third] == sorted(made, reverse=True)
    assert journal.count_jobs() == 25
