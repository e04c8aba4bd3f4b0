"""What a conversion job did, per lead: the CLI's JSON and CSV, built from the journal.

Each job keeps its own per-lead outcome rows, so a lead converted by job 1 and met again by job 2
reads "converted" in job 1's report and "skipped" (already converted) in job 2's.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from b24app.crm.journal import JobJournal, JobRow, LeadEntry, LeadStatus
from b24app.errors import UsageError

CSV_COLUMNS = ("lead_id", "status", "deal_id", "contact_id", "company_id", "error")
# A lead a job has taken up but not finished reads "pending" in its report.
_UNFINISHED: dict[str, str] = {
    LeadStatus.PENDING: LeadStatus.PENDING,
    LeadStatus.CREATING: LeadStatus.PENDING,
}


@dataclass(frozen=True)
class LeadOutcome:
    """One lead in a job's report.

    `status`: converted | failed | skipped, or pending for a lead an interrupted job left
    underway. `error`: why it failed or was skipped.
    """

    lead_id: int
    status: str
    deal_id: int | None = None
    contact_id: int | None = None
    company_id: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the CSV's columns."""
        return {name: getattr(self, name) for name in CSV_COLUMNS}

    @classmethod
    def from_entry(cls, entry: LeadEntry) -> LeadOutcome:
        """The report line of a journal outcome row."""
        return cls(
            lead_id=entry.lead_id,
            status=_UNFINISHED.get(entry.status, entry.status),
            deal_id=entry.deal_id,
            contact_id=entry.contact_id,
            company_id=entry.company_id,
            error=entry.error,
        )


@dataclass(frozen=True)
class JobReport:
    """A conversion job's result: status, counts, requests, and every lead's outcome.

    `status`: done (every lead final, none failed) | failed (every lead final, some failed) |
    interrupted (stopped before every lead was final; `error` says why; resumable); a report
    loaded while the job runs elsewhere, or before it starts, reads running | pending.
    `requests`: HTTP requests made by the run that produced this report (reads included); for a
    report loaded from the journal, by every run of the job.
    """

    job_id: int | None
    status: str
    converted: int
    failed: int
    skipped: int
    requests: int
    leads: tuple[LeadOutcome, ...]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The CLI's JSON: counts, requests, job id, status, error, and the leads."""
        return {
            "converted": self.converted,
            "failed": self.failed,
            "skipped": self.skipped,
            "requests": self.requests,
            "job_id": self.job_id,
            "status": self.status,
            "error": self.error,
            "leads": [lead.to_dict() for lead in self.leads],
        }

    def to_csv(self) -> str:
        """One line per lead: lead_id,status,deal_id,contact_id,company_id,error."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for lead in self.leads:
            writer.writerow(
                [
                    "" if value is None else value
                    for value in (getattr(lead, name) for name in CSV_COLUMNS)
                ]
            )
        return out.getvalue()


def build_report(
    job: JobRow,
    outcomes: Iterable[LeadEntry],
    *,
    requests: int | None = None,
    status: str | None = None,
    error: str | None = None,
) -> JobReport:
    """A report from a job row and its outcome rows; counts are taken from the outcomes."""
    leads = tuple(LeadOutcome.from_entry(entry) for entry in outcomes)
    counts = {"converted": 0, "failed": 0, "skipped": 0}
    for lead in leads:
        if lead.status in counts:
            counts[lead.status] += 1
    return JobReport(
        job_id=job.id,
        status=status or job.status,
        converted=counts["converted"],
        failed=counts["failed"],
        skipped=counts["skipped"],
        requests=job.requests if requests is None else requests,
        leads=leads,
        error=job.error if error is None else error,
    )


def load_report(journal: JobJournal, job_id: int) -> JobReport:
    """The stored report of job `job_id`; UsageError when the portal has no such job."""
    job = journal.job(job_id)
    if job is None:
        raise UsageError(f"no conversion job {job_id} for this portal")
    return build_report(job, journal.outcomes(job_id))
