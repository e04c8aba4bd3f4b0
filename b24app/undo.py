"""Undoing a conversion job, exactly once: the shell around `b24app.crm.undo_plan`.

    undo(portal, journal, job_id, force=False, dry_run=False) -> UndoReport

An undo is a job of its own in the journal (kind "undo"), so the journal lets no conversion and
no second undo of the portal run beside it (`Journal.start_job` / `claim_job`), and the callers
hold the portal's conversion lock around it as they do around a conversion (`b24app.locks`).

The loop is the conversion's: plan every lead from one read and commit the plans; then
`mark sent, commit -> send the batch (<= 50 commands, halt=0) -> record the answers, commit`.
Every undo step is idempotent (see `undo_plan`), so after a kill, a lost answer or a second
worker the steps not known done are simply sent again; nothing is reverted twice, because a
lead's plan is made once (before anything is sent for it) and a reverted lead is recorded as such
for its conversion job, whichever undo job reverted it. An undo of a job whose leads are all
reverted changes nothing and says so. An undo that was interrupted is continued by the next
`undo` of the same job.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from b24app import messages as msg
from b24app.crm import undo_plan
from b24app.crm.mode import MODE_KEY, Mode, mode_command
from b24app.crm.planner import PlanError
from b24app.crm.reader import read_mode_result
from b24app.crm.scheduler import LeadState
from b24app.crm.undo_plan import UndoProgress, plan_undo
from b24app.errors import B24Error, OutcomeUnknown, QueryLimitExceeded, UsageError
from b24app.rest.command import Command
from b24app.rest.listing import Listings
from b24app.rest.portal import Portal
from b24app.store.journal import DONE, FAILED, FINISHED, INTERRUPTED, JobCounts, Journal
from b24app.store.undo import FIELD_FAILED, KIND, REVERTED, UndoRow, UndoStore
from b24app.undo_fieldwork import FieldWork, UndoField
from b24app.undo_fieldwork import preview as preview_fields
from b24app.vocabulary import MAX_BATCH

log = logging.getLogger("b24app.crm")

MAX_COMMANDS = MAX_BATCH
# Steps per write batch: one slot is always kept for the mode check, which goes last and
# vouches for the batch, as a conversion's does (b24app/crm/dispatch.py, `_run`/`_send`).
WRITE_SLOTS = MAX_COMMANDS - 1
MAX_TRIES = 5  # transient errors of one step before its lead fails
MAX_LOST = 5  # batches in a row whose answer was lost before the job stops (interrupted)
_TRANSIENT = frozenset(
    {
        "QUERY_LIMIT_EXCEEDED",
        "OPERATION_TIME_LIMIT",
        "INTERNAL_SERVER_ERROR",
        "ERROR_UNEXPECTED_ANSWER",
    }
)

NOTHING = msg.UNDO_NOTHING
UNDONE = msg.UNDO_UNDONE
NOT_CONVERSION = msg.UNDO_NOT_CONVERSION
NOT_FINISHED = "job {job} is {status}; finish it first ('b24app jobs resume {job}'), then undo it"
NO_JOB = "no conversion job {job} for this portal"

ProgressCallback = Callable[[int, int], None]  # (leads finished, leads in all)


@dataclass(frozen=True)
class UndoLead:
    """One lead in an undo's report."""

    lead_id: int
    status: str  # reverted | kept | failed (a dry run: revert | keep | fail) | pending
    why: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    error: str | None = None
    deletes: Mapping[str, int] = field(default_factory=dict)
    stage: str = ""
    phases: Mapping[int, int] = field(default_factory=dict)  # phase -> steps (bench floors)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stable keys)."""
        return {
            "lead_id": self.lead_id,
            "status": self.status,
            "why": list(self.why),
            "notes": list(self.notes),
            "error": self.error,
            "deletes": dict(self.deletes),
            "stage": self.stage,
        }


