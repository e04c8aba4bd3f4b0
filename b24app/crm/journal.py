"""The conversion journal as the domain sees it: statuses, the rows it hands out, and the
interface a conversion uses to record its work.

The domain never touches the journal's tables: `b24app.store.journal.Journal` implements
`JobJournal` on the app database, and a test may implement it in memory. Statuses are str-valued
enums, so the stored values and the JSON reports read exactly as the strings they replace.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from b24app.errors import B24AppError

if TYPE_CHECKING:
    from b24app.crm.fieldsync import FieldLedger


class JobStatus(StrEnum):
    """Where a conversion job stands: pending -> running -> done | failed | interrupted."""

    PENDING = "pending"  # recorded, not started (or paused: it resumes later)
    RUNNING = "running"  # a live process runs it
    DONE = "done"  # every lead converted or skipped
    FAILED = "failed"  # finished with failed leads
    INTERRUPTED = "interrupted"  # stopped, or its process died: it may be taken over


class LeadStatus(StrEnum):
    """Where one lead's conversion stands (the journal's status column)."""

    SKIPPED = "skipped"  # not active: nothing to do
    PENDING = "pending"  # nothing sent yet
    CREATING = "creating"  # underway
    CONVERTED = "converted"  # the lead is at the success stage; every step done
    FAILED = "failed"  # a step failed for good; the lead stays open


PENDING = JobStatus.PENDING
RUNNING = JobStatus.RUNNING
DONE = JobStatus.DONE
FAILED = JobStatus.FAILED
INTERRUPTED = JobStatus.INTERRUPTED
JOB_STATUSES = tuple(JobStatus)
FINISHED = frozenset({JobStatus.DONE, JobStatus.FAILED})
LEAD_FINAL = frozenset({LeadStatus.CONVERTED, LeadStatus.FAILED, LeadStatus.SKIPPED})
# Job kinds holding automatic work: the leads events and sweeps bring in (`b24app.turns`).
AUTO_KINDS = ("event", "sweep")


class JobBusy(B24AppError):
    """Another job of the same portal is running in a live process; wait for it or stop it."""


class JobWaiting(JobBusy):
    """A job may not be recorded while another of the portal's jobs is pending or running."""

    def __init__(self, message: str, *, job: int) -> None:
        super().__init__(message)
        self.job = job


@dataclass(frozen=True)
class JobRow:
    """One conversion job as stored."""

    id: int
    portal: str
    kind: str
    policy: Mapping[str, Any]
    lead_ids: tuple[int, ...] | None
    status: str
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None
    requests: int = 0
    total: int | None = None
    converted: int = 0
    failed: int = 0
    skipped: int = 0
    owner: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO strings)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("created_at", "started_at", "finished_at", "heartbeat_at"):
            data[name] = data[name].isoformat() if data[name] else None
        data["policy"] = dict(self.policy)
        data["lead_ids"] = list(self.lead_ids) if self.lead_ids is not None else None
        return data


@dataclass(frozen=True)
class LeadEntry:
    """One lead as a job writes it: status, the scheduler state (None once final), ids, error."""

    lead_id: int
    status: str
    state: Mapping[str, Any] | str | None = None  # str: already JSON text (`LeadState.to_json`)
    deal_id: int | None = None
    contact_id: int | None = None
    company_id: int | None = None
    error: str | None = None
    done: Mapping[str, Any] | str | None = None  # converted: the final state, kept for an undo


@dataclass(frozen=True)
class LeadRecord:
    """One lead's conversion as the journal last saw it."""

    lead_id: int
    status: str
    state: Mapping[str, Any] | None
    deal_id: int | None
    contact_id: int | None
    company_id: int | None
    error: str | None
    attempts: int
    job_id: int | None
    updated_at: dt.datetime


@dataclass(frozen=True)
class JobCounts:
    """A job's running totals, written with each step."""

    requests: int = 0
    converted: int = 0
    failed: int = 0
    skipped: int = 0
    total: int | None = None


class JobJournal(Protocol):
    """What a conversion needs from the journal of one portal (the store implements it)."""

    def job(self, job_id: int) -> JobRow | None:
        """The job with this id, if it belongs to this portal."""
        ...

    def created_fields(self) -> FieldLedger:
        """The custom fields b24app created on this portal (policy "create missing fields")."""
        ...

    def start_job(
        self, *, kind: str, policy: Mapping[str, Any], lead_ids: Sequence[int] | None = None
    ) -> JobRow:
        """Record a job and start it in this process; JobBusy if another job is live."""
        ...

    def claim_job(self, job_id: int) -> JobRow:
        """Make a pending or interrupted job run in this process."""
        ...

    def finish_job(
        self, job_id: int, *, status: str, error: str | None = None, counts: JobCounts | None = None
    ) -> None:
        """Close a job: done | failed | interrupted, with its final counts and error."""
        ...

    def absorb(self, job_id: int) -> tuple[int, ...]:
        """Merge the portal's gathering automatic jobs into automatic job `job_id`, which this
        process runs: their leads join its list, they go. The leads it did not hold yet."""
        ...

    def states(self, lead_ids: Sequence[int]) -> dict[int, LeadRecord]:
        """The stored states of these leads (those the journal knows), by lead id."""
        ...

    def unfinished(self, lead_ids: Sequence[int] | None = None) -> list[LeadRecord]:
        """Leads whose conversion is underway, optionally among `lead_ids`."""
        ...

    def outcomes(self, job_id: int) -> Iterable[LeadEntry]:
        """What job `job_id` reported for each of its leads, by lead id."""
        ...

    def outcome_statuses(self, job_id: int) -> dict[int, str]:
        """Lead id -> the status job `job_id` last recorded for it."""
        ...

    def save(
        self,
        job_id: int,
        leads: Sequence[LeadEntry],
        *,
        counts: JobCounts | None = None,
        taken: bool = False,
        outcomes_of: Collection[int] | None = None,
    ) -> None:
        """One transaction: the leads' states and job outcomes, the job's counts and heartbeat.
        `outcomes_of`: the leads whose job outcome changed (None: every one of `leads`)."""
        ...
