"""Journal.open_jobs: every portal's unfinished jobs of the asked kinds, oldest first, read back
with their statuses as the journal's enums (equal to the stored strings, so JSON is unchanged)."""

from __future__ import annotations

import json

import pytest

from b24app.crm.journal import JobStatus, JobWaiting, LeadStatus
from b24app.store.journal import Journal, LeadEntry


def test_open_jobs_lists_unfinished_jobs_of_the_kinds_across_portals(tmp_path) -> None:
    first = Journal.open(f"sqlite:///{tmp_path / 'j.db'}", portal="first")
    second = Journal(first.engine, portal="second")
    running = first.start_job(kind="app", policy={})
    first.finish_job(running.id, status=JobStatus.INTERRUPTED, error="stopped")
    done = first.create_job(kind="event", policy={})
    first.finish_job(done.id, status=JobStatus.DONE)
    pending = second.create_job(kind="sweep", policy={})
    cli = second.create_job(kind="convert", policy={})

    found = Journal.open_jobs(first.engine, kinds=("app", "event", "sweep"))

    assert [(job.portal, job.id, job.status) for job in found] == [
        ("first", running.id, "interrupted"),
        ("second", pending.id, "pending"),
    ]
    assert found[0].error == "stopped"
    assert cli.id not in {job.id for job in found}
    assert all(isinstance(job.status, JobStatus) for job in found)
    assert json.loads(json.dumps(found[1].to_dict()))["status"] == "pending"


def test_lead_states_come_back_as_the_enum_the_scheduler_uses(tmp_path) -> None:
    journal = Journal.open(f"sqlite:///{tmp_path / 'j.db'}", portal="p")
    job = journal.start_job(kind="convert", policy={}, lead_ids=[1])
    journal.save(job.id, [LeadEntry(lead_id=1, status=LeadStatus.CREATING, state={"x": 1})])

    (record,) = journal.unfinished()

    assert (record.lead_id, record.status) == (1, LeadStatus.CREATING)
    assert journal.outcome_statuses(job.id) == {1: "creating"}


def test_a_job_recorded_alone_waits_for_the_portals_live_job(tmp_path) -> None:
    journal = Journal.open(f"sqlite:///{tmp_path / 'j.db'}", portal="p")
    other = Journal(journal.engine, portal="other")
    assert journal.live_job() is None
    first = journal.create_job(kind="app", policy={}, alone=True)
    other.create_job(kind="app", policy={}, alone=True)  # another portal's slot is its own

    with pytest.raises(JobWaiting) as refused:
        journal.create_job(kind="app", policy={}, alone=True)

    assert refused.value.job == first.id
    live = journal.live_job()
    assert live is not None and live.id == first.id
    assert [job.id for job in journal.jobs()] == [first.id]
    journal.finish_job(first.id, status=JobStatus.DONE)
    assert journal.live_job() is None
    assert journal.create_job(kind="app", policy={}, alone=True).id > first.id