@dataclass(frozen=True)
class UndoReport:
    """What an undo did (or, `dry_run`, would do), per lead."""

    undo_of: int
    job_id: int | None
    status: str
    leads: tuple[UndoLead, ...] = ()
    dry_run: bool = False
    force: bool = False
    message: str | None = None
    requests: int = 0
    error: str | None = None
    fields: tuple[UndoField, ...] = ()  # the custom fields the conversion created

    def count(self, *statuses: str) -> int:
        """How many leads are in these statuses."""
        return sum(1 for lead in self.leads if lead.status in statuses)

    @property
    def failed(self) -> int:
        """Leads that failed."""
        return self.count("failed", "fail")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stable keys)."""
        return {
            "undo_of": self.undo_of,
            "job_id": self.job_id,
            "status": self.status,
            "dry_run": self.dry_run,
            "force": self.force,
            "message": self.message,
            "error": self.error,
            "requests": self.requests,
            "counts": {
                "reverted": self.count("reverted", "revert"),
                "kept": self.count("kept", "keep"),
                "failed": self.failed,
            },
            "leads": [lead.to_dict() for lead in self.leads],
            "fields": [item.to_dict() for item in self.fields],
        }


def _lead(item: UndoProgress, *, dry_run: bool = False) -> UndoLead:
    plan = item.plan
    status = plan.verdict if dry_run else item.status
    why = plan.reasons if plan.verdict != undo_plan.REVERT else ()
    phases: dict[int, int] = {}
    for step in plan.steps:
        phases[step.phase] = phases.get(step.phase, 0) + 1
    return UndoLead(
        plan.lead_id, status, why, plan.notes, item.error, plan.deletes, plan.stage, phases
    )


class _ModeRider:
    """The portal, with `crm.settings.mode.get` riding in the first batch the read sends (a
    command, not a request); the mode it read, if any."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.mode: Mode | None = None
        self._asked = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.portal, name)

    def batch(self, commands: Sequence[Command], **kwargs: Any) -> Any:
        """Send; the first batch with room carries the mode check."""
        ride = not self._asked and len(commands) < MAX_COMMANDS
        result = self.portal.batch(
            [*commands, mode_command(MODE_KEY)] if ride else commands, **kwargs
        )
        if ride:
            self._asked = True
            self.mode = read_mode_result(result.results)
        return result


def _failed(method: str, error: str) -> str:
    return msg.UNDO_STEP_FAILED.format(method=method, error=error)


class _Stop(Exception):
    """A portal-wide failure: the undo job stops as interrupted with this reason."""


