"""Fair scheduling inside the conversion service: `max_leads` pauses a job, `resume` continues."""

from __future__ import annotations

from typing import Any

from b24app.crm.conversion import convert, resume
from b24app.crm.policy import Policy
from b24app.store.journal import PENDING, Journal
from tests.conversion.conftest import client_for
from tests.conversion.portalstate import assert_converted, snapshot


def test_a_sliced_job_pauses_as_pending_and_resumes_to_done_exactly_once(
    make_sandbox: Any, journal: Journal
) -> None:
    sandbox = make_sandbox(seed_leads=90)
    before = snapshot(sandbox.portal)
    policy = Policy()
    client = client_for(sandbox)

    first = convert(client, journal, policy, max_leads=25, kind="app")
    assert first.status == PENDING
    assert 0 < first.converted <= 25
    statuses = [first.status]
    job_id = first.job_id
    report = first
    while report.status == PENDING:
        report = resume(client, journal, job_id, max_leads=25)
        statuses.append(report.status)
        assert len(statuses) < 10

    assert report.status == "done"
    assert len(statuses) >= 3  # more than one slice ran
    assert report.converted == len(before.active)
    assert_converted(sandbox.portal, before, policy)
