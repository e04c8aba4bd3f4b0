"""Jobs in Huey's immediate mode: the enqueue API the web uses runs the tasks synchronously."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from huey import MemoryHuey, RedisHuey, SqliteHuey

from b24app.config import Settings
from b24app.crm.policy import Policy
from b24app.errors import ConfigError
from b24app.jobs import Jobs, make_huey, queue_path
from b24app.store.journal import PENDING, Journal
from tests.conversion.portalstate import assert_converted, duplicates, snapshot


def test_the_default_queue_is_a_sqlite_file_beside_the_database(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'app.db'}")
    huey = make_huey(settings)
    assert isinstance(huey, SqliteHuey)
    assert queue_path(settings) == tmp_path / "app-queue.db"
    assert huey.storage.filename == str(tmp_path / "app-queue.db")


def test_a_postgres_database_puts_the_default_queue_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(database_url="postgresql://u@h/db")
    assert queue_path(settings) == tmp_path / "b24app-queue.db"


def test_queue_urls_pick_redis_or_a_sqlite_file_and_bad_ones_are_one_error(
    tmp_path: Path,
) -> None:
    assert isinstance(make_huey(Settings(queue_url="redis://127.0.0.1:6379/3")), RedisHuey)
    path = tmp_path / "q.db"
    huey = make_huey(Settings(queue_url=f"sqlite:///{path}"))
    assert isinstance(huey, SqliteHuey)
    assert huey.storage.filename == str(path)
    with pytest.raises(ConfigError, match="B24APP_QUEUE_URL"):
        make_huey(Settings(queue_url="amqp://h/"))


def test_immediate_mode_keeps_the_queue_in_memory() -> None:
    huey = make_huey(Settings(), immediate=True)
    assert isinstance(huey, MemoryHuey)
    assert huey.immediate


def test_two_jobs_objects_build_the_same_task_names(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'app.db'}")
    web, worker = Jobs(settings), Jobs(settings)
    assert web.task_names() == worker.task_names()
    assert {"b24app.jobs.convert_job", "b24app.jobs.lead_event", "b24app.jobs.tick"} <= set(
        web.task_names()
    )


def test_run_job_converts_a_pending_job_slice_by_slice(installed: Any) -> None:
    app = installed(seed_leads=60, slice_leads=15)
    before = snapshot(app.sandbox.portal)
    jobs = Jobs(app.settings, immediate=True)
    journal = Journal(jobs.services.engine, portal=app.member_id)
    job = journal.create_job(kind="app", policy=Policy().to_dict())

    jobs.run_job(app.member_id, job.id)

    done = journal.job(job.id)
    assert done is not None
    assert (done.status, done.converted) == ("done", len(before.active))
    assert journal.status_counts(job.id)["converted"] == len(before.active)
    assert_converted(app.sandbox.portal, before, Policy())


def test_a_finished_job_run_again_changes_nothing(installed: Any) -> None:
    app = installed(seed_leads=20)
    jobs = Jobs(app.settings, immediate=True)
    journal = Journal(jobs.services.engine, portal=app.member_id)
    job = journal.create_job(kind="app", policy=Policy().to_dict())
    jobs.run_job(app.member_id, job.id)
    requests = app.sandbox.stats()["http_requests"]

    jobs.run_job(app.member_id, job.id)

    assert app.sandbox.stats()["http_requests"] == requests
    assert not duplicates(app.sandbox.portal)


def test_a_busy_portal_schedules_the_job_again_instead_of_dropping_it(installed: Any) -> None:
    app = installed(seed_leads=10)
    jobs = Jobs(app.settings, immediate=True)
    journal = Journal(jobs.services.engine, portal=app.member_id)
    job = journal.create_job(kind="app", policy=Policy().to_dict())

    with jobs.locks.hold(jobs.lock_name(app.member_id)) as got:
        assert got
        jobs.run_job(app.member_id, job.id)

    assert journal.job(job.id).status == PENDING
    assert jobs.huey.scheduled_count() == 1


def test_recovery_takes_over_a_job_whose_worker_died(installed: Any) -> None:
    import socket
    import subprocess

    from sqlalchemy import update

    from b24app.store.journal import jobs as jobs_table

    app = installed(seed_leads=30, slice_leads=10)
    before = snapshot(app.sandbox.portal)
    jobs = Jobs(app.settings, immediate=True)
    journal = Journal(jobs.services.engine, portal=app.member_id)
    job = journal.create_job(kind="app", policy=Policy().to_dict())
    dead = subprocess.Popen(["true"])
    dead.wait()
    with jobs.services.engine.begin() as conn:
        conn.execute(
            update(jobs_table)
            .where(jobs_table.c.id == job.id)
            .values(status="running", owner=f"{dead.pid}@{socket.gethostname()}")
        )

    assert jobs.recover() == [(app.member_id, job.id)]

    assert journal.job(job.id).status == "done"
    assert_converted(app.sandbox.portal, before, Policy())
    assert jobs.recover() == []


def test_recovery_leaves_a_job_whose_worker_is_alive(installed: Any) -> None:
    app = installed(seed_leads=5)
    jobs = Jobs(app.settings, immediate=True)
    journal = Journal(jobs.services.engine, portal=app.member_id)
    job = journal.create_job(kind="app", policy=Policy().to_dict())
    journal.claim_job(job.id)  # running in this (live) process

    with jobs.locks.hold(jobs.lock_name(app.member_id)):
        assert jobs.recover() == [(app.member_id, job.id)]  # offered, turned away by the lock

    assert journal.job(job.id).status == "running"
    assert jobs.huey.scheduled_count() == 0


def test_recovery_offers_a_pending_job_only_when_its_task_is_gone(installed: Any) -> None:
    import datetime as dt

    from sqlalchemy import update

    from b24app.store.db import utc_now
    from b24app.store.journal import jobs as jobs_table

    app = installed(seed_leads=5)
    jobs = Jobs(app.settings, immediate=True)
    journal = Journal(jobs.services.engine, portal=app.member_id)
    job = journal.create_job(kind="app", policy=Policy().to_dict())
    with jobs.services.engine.begin() as conn:
        conn.execute(
            update(jobs_table)
            .where(jobs_table.c.id == job.id)
            .values(created_at=utc_now() - dt.timedelta(minutes=5))
        )
    jobs._convert.schedule(args=(app.member_id, job.id), delay=600)  # its task, waiting

    assert jobs.recover() == []
    jobs.huey.flush()  # the task is lost (a worker killed right after taking it)
    assert jobs.recover() == [(app.member_id, job.id)]
    assert journal.job(job.id).status == "done"


def _set_job(jobs: Jobs, job_id: int, **values: Any) -> None:
    from sqlalchemy import update

    from b24app.store.journal import jobs as jobs_table

    with jobs.services.engine.begin() as conn:
        conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(**values))


def _ago(seconds: float) -> Any:
    import datetime as dt

    from b24app.store.db import utc_now

    return utc_now() - dt.timedelta(seconds=seconds)


def test_a_job_left_running_in_a_live_worker_is_taken_over_once_its_lease_lapses(
    installed: Any,
) -> None:
    # The stall: the run that claimed the job ended without closing it (its thread moved on,
    # its process lives), so "is its process alive?" said yes at every recovery, for ever.
    from b24app.jobs import LEASE_STALE

    app = installed(seed_leads=20, slice_leads=50)
    before = snapshot(app.sandbox.portal)
    jobs = Jobs(app.settings, immediate=True)
    journal = Journal(jobs.services.engine, portal=app.member_id)
    job = journal.create_job(kind="app", policy=Policy().to_dict())
    journal.claim_job(job.id)  # owned by this live process, then abandoned
    _set_job(jobs, job.id, heartbeat_at=_ago(LEASE_STALE / 2))

    assert jobs.recover() == [(app.member_id, job.id)]
    assert journal.job(job.id).status == "running"  # its lease is still fresh: left alone

    _set_job(jobs, job.id, heartbeat_at=_ago(LEASE_STALE + 1))
    assert jobs.recover() == [(app.member_id, job.id)]

    assert journal.job(job.id).status == "done"
    assert_converted(app.sandbox.portal, before, Policy())
    assert duplicates(app.sandbox.portal) == {}


def test_a_job_whose_worker_died_on_another_machine_is_taken_over_once_its_lease_lapses(
    installed: Any,
) -> None:
    from b24app.jobs import LEASE_STALE

    app = installed(seed_leads=10)
    jobs = Jobs(app.settings, immediate=True)
    journal = Journal(jobs.services.engine, portal=app.member_id)
    job = journal.create_job(kind="app", policy=Policy().to_dict())
    _set_job(jobs, job.id, status="running", owner="4242@elsewhere", heartbeat_at=_ago(5))

    jobs.recover()
    assert journal.job(job.id).status == "running"  # beating on its machine: alive

    _set_job(jobs, job.id, heartbeat_at=_ago(LEASE_STALE + 1))  # not the 15 minutes of old
    jobs.recover()
    assert journal.job(job.id).status == "done"


def test_a_job_interrupted_because_its_process_died_is_retried_at_once(installed: Any) -> None:
    from b24app.store.journal import ABANDONED

    app = installed(seed_leads=10)
    jobs = Jobs(app.settings, immediate=True)
    journal = Journal(jobs.services.engine, portal=app.member_id)
    stopped = journal.create_job(kind="app", policy=Policy().to_dict())
    _set_job(
        jobs, stopped.id, status="interrupted", finished_at=_ago(1), error="the portal failed: 500"
    )
    assert jobs.recover() == []  # an unreachable portal: tried again after a back-off
    journal.finish_job(stopped.id, status="done")

    orphan = journal.create_job(kind="app", policy=Policy().to_dict())
    _set_job(
        jobs,
        orphan.id,
        status="interrupted",
        finished_at=_ago(1),
        error=ABANDONED.format(owner="4242@elsewhere"),
    )
    assert jobs.recover() == [(app.member_id, orphan.id)]
    assert journal.job(orphan.id).status == "done"


def test_the_lease_renews_only_a_running_job_of_this_process(installed: Any) -> None:
    import threading

    from b24app.jobs import lease

    app = installed(seed_leads=5)
    jobs = Jobs(app.settings, immediate=True)
    journal = Journal(jobs.services.engine, portal=app.member_id)
    job = journal.create_job(kind="app", policy=Policy().to_dict())
    assert not journal.beat(job.id)  # pending: nobody's lease
    journal.claim_job(job.id)
    _set_job(jobs, job.id, heartbeat_at=_ago(120))
    assert journal.beat(job.id)
    assert journal.job(job.id).heartbeat_at > _ago(60)
    _set_job(jobs, job.id, owner="4242@elsewhere")
    assert not journal.beat(job.id)  # taken over: not ours to renew

    with lease(journal, job.id, every=0.01):
        keepers = [t for t in threading.enumerate() if t.name == f"lease-{job.id}"]
        assert len(keepers) == 1
    assert not keepers[0].is_alive()  # renewals end with the run