class _Undo:
    def __init__(self, portal: Portal, journal: Journal, job_id: int, *, force: bool) -> None:
        self.portal = portal
        self.journal = journal
        self.store = UndoStore(journal)
        self.source = job_id
        self.force = force
        self.first = portal.requests_made
        self.working: dict[int, UndoProgress] = {}
        self.final: dict[int, UndoProgress] = {}
        self.job_id = 0
        self.requests_before = 0
        self.fieldwork: FieldWork | None = None

    # -- what to undo ---------------------------------------------------------------------------

    def check(self) -> None:
        job = self.journal.job(self.source)
        if job is None:
            raise UsageError(NO_JOB.format(job=self.source))
        if job.kind == KIND:
            raise UsageError(NOT_CONVERSION.format(job=self.source))
        if job.status not in FINISHED:
            raise UsageError(NOT_FINISHED.format(job=self.source, status=job.status))

    def todo(self) -> tuple[list[int], dict[int, dict[str, Any]], dict[int, int]]:
        """(leads left to undo, conversion records, leads already reverted -> undo job)."""
        records = self.store.records(self.source)
        converted = {
            e.lead_id for e in self.journal.outcomes(self.source) if e.status == "converted"
        }
        reverted = self.store.reverted(self.source)
        leads = sorted((converted | set(records)) - set(reverted))
        return leads, records, reverted

    def plan(
        self, leads: Sequence[int], records: Mapping[int, dict[str, Any]]
    ) -> list[UndoProgress]:
        """Read the portal once for these leads and plan each one."""
        states = []
        for lead_id in leads:
            record = records.get(lead_id)
            if record is None:
                continue
            with contextlib.suppress(PlanError):  # unreadable: plan_undo fails the lead
                states.append(LeadState.from_dict(record))
        now = undo_plan.PortalNow()
        if states:
            rider = _ModeRider(self.portal)
            reading = Listings(rider, undo_plan.read_listings(states))
            rows = reading.read()
            if reading.errors:
                raise next(iter(reading.errors.values()))
            if rider.mode is Mode.SIMPLE:
                raise UsageError(msg.UNDO_SIMPLE)
            now = undo_plan.PortalNow.from_rows(rows)
        return [
            UndoProgress(plan_undo(lead_id, records.get(lead_id), now, force=self.force))
            for lead_id in leads
        ]

    # -- the run --------------------------------------------------------------------------------

    def run(self, on_progress: ProgressCallback | None) -> UndoReport:
        self.check()
        leads, records, reverted = self.todo()
        unfinished = [j for j in self.store.undo_jobs(self.source) if j.status not in FINISHED]
        if not leads and not unfinished:
            if reverted:
                last = max(reverted.values())
                message = UNDONE.format(job=self.source, undo=last)
            else:
                message = NOTHING.format(job=self.source)
            return UndoReport(self.source, None, "noop", message=message, force=self.force)
        if unfinished:
            job = self.journal.claim_job(unfinished[-1].id)
            stored = self.store.rows(job.id)
        else:
            job = self.journal.start_job(
                kind=KIND, policy={"undo": self.source, "force": self.force}, lead_ids=None
            )
            stored = {}
        self.job_id = job.id
        self.requests_before = job.requests
        replan: set[int] = set()
        for lead_id, row in stored.items():
            if row.state is None:
                replan.add(lead_id)
                continue
            item = UndoProgress.from_dict(row.state)
            if item.status in ("pending", "reverting"):
                self.working[lead_id] = replace(item, sent=frozenset())
            elif self.force and item.status == "kept":
                replan.add(lead_id)  # continued with --force: nothing was sent for it
            else:
                self.final[lead_id] = item
        fresh = [i for i in leads if i not in stored or i in replan]
        try:
            if fresh:
                planned = self.plan(fresh, records)
                self._save(planned)
                for item in planned:
                    if item.status in ("pending", "reverting"):
                        self.working[item.plan.lead_id] = item
            total = len(self.working) + len(self.final)
            self.fieldwork = FieldWork(self.journal, self.store, self.job_id, self.source)
            lost = 0
            while True:
                extra = self.fieldwork.commands(self._deleted(), WRITE_SLOTS)
                batch = undo_plan.next_batch(self.working.values(), size=WRITE_SLOTS - len(extra))
                if not batch and not extra:
                    break
                lost = self._send(batch, lost, extra)
                if on_progress is not None:
                    on_progress(len(self.final), total)
        except UsageError as exc:  # the CRM is in Simple mode: nothing was sent
            self._finish(INTERRUPTED, str(exc))
            raise
        except B24Error as exc:
            reason = msg.UNDO_READ_FAILED.format(error=exc)
            self._finish(INTERRUPTED, reason)
            return self._report(INTERRUPTED, reason)
        except _Stop as stop:
            self._finish(INTERRUPTED, str(stop))
            return self._report(INTERRUPTED, str(stop))
        except KeyboardInterrupt:
            self._finish(INTERRUPTED, msg.JOB_STOPPED_BY.format(cause="KeyboardInterrupt"))
            raise
        failed = any(i.status == "failed" for i in self.final.values()) or any(
            row.status == FIELD_FAILED for row in self.store.fields(self.job_id)
        )
        status = FAILED if failed else DONE
        self._finish(status, None)
        return self._report(status, None)

    def _deleted(self) -> bool:
        """Whether every lead's deletions (phases 1-2) are done: the created fields' turn."""
        return all(
            step.id in item.done
            for item in self.working.values()
            for step in item.plan.steps
            if step.phase <= undo_plan.DELETE
        )

    def _send(
        self, batch: list[tuple[int, Any, Any]], lost: int, extra: Sequence[Command] = ()
    ) -> int:
        involved: dict[int, set[str]] = {}
        for lead_id, step, _ in batch:
            involved.setdefault(lead_id, set()).add(step.id)
        marked = [
            replace(self.working[i], sent=self.working[i].sent | ids) for i, ids in involved.items()
        ]
        self._save(marked)  # committed before sending
        # the mode check last, in its kept slot: a switch to Simple mode is seen at every batch
        commands = [*(command for _, _, command in batch), *extra, mode_command(MODE_KEY)]
        try:
            result = self.portal.batch(commands, halt=False)
        except OutcomeUnknown:
            if extra and self.fieldwork is not None:
                self.fieldwork.lost()
            lost += 1
            if lost >= MAX_LOST:
                raise _Stop(msg.JOB_PORTAL_LOST.format(count=lost)) from None
            return lost
        except QueryLimitExceeded:
            log.warning("undo job %d: the portal is still busy; waiting", self.job_id)
            return lost
        except B24Error as exc:
            raise _Stop(msg.JOB_BATCH_REFUSED.format(error=exc)) from None
        by_lead = {i: self.working[i] for i in involved}
        for lead_id, step, command in batch:
            item = by_lead[lead_id]
            error = result.errors.get(command.key)
            if command.key in result.results and error is None:
                item = replace(item, done=item.done | {step.id})
            elif error is None or isinstance(error, OutcomeUnknown):
                pass  # unknown: sent again (idempotent)
            else:
                code = str(getattr(error, "code", "") or "")
                text = str(getattr(error, "description", "") or error)
                if step.already_done(code, text):
                    item = replace(item, done=item.done | {step.id})
                elif code in _TRANSIENT:
                    tries = dict(item.tries)
                    tries[step.id] = tries.get(step.id, 0) + 1
                    item = replace(item, tries=tries)
                    if tries[step.id] >= MAX_TRIES:
                        item = replace(item, error=_failed(step.method, text or code))
                else:
                    item = replace(item, error=_failed(step.method, text or code))
            by_lead[lead_id] = item
        self._save(list(by_lead.values()))
        if extra and self.fieldwork is not None:
            self.fieldwork.take(result)
        if read_mode_result(result.results) is Mode.SIMPLE:
            raise _Stop(msg.UNDO_SWITCHED)
        return 0

    def _save(self, items: Sequence[UndoProgress]) -> None:
        rows = []
        for item in items:
            lead_id = item.plan.lead_id
            status = item.status
            if status in ("pending", "reverting"):
                self.working[lead_id] = item
            else:
                self.working.pop(lead_id, None)
                self.final[lead_id] = item
            reason = item.error or ("; ".join(item.plan.reasons) or None)
            rows.append(UndoRow(lead_id, status, item.to_dict(), reason))
        self.store.save(self.job_id, self.source, rows, counts=self._counts())

    def _counts(self) -> JobCounts:
        statuses = [i.status for i in self.final.values()]
        return JobCounts(
            requests=self.requests_before + self.portal.requests_made - self.first,
            converted=statuses.count(REVERTED),
            failed=statuses.count("failed"),
            skipped=statuses.count("kept"),
            total=len(self.final) + len(self.working),
        )

    def _finish(self, status: str, error: str | None) -> None:
        self.journal.finish_job(self.job_id, status=status, error=error, counts=self._counts())

    def _report(self, status: str, error: str | None) -> UndoReport:
        rows = self.store.rows(self.job_id)
        leads = []
        for lead_id, row in rows.items():
            if row.state is not None:
                leads.append(_lead(UndoProgress.from_dict(row.state)))
            else:
                leads.append(UndoLead(lead_id, row.status, error=row.reason))
        return UndoReport(
            self.source,
            self.job_id,
            status,
            tuple(leads),
            force=self.force,
            requests=self.portal.requests_made - self.first,
            error=error,
            fields=tuple(UndoField.of_row(row) for row in self.store.fields(self.job_id)),
        )


