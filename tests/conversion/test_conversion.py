"""Conversion against the sandbox portal: every policy, reruns, explicit ids, failures, faults."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from typing import Any

import pytest

from b24app.crm.conversion import Progress, convert, preview, read_mode, resume
from b24app.crm.mode import Mode
from b24app.crm.policy import Policy, PolicyError
from b24app.errors import AuthError, UsageError
from b24app.store.journal import INTERRUPTED, JobBusy, Journal

from .conftest import PORTAL, client_for
from .portalstate import assert_converted, call, created, duplicates, rows, snapshot

POLICIES = [
    {"client": client, "activities": activities, "pipeline": pipeline}
    for client in ("contact", "company", "both")
    for activities in ("move", "complete")
    for pipeline in (0, 7)
]


def _make_repeat_leads(core: Any) -> None:
    """Two active leads come back from an existing contact, one from an existing company."""
    active = snapshot(core).active
    contact = int(rows(core, "crm.contact.list")[0]["ID"])
    company = int(rows(core, "crm.company.list")[0]["ID"])
    for lead_id, fields in (
        (active[1], {"CONTACT_ID": contact}),
        (active[2], {"COMPANY_ID": company}),
        (active[3], {"CONTACT_ID": contact, "COMPANY_ID": company}),
    ):
        call(core, "crm.lead.update", {"id": lead_id, "fields": fields})


@pytest.mark.parametrize("raw", POLICIES, ids=lambda p: "-".join(map(str, p.values())))
def test_every_policy_converts_each_active_lead_once_and_a_rerun_creates_nothing(
    make_sandbox: Any, journal: Journal, raw: dict[str, Any]
) -> None:
    sandbox = make_sandbox(seed_leads=80)
    core = sandbox.portal
    policy = Policy.from_dict(raw)
    _make_repeat_leads(core)
    before = snapshot(core)
    client = client_for(sandbox)

    report = convert(client, journal, policy)

    assert (report.status, report.failed, report.error) == ("done", 0, None)
    assert report.converted == len(before.active) > 40
    assert report.requests == client.requests_made
    assert {lead.lead_id for lead in report.leads} == set(before.active)
    assert all(lead.deal_id for lead in report.leads)
    assert_converted(core, before, policy)
    counts = core.counts()

    again = convert(client, journal, policy)

    assert (again.status, again.converted, again.failed, again.leads) == ("done", 0, 0, ())
    assert core.counts() == counts
    assert again.requests == 1  # one page of (no) active leads; the facts are cached (FACTS_TTL)


def test_report_json_and_csv_follow_the_cli_contract(make_sandbox: Any, journal: Journal) -> None:
    sandbox = make_sandbox(seed_leads=20)
    report = convert(client_for(sandbox), journal, Policy())

    data = report.to_dict()
    assert list(data) == [
        "converted",
        "failed",
        "skipped",
        "requests",
        "job_id",
        "status",
        "error",
        "leads",
    ]
    assert data["job_id"] == report.job_id and data["status"] == "done"
    assert list(data["leads"][0]) == [
        "lead_id",
        "status",
        "deal_id",
        "contact_id",
        "company_id",
        "error",
    ]
    lines = list(csv.reader(io.StringIO(report.to_csv())))
    assert lines[0] == ["lead_id", "status", "deal_id", "contact_id", "company_id", "error"]
    assert len(lines) == 1 + report.converted
    first = report.leads[0]
    assert lines[1] == [
        str(first.lead_id),
        "converted",
        str(first.deal_id),
        str(first.contact_id or ""),
        str(first.company_id or ""),
        "",
    ]
    assert journal.job(report.job_id).converted == report.converted  # type: ignore[union-attr]


def test_explicit_ids_report_skips_and_a_rerun_skips_without_reading(
    make_sandbox: Any, journal: Journal
) -> None:
    sandbox = make_sandbox(seed_leads=40)
    before = snapshot(sandbox.portal)
    active = before.active[:3]
    closed = {before.leads[i]["STATUS_ID"]: i for i in before.closed}
    ids = [*active, closed["CONVERTED"], closed["JUNK"], 999_999]
    client = client_for(sandbox)

    report = convert(client, journal, Policy(), lead_ids=ids)

    by_id = {lead.lead_id: lead for lead in report.leads}
    assert [by_id[i].status for i in ids] == ["converted"] * 3 + ["skipped"] * 3
    assert by_id[closed["CONVERTED"]].error == "already converted"
    assert "JUNK" in (by_id[closed["JUNK"]].error or "")
    assert by_id[999_999].error == "lead not found"
    assert (report.converted, report.skipped, report.status) == (3, 3, "done")

    first_requests = client.requests_made
    again = convert(client, journal, Policy(), lead_ids=active)

    assert [lead.status for lead in again.leads] == ["skipped"] * 3
    assert {lead.error for lead in again.leads} == {f"already converted by job {report.job_id}"}
    assert [lead.deal_id for lead in again.leads] == [by_id[i].deal_id for i in active]
    assert client.requests_made - first_requests == 0  # facts cached (FACTS_TTL), leads not read
    # each job keeps its own outcome for the same lead
    assert journal.job(report.job_id).converted == 3  # type: ignore[union-attr]


def test_preview_changes_nothing_and_describes_each_active_lead(make_sandbox: Any) -> None:
    sandbox = make_sandbox(seed_leads=40)
    before = snapshot(sandbox.portal)
    client = client_for(sandbox)

    previews = preview(client, Policy.from_dict({"client": "both", "activities": "move"}))

    assert sandbox.portal.counts() == before.counts
    assert [p.lead_id for p in previews] == sorted(before.active)
    first = previews[0]
    assert first.skip is None and first.stage == "CONVERTED"
    assert set(first.move) == before.open_activities.get(first.lead_id, set())
    assert first.text().startswith(f"lead {first.lead_id}: ")
    assert client.requests_made == 4  # facts, leads, the chunk's listings, its comments


def test_read_mode(make_sandbox: Any) -> None:
    assert read_mode(client_for(make_sandbox(seed_leads=0))) is Mode.CLASSIC
    assert read_mode(client_for(make_sandbox(seed_leads=0, mode="simple"))) is Mode.SIMPLE


def test_a_policy_that_does_not_fit_the_portal_is_refused_before_any_job(
    make_sandbox: Any, journal: Journal
) -> None:
    sandbox = make_sandbox(seed_leads=5)
    with pytest.raises(PolicyError, match="pipeline 42 does not exist"):
        convert(client_for(sandbox), journal, Policy(pipeline=42))
    assert journal.jobs() == []
    with pytest.raises(UsageError, match="no lead ids"):
        convert(client_for(sandbox), journal, Policy(), lead_ids=[])


def test_dead_credentials_fail_before_any_job(make_sandbox: Any, journal: Journal) -> None:
    sandbox = make_sandbox(seed_leads=5)
    wrong = sandbox.webhook_url.replace(sandbox.webhook_code, "0" * 16)
    with pytest.raises(AuthError):
        convert(client_for(sandbox, url=wrong), journal, Policy())
    assert journal.jobs() == []


def test_one_lead_failing_does_not_stop_the_others(make_sandbox: Any, journal: Journal) -> None:
    sandbox = make_sandbox(seed_leads=60)
    core = sandbox.portal
    before = snapshot(core)
    victim = before.active[-1]
    deleted = []

    def delete_victim(progress: Progress) -> None:
        if not deleted:
            deleted.append(call(core, "crm.lead.delete", {"id": victim}))

    report = convert(client_for(sandbox), journal, Policy(), on_progress=delete_victim)

    failed = [lead for lead in report.leads if lead.status == "failed"]
    assert [lead.lead_id for lead in failed] == [victim]
    assert failed[0].error
    assert (report.status, report.converted) == ("failed", len(before.active) - 1)
    assert not duplicates(core)


def test_a_portal_wide_failure_interrupts_and_resume_finishes(
    make_sandbox: Any, journal: Journal
) -> None:
    sandbox = make_sandbox(seed_leads=80)
    core = sandbox.portal
    before = snapshot(core)
    policy = Policy.from_dict({"client": "both", "activities": "move"})
    calls = []

    def delete_portal(progress: Progress) -> None:
        calls.append(progress)
        if len(calls) == 4:
            sandbox.set_portal_state("deleted")

    report = convert(client_for(sandbox), journal, policy, on_progress=delete_portal)

    assert report.status == INTERRUPTED
    assert "PORTAL_DELETED" in (report.error or "")
    assert any(lead.status == "pending" for lead in report.leads)
    stored = journal.job(report.job_id)  # type: ignore[arg-type]
    assert stored is not None and stored.status == INTERRUPTED and stored.error == report.error

    sandbox.set_portal_state("active")
    resumed = resume(client_for(sandbox), journal, report.job_id)  # type: ignore[arg-type]

    assert (resumed.status, resumed.job_id, resumed.failed) == ("done", report.job_id, 0)
    assert resumed.converted == len(before.active)
    assert_converted(core, before, policy)
    again = resume(client_for(sandbox), journal, report.job_id)  # type: ignore[arg-type]
    assert (again.status, again.requests, again.converted) == ("done", 0, resumed.converted)


def test_a_stopped_run_resumes_and_a_lost_journal_creates_no_duplicates(
    make_sandbox: Any, journal: Journal, tmp_path: Any
) -> None:
    sandbox = make_sandbox(seed_leads=80)
    core = sandbox.portal
    before = snapshot(core)
    policy = Policy.from_dict({"client": "both", "activities": "complete", "pipeline": 9})
    batches = []

    def stop(progress: Progress) -> None:
        batches.append(progress)
        if len(batches) == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert(client_for(sandbox), journal, policy, on_progress=stop)
    job = journal.jobs()[0]
    assert (job.status, job.error) == (INTERRUPTED, "the run was interrupted (KeyboardInterrupt)")
    partly = {kind: len(created(core, kind)) for kind in ("deal", "contact", "company")}
    assert 0 < partly["deal"] < len(before.active)
    closed = sum(
        1
        for r in rows(core, "crm.lead.list", {"STATUS_ID": "CONVERTED"})
        if int(r["ID"]) in before.active
    )

    # A new database: the journal knows nothing, the portal still has what was created.
    fresh = Journal.open(f"sqlite:///{tmp_path / 'other.db'}", portal=PORTAL)
    report = convert(client_for(sandbox), fresh, policy)

    assert (report.status, report.converted) == ("done", len(before.active) - closed)
    assert closed < partly["deal"]  # some leads had their deal but were not closed yet
    assert_converted(core, before, policy)


def test_only_one_live_job_per_portal(make_sandbox: Any, journal: Journal) -> None:
    sandbox = make_sandbox(seed_leads=5)
    other = Journal(journal.engine, portal=PORTAL)
    running = other.start_job(kind="convert", policy={}, lead_ids=None)

    with pytest.raises(JobBusy, match=f"job {running.id} is running"):
        convert(client_for(sandbox), journal, Policy())

    other.finish_job(running.id, status="done")
    assert convert(client_for(sandbox), journal, Policy()).status == "done"


def test_faults_500_and_dropped_connections_complete_without_duplicates(
    make_sandbox: Any, journal: Journal
) -> None:
    sandbox = make_sandbox(seed_leads=400)
    core = sandbox.portal
    before = snapshot(core)
    policy = Policy.from_dict({"client": "both", "activities": "move"})
    sandbox.set_faults("500:0.1,drop_before:0.1,drop_after:0.1")
    client = client_for(sandbox)

    report = convert(client, journal, policy)
    for _ in range(5):
        if report.status != INTERRUPTED:
            break
        report = resume(client, journal, report.job_id)  # type: ignore[arg-type]

    assert (report.status, report.converted) == ("done", len(before.active))
    faults = sandbox.stats()["faults"]
    assert min(faults["500"], faults["drop_after"], faults["drop_before"]) >= 3
    assert sum(faults.values()) >= 15
    sandbox.set_faults(None)
    assert_converted(core, before, policy)


def test_the_policys_lead_selection_narrows_what_is_converted(
    make_sandbox: Any, journal: Journal
) -> None:
    sandbox = make_sandbox(seed_leads=60)
    core = sandbox.portal
    before = snapshot(core)
    new = [i for i in before.active if before.leads[i]["STATUS_ID"] == "NEW"]
    other = [i for i in before.active if before.leads[i]["STATUS_ID"] != "NEW"]
    policy = Policy.from_dict({"leads": {"stages": ["NEW"], "ids": other[:2]}})

    explicit = convert(client_for(sandbox), journal, policy, lead_ids=[new[0], other[0]])

    by_id = {lead.lead_id: lead for lead in explicit.leads}
    assert (by_id[new[0]].status, by_id[other[0]].status) == ("converted", "skipped")
    assert by_id[other[0]].error == "not picked by the policy's lead selection"
    assert len(by_id) == 2  # the lead_ids argument wins over the policy's ids

    by_stage = convert(
        client_for(sandbox), journal, replace(policy, leads=replace(policy.leads, ids=()))
    )

    assert sorted(lead.lead_id for lead in by_stage.leads) == sorted(new[1:])
    untouched = rows(core, "crm.lead.list", {"@ID": other})
    assert {r["STATUS_ID"] for r in untouched} <= {"IN_PROCESS", "PROCESSED"}


@pytest.mark.services
def test_a_postgresql_journal_survives_an_interruption(
    make_sandbox: Any, fresh_postgres_url: str
) -> None:
    sandbox = make_sandbox(seed_leads=80)
    before = snapshot(sandbox.portal)
    policy = Policy.from_dict({"client": "both", "activities": "move"})
    journal = Journal.open(fresh_postgres_url, portal=PORTAL)
    seen: list[Progress] = []

    def stop(progress: Progress) -> None:
        seen.append(progress)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert(client_for(sandbox), journal, policy, on_progress=stop)
    job = journal.jobs()[0]
    assert job.status == INTERRUPTED and journal.unfinished()

    report = resume(client_for(sandbox), journal, job.id)

    assert (report.status, report.converted) == ("done", len(before.active))
    assert_converted(sandbox.portal, before, policy)
    assert journal.unfinished() == []
