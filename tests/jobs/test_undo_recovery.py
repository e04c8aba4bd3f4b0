"""The worker's recovery re-offers an interrupted undo job through the undo path: the undo job is
continued (not a second one started), nothing is reverted twice, and the portal ends as it was
before the conversion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from b24app import undo
from b24app.crm.policy import Policy
from b24app.jobs import Jobs
from b24app.store.journal import Journal
from b24app.store.undo import KIND, UndoStore
from bench.undo import compare, portal_snapshot
from tests.undo.dying import Died, DyingClient, owner_died


def _undo_jobs(journal: Journal, source: int) -> list[Any]:
    return UndoStore(journal).undo_jobs(source)


def test_recovery_finishes_an_undo_whose_worker_died(installed: Any) -> None:
    app = installed(seed_leads=30, custom_fields=True)
    jobs = Jobs(app.settings, immediate=True)
    journal = Journal(jobs.services.engine, portal=app.member_id)
    before = portal_snapshot(app.sandbox)
    policy = Policy.from_json('{"client": "both", "activities": "move", "create_fields": true}')
    job = journal.create_job(kind="app", policy=policy.to_dict())
    jobs.run_job(app.member_id, job.id)
    assert journal.job(job.id).status == "done"

    client = jobs.services.client(app.member_id)
    writes: list[int] = []

    def second_write(commands: Sequence[Any]) -> bool:
        if any(not c.method.endswith((".list", ".mode.get")) for c in commands):
            writes.append(1)
        return len(writes) == 2

    with pytest.raises(Died):
        undo.undo(DyingClient(client, second_write), journal, job.id)  # type: ignore[arg-type]
    client.close()
    (interrupted,) = _undo_jobs(journal, job.id)
    assert interrupted.kind == KIND and interrupted.status == "running"
    owner_died(jobs.services.engine)

    assert jobs.recover() == [(app.member_id, interrupted.id)]

    (finished,) = _undo_jobs(journal, job.id)  # continued, not a second undo job
    assert finished.id == interrupted.id and finished.status == "done"
    diff = compare(before, portal_snapshot(app.sandbox))
    assert diff.lines == []
    assert set(diff.explained) <= {"lead.IS_RETURN_CUSTOMER"}
    assert jobs.recover() == []
    report = undo.undo(jobs.services.client(app.member_id), journal, job.id)
    assert report.status == "noop"  # an undo of the undone job changes nothing