def undo(
    portal: Portal,
    journal: Journal,
    job_id: int,
    *,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
) -> UndoReport:
    """Revert what conversion job `job_id` did (see the module doc); the caller holds the
    portal's conversion lock. UsageError for a job that cannot be undone; JobBusy when another
    job of the portal runs."""
    return _Undo(portal, journal, job_id, force=force).run(on_progress)


def stored_report(journal: Journal, job_id: int) -> UndoReport:
    """The report of undo job `job_id` as the journal holds it (no portal call)."""
    job = journal.job(job_id)
    if job is None or job.kind != KIND:
        raise UsageError(f"no undo job {job_id} for this portal")
    leads = []
    for lead_id, row in UndoStore(journal).rows(job_id).items():
        if row.state is not None:
            leads.append(_lead(UndoProgress.from_dict(row.state)))
        else:
            leads.append(UndoLead(lead_id, row.status, error=row.reason))
    return UndoReport(
        int(job.policy.get("undo") or 0),
        job.id,
        job.status,
        tuple(leads),
        force=bool(job.policy.get("force")),
        requests=job.requests,
        error=job.error,
        fields=tuple(UndoField.of_row(row) for row in UndoStore(journal).fields(job_id)),
    )


def preview(portal: Portal, journal: Journal, job_id: int, *, force: bool = False) -> UndoReport:
    """What `undo` would do now, per lead; reads the portal, writes nothing."""
    run = _Undo(portal, journal, job_id, force=force)
    run.check()
    leads, records, reverted = run.todo()
    if not leads:
        message = (
            UNDONE.format(job=job_id, undo=max(reverted.values()))
            if reverted
            else NOTHING.format(job=job_id)
        )
        return UndoReport(job_id, None, "noop", dry_run=True, force=force, message=message)
    planned = run.plan(leads, records)
    deleting: dict[str, list[int]] = {}
    for item in planned:
        if item.plan.verdict == undo_plan.REVERT:
            for entity, entity_id in item.plan.deletes.items():
                deleting.setdefault(entity, []).append(entity_id)
    fields = preview_fields(portal, journal, job_id, deleting)
    return UndoReport(
        job_id,
        None,
        "preview",
        tuple(_lead(item, dry_run=True) for item in planned),
        dry_run=True,
        force=force,
        requests=portal.requests_made - run.first,
        fields=tuple(fields),
    )
