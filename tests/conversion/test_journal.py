"""The conversion journal on SQLite and PostgreSQL: jobs, the one-live-job rule, lead states."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import inspect, update

from b24app.errors import ConfigError, UsageError
from b24app.store.db import make_engine
from b24app.store.journal import (
    DONE,
    INTERRUPTED,
    PENDING,
    RUNNING,
    JobBusy,
    JobCounts,
    Journal,
    LeadEntry,
    jobs,
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def url(request: pytest.FixtureRequest, database_url: str) -> str:
    if request.param == "sqlite":
        return database_url
    return request.getfixturevalue("fresh_postgres_url")


def _entry(lead_id: int, status: str = "creating", **extra: Any) -> LeadEntry:
    state = None if status in ("converted", "skipped") else {"plan": {"lead_id": lead_id}}
    return LeadEntry(lead_id=lead_id, status=status, state=state, **extra)


def _set_owner(journal: Journal, job_id: int, owner: str) -> None:
    with journal.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(owner=owner))


def test_migration_creates_the_tables_next_to_the_installations(url: str) -> None:
    Journal.open(url, portal="p")
    tables = set(inspect(make_engine(url)).get_table_names())
    assert {"jobs", "lead_states", "job_leads", "installations"} <= tables


def test_jobs_are_per_portal_newest_first(url: str) -> None:
    mine = Journal.open(url, portal="a.bitrix24.com")
    theirs = Journal(mine.engine, portal="b.bitrix24.com")
    first = mine.create_job(kind="convert", policy={"client": "both"}, lead_ids=[3, 1])
    second = mine.create_job(kind="switch", policy={}, lead_ids=None)
    other = theirs.create_job(kind="convert", policy={}, lead_ids=None)

    assert [job.id for job in mine.jobs()] == [second.id, first.id]
    assert mine.job(other.id) is None and theirs.job(first.id) is None
    assert (first.status, first.policy, first.lead_ids, first.kind) == (
        PENDING,
        {"client": "both"},
        (3, 1),
        "convert",
    )
    assert second.lead_ids is None and second.started_at is None
    assert first.to_dict()["created_at"] == first.created_at.isoformat()
    assert mine.jobs(limit=1) == [mine.job(second.id)]


def test_one_live_job_per_portal_and_dead_ones_are_taken_over(url: str) -> None:
    journal = Journal.open(url, portal="p")
    neighbour = Journal(journal.engine, portal="q")
    live = journal.start_job(kind="convert", policy={})
    assert (live.status, live.owner) == (RUNNING, journal.owner)

    with pytest.raises(JobBusy, match=f"job {live.id} is running"):
        journal.start_job(kind="convert", policy={})
    assert neighbour.start_job(kind="convert", policy={}).status == RUNNING  # other portal

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    _set_owner(journal, live.id, f"{dead}@{socket.gethostname()}")
    taken = journal.start_job(kind="convert", policy={})

    old = journal.job(live.id)
    assert old is not None and old.status == INTERRUPTED
    assert f"{dead}@" in (old.error or "") and taken.status == RUNNING


def test_a_job_on_another_machine_is_live_until_its_heartbeat_is_stale(url: str) -> None:
    journal = Journal.open(url, portal="p")
    job = journal.start_job(kind="convert", policy={})
    _set_owner(journal, job.id, "1@elsewhere")
    with pytest.raises(JobBusy):
        journal.claim_job(job.id)

    patient = Journal(journal.engine, portal="p", stale_after=0.0)
    claimed = patient.claim_job(job.id)
    assert (claimed.status, claimed.owner, claimed.error) == (RUNNING, patient.owner, None)


def test_claim_refuses_unknown_and_finished_jobs(url: str) -> None:
    journal = Journal.open(url, portal="p")
    job = journal.create_job(kind="convert", policy={})
    with pytest.raises(UsageError, match="no conversion job 999"):
        journal.claim_job(999)
    started = journal.claim_job(job.id)
    assert started.status == RUNNING and started.started_at is not None
    journal.finish_job(job.id, status=DONE, counts=JobCounts(requests=7, converted=2, total=2))
    with pytest.raises(UsageError, match="already done"):
        journal.claim_job(job.id)
    done = journal.job(job.id)
    assert done is not None
    assert (done.status, done.requests, done.converted, done.total) == (DONE, 7, 2, 2)
    assert done.finished_at is not None


def test_a_state_given_as_json_text_is_stored_as_that_text(url: str) -> None:
    """`LeadState.to_json` hands the journal text; it reads back like a dict saved before."""
    journal = Journal.open(url, portal="p")
    job = journal.start_job(kind="convert", policy={})
    text = json.dumps({"plan": {"lead_id": 1}, "progress": {"done": ["c"]}}, sort_keys=True)
    journal.save(job.id, [LeadEntry(lead_id=1, status="creating", state=text)], taken=True)
    journal.save(job.id, [_entry(2)], taken=True)
    states = journal.states([1, 2])
    assert states[1].state == {"plan": {"lead_id": 1}, "progress": {"done": ["c"]}}
    assert states[2].state == {"plan": {"lead_id": 2}}


def test_save_keeps_states_per_portal_and_outcomes_per_job(url: str) -> None:
    journal = Journal.open(url, portal="p")
    neighbour = Journal(journal.engine, portal="q")
    one = journal.start_job(kind="convert", policy={})
    journal.save(
        one.id,
        [_entry(1), _entry(2), _entry(3, "skipped", error="JUNK")],
        counts=JobCounts(requests=3, skipped=1),
        taken=True,
    )
    journal.save(
        one.id,
        [_entry(1, "converted", deal_id=10, contact_id=11), _entry(2, "failed", error="boom")],
        counts=JobCounts(requests=5, converted=1, failed=1, skipped=1),
    )
    neighbour.save(neighbour.start_job(kind="convert", policy={}).id, [_entry(1)], taken=True)

    states = journal.states([1, 2, 3, 4])
    assert sorted(states) == [1, 2]  # skipped leads leave no conversion state
    assert (states[1].status, states[1].state, states[1].deal_id, states[1].attempts) == (
        "converted",
        None,
        10,
        1,
    )
    assert (states[2].status, states[2].error, states[2].state) == (
        "failed",
        "boom",
        {"plan": {"lead_id": 2}},
    )
    assert journal.unfinished() == [] and [r.lead_id for r in neighbour.unfinished()] == [1]

    journal.finish_job(one.id, status=DONE)
    two = journal.start_job(kind="convert", policy={})
    journal.save(
        two.id,
        [_entry(1, "skipped", error="already converted by job 1", deal_id=10), _entry(2)],
        taken=True,
    )

    assert [(e.lead_id, e.status) for e in journal.outcomes(one.id)] == [
        (1, "converted"),
        (2, "failed"),
        (3, "skipped"),
    ]
    assert [(e.lead_id, e.status, e.deal_id) for e in journal.outcomes(two.id)] == [
        (1, "skipped", 10),
        (2, "creating", None),
    ]
    assert journal.outcome_statuses(two.id) == {1: "skipped", 2: "creating"}
    assert journal.status_counts(one.id) == {"converted": 1, "failed": 1, "skipped": 1}
    again = journal.states([1, 2])
    assert again[1].status == "converted" and again[2].attempts == 2
    assert [r.lead_id for r in journal.unfinished([2, 5])] == [2]
    stored = journal.job(one.id)
    assert stored is not None and (stored.requests, stored.converted) == (5, 1)
    assert list(neighbour.outcomes(one.id)) == []


def test_a_save_may_write_the_outcomes_of_some_leads_only(url: str) -> None:
    """Before a batch is sent only the leads whose status changed need their job outcome
    written again; every lead's state is saved."""
    journal = Journal.open(url, portal="p")
    job = journal.start_job(kind="convert", policy={})
    journal.save(job.id, [_entry(1, "pending"), _entry(2, "pending")], taken=True)
    journal.save(job.id, [_entry(1), _entry(2, "pending", deal_id=9)], outcomes_of={1})

    assert journal.outcome_statuses(job.id) == {1: "creating", 2: "pending"}
    assert [e.deal_id for e in journal.outcomes(job.id)] == [None, None]
    assert journal.states([2])[2].deal_id == 9  # the state itself is saved


def test_a_journal_needs_a_portal_key(database_url: str) -> None:
    with pytest.raises(UsageError):
        Journal(make_engine(database_url), portal="")
    with pytest.raises(UsageError):
        Journal.open(database_url, portal="p").finish_job(1, status="exploded")


def test_a_database_that_cannot_be_opened_is_one_clear_error(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match=r"cannot open the database sqlite:///.*unable to open"):
        Journal.open(f"sqlite:///{tmp_path}/missing/dir/app.db", portal="p")
    with pytest.raises(ConfigError) as caught:
        Journal.open("postgresql://app:s3cret@127.0.0.1:1/app", portal="p")
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)
