"""The conversion service: every selected active lead -> deal (+ contact/company), exactly once.

Bitrix24 REST has no convert method (https://apidocs.bitrix24.com/api-reference/crm/leads/index.html),
so b24app plans each lead's calls (`planner`), packs many leads' ready calls into full batches
(`scheduler`), and runs the scheduler's loop here against the portal and the journal:

    mark the batch's steps "sent" and commit  ->  send the batch  ->  record the answers, commit

A step whose answer was lost stays "sent" and is verified (looked up by ORIGINATOR_ID/ORIGIN_ID,
or the deal's comments) before anything is sent again, so kill -9, timeouts, dropped connections
and reruns never create a second deal, contact or company.

Which leads a run takes, and how:

* Leads the journal has *underway* (status creating) are finished first, from their stored state,
  whether or not the portal still lists them as active (a lead whose closing call was sent before
  a crash is at the success stage already; its state still has to be settled).
* A lead the journal says is converted is reported skipped ("already converted by job N") and
  costs no call; with explicit ids it is not even read.
* A lead that failed in an earlier job is retried from its stored state if anything was sent for
  it, else planned afresh.
* Every other lead is planned afresh, and for these the run *looks up* what b24app may already have
  created from them (deals/contacts/companies with our ORIGIN_ID) instead of trusting the lead's
  stage alone: the journal may be gone (a new database, another machine) while the portal keeps
  the entities. The lookup rides in the chunk's read request (three one-page listings per 500
  leads, usually empty), so it costs sub-calls, not requests. Found entities are reused, never
  re-created.

The CRM mode switch. When an admin switches Classic -> Simple, Bitrix24 converts every lead still
in work itself (https://helpdesk.bitrix24.com/open/17627868/); a lead b24app was converting then
would end with two deals. So every conversion batch carries one `crm.settings.mode.get` as its
last command (49 steps + the check: ~2% more requests). A batch whose check reads the mode the run
started in vouches for every call in it and before it; only then does a lead's closing call count
(otherwise that step stays unsure and is sent again, an idempotent update). A check reading Simple
after Classic means the switch happened during this batch or just before: the run stops taking
new leads, `reconcile` settles every lead it holds (those Bitrix24 converted are reported
converted with Bitrix24's deal and clients, b24app's own deal/contact/company removed and the
activities left as Bitrix24's converter leaves them), finishes the rest, and ends with a note
saying what happened. Leads a run takes up from an earlier run's state (after kill -9, a lost
answer, a failure) are always checked the same way before anything more is sent for them, so a
switch while no process was running is caught too. See `b24app.crm.reconcile`.

A lead's failure is recorded and the others go on. A portal-wide failure - credentials rejected,
scope missing, the portal deleted or unpaid, the portal unreachable after the client's retries,
answers lost batch after batch, or one error for every command of a many-lead batch - stops the
job as `interrupted` with the reason; `resume(job_id)` (or a new `convert`) continues it. Only one
live job runs per portal (the journal refuses a second).

Job status at the end: done (no lead failed), failed (some leads failed; a new `convert` retries
them), interrupted (resumable), or pending when `max_leads` paused it after that many leads (a
worker's fair share; `resume` continues it).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from b24app import messages as msg
from b24app.crm import fieldsync
from b24app.crm.customfields import FieldMapping, field_mapping
from b24app.crm.dispatch import Dispatch, Stop
from b24app.crm.facts import FactsError, PortalFacts
from b24app.crm.journal import (
    DONE,
    FAILED,
    FINISHED,
    INTERRUPTED,
    LEAD_FINAL,
    PENDING,
    JobJournal,
    JobRow,
)
from b24app.crm.mode import Mode, read_mode
from b24app.crm.planner import LeadPlan, LeadPreview
from b24app.crm.planner import preview as preview_plan
from b24app.crm.planning import plan_chunk
from b24app.crm.policy import Policy, PolicyError
from b24app.crm.reader import CHUNK, Reader, forget_facts
from b24app.crm.report import JobReport, LeadOutcome, build_report, load_report
from b24app.crm.scheduler import LeadState
from b24app.crm.tally import Progress, ProgressCallback
from b24app.errors import B24Error, UsageError
from b24app.rest.portal import Portal

__all__ = ["JobReport", "LeadOutcome", "Progress", "convert", "preview", "read_mode", "resume"]

log = logging.getLogger("b24app.crm")

KIND = "convert"


def _explicit(policy: Policy, lead_ids: Sequence[int] | None) -> tuple[int, ...] | None:
    ids = tuple(lead_ids) if lead_ids is not None else policy.leads.ids
    if lead_ids is not None and not ids:
        raise UsageError("no lead ids given")
    bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or i <= 0]
    if bad:
        raise UsageError(f"lead ids must be positive whole numbers (got {bad[0]!r})")
    return tuple(dict.fromkeys(ids)) or None


def _facts(reader: Reader, policy: Policy) -> PortalFacts:
    facts = reader.facts((policy.pipeline,))
    policy.check(facts)
    facts.success_stage  # noqa: B018 - raises FactsError now rather than mid-run
    return facts


def _facts_mode(
    reader: Reader, policy: Policy, leads: Sequence[int] = ()
) -> tuple[PortalFacts, Mode | None]:
    """The portal's facts and mode for a run: the cached ones when fresh (`Reader`'s doc: every
    batch checks the mode anyway); a policy that does not fit them is checked against the
    portal's own before it is refused (a stage or pipeline changed meanwhile). `leads`: the
    run's explicit leads still to settle, read in the facts request when one is sent."""
    facts, mode = reader.facts_and_mode((policy.pipeline,), reuse=True, leads=leads, policy=policy)
    try:
        policy.check(facts)
        facts.success_stage  # noqa: B018 - raises FactsError now rather than mid-run
    except (PolicyError, FactsError):
        if not reader.reused:
            raise
        forget_facts(reader.portal)
        facts, mode = reader.facts_and_mode((policy.pipeline,), leads=leads, policy=policy)
        policy.check(facts)
        facts.success_stage  # noqa: B018
    return facts, mode


def preview(
    portal: Portal,
    policy: Policy,
    *,
    lead_ids: Sequence[int] | None = None,
    variants: Mapping[str, str] | None = None,
) -> list[LeadPreview]:
    """What converting would do to each selected lead; changes nothing on the portal."""
    return preview_with_fields(portal, policy, lead_ids=lead_ids, variants=variants)[0]


def preview_with_fields(
    portal: Portal,
    policy: Policy,
    *,
    lead_ids: Sequence[int] | None = None,
    variants: Mapping[str, str] | None = None,
) -> tuple[list[LeadPreview], FieldMapping]:
    """`preview`, and where each custom lead field goes (read in the same facts request)."""
    explicit = _explicit(policy, lead_ids)
    reader = Reader(portal, variants=variants)
    facts = _facts(reader, policy)
    fields = field_mapping(reader.custom_fields, policy)
    stream = reader.leads_by_id(explicit) if explicit else reader.active_leads(facts, policy.leads)
    previews: list[LeadPreview] = []
    seen: set[int] = set()
    for chunk in stream.chunks():
        for item in plan_chunk(reader, chunk, policy=policy, facts=facts, files=False):
            seen.add(item.lead_id)
            if isinstance(item, LeadPlan):
                previews.append(preview_plan(item))
            else:
                previews.append(
                    preview_plan(
                        LeadPlan(
                            lead_id=item.lead_id, skip=item.error, success_stage=facts.success_stage
                        )
                    )
                )
    for lead_id in explicit or ():
        if lead_id not in seen:
            previews.append(
                preview_plan(
                    LeadPlan(
                        lead_id=lead_id, skip=msg.SKIP_NOT_FOUND, success_stage=facts.success_stage
                    )
                )
            )
    return sorted(previews, key=lambda p: p.lead_id), fields


def convert(
    portal: Portal,
    journal: JobJournal,
    policy: Policy,
    *,
    lead_ids: Sequence[int] | None = None,
    on_progress: ProgressCallback | None = None,
    kind: str = KIND,
    max_leads: int | None = None,
    variants: Mapping[str, str] | None = None,
) -> JobReport:
    """Convert every active lead selected by the policy (or only `lead_ids`), exactly once.

    `max_leads` pauses the job (status pending) once this run has taken up that many leads.
    `variants`: what `b24app doctor` recorded for this portal (`Reader`); None: find out.

    Raises PolicyError (the policy does not fit the portal), JobBusy (another job of this portal
    is running) or a B24Error when the portal cannot be read at all; once the job exists, every
    failure ends up in the returned report.
    """
    explicit = _explicit(policy, lead_ids)
    first_request = portal.requests_made
    reader = _reader(portal, max_leads, variants)
    facts, mode = _facts_mode(reader, policy, explicit or ())
    job = journal.start_job(kind=kind, policy=policy.to_dict(), lead_ids=explicit)
    _create_fields(portal, journal, reader, policy, job.id)
    log.info(
        "conversion job %d started (%s)",
        job.id,
        f"{len(explicit)} lead(s)" if explicit else "every active lead",
    )
    return _Run(
        portal,
        journal,
        job,
        reader=reader,
        policy=policy,
        facts=facts,
        explicit=explicit,
        on_progress=on_progress,
        first_request=first_request,
        max_leads=max_leads,
        mode=mode,
    ).run()


def _create_fields(
    portal: Portal, journal: JobJournal, reader: Reader, policy: Policy, job_id: int
) -> None:
    """Policy "create missing custom fields": create them before any lead is planned."""
    if not policy.create_fields:
        return
    ledger = journal.created_fields()
    found, notes = fieldsync.ensure(portal, ledger, reader.custom_fields, policy, job_id=job_id)
    if found is not reader.custom_fields:
        forget_facts(portal)
    reader.custom_fields, reader.field_notes = found, notes


def _to_settle(journal: JobJournal, job: JobRow) -> list[int]:
    """A job's explicit leads it has not settled yet (the ones its run will read by id)."""
    if not job.lead_ids:
        return []
    statuses = journal.outcome_statuses(job.id)
    return [i for i in job.lead_ids if statuses.get(i) not in LEAD_FINAL]


def _reader(
    portal: Portal, max_leads: int | None, variants: Mapping[str, str] | None = None
) -> Reader:
    size = min(CHUNK, max_leads) if max_leads else CHUNK
    return Reader(portal, chunk_size=size, variants=variants)


def resume(
    portal: Portal,
    journal: JobJournal,
    job_id: int,
    *,
    on_progress: ProgressCallback | None = None,
    max_leads: int | None = None,
    variants: Mapping[str, str] | None = None,
    go_on: Callable[[], bool] | None = None,
) -> JobReport:
    """Continue an interrupted (or pending) job with its own policy and leads; `max_leads` and
    `variants` as for `convert`. `go_on`: asked when the slice of `max_leads` is taken; True
    (nobody waits for the portal or the worker) runs another slice in this run, so its pipeline
    does not drain at every slice boundary.

    A finished job is not run again: its stored report comes back (requests 0).
    """
    job = journal.job(job_id)
    if job is None:
        raise UsageError(f"no conversion job {job_id} for this portal")
    if job.status in FINISHED:
        return replace(load_report(journal, job_id), requests=0)
    first_request = portal.requests_made
    policy = Policy.from_dict(job.policy)
    reader = _reader(portal, max_leads, variants)
    facts, mode = _facts_mode(reader, policy, _to_settle(journal, job))
    job = journal.claim_job(job_id)
    _create_fields(portal, journal, reader, policy, job.id)
    log.info("conversion job %d resumed", job.id)
    return _Run(
        portal,
        journal,
        job,
        reader=reader,
        policy=policy,
        facts=facts,
        explicit=job.lead_ids or None,
        on_progress=on_progress,
        first_request=first_request,
        max_leads=max_leads,
        mode=mode,
        go_on=go_on,
    ).run()


class _Run(Dispatch):
    """One run of a job: reads leads chunk by chunk, executes the scheduler's loop, journals."""

    def __init__(
        self,
        portal: Portal,
        journal: JobJournal,
        job: JobRow,
        *,
        reader: Reader,
        policy: Policy,
        facts: PortalFacts,
        explicit: tuple[int, ...] | None,
        on_progress: ProgressCallback | None,
        first_request: int,
        max_leads: int | None = None,
        mode: Mode | None = None,
        go_on: Callable[[], bool] | None = None,
    ) -> None:
        self.token = f"b24app-{secrets.token_hex(6)}"  # marks the clients this run creates
        self.portal = portal
        self.journal = journal
        self.job = job
        self.reader = reader
        self.policy = policy
        self.facts = facts
        self.explicit = explicit
        self.on_progress = on_progress
        self.first_request = first_request
        self.working: dict[int, LeadState] = {}
        self.final: dict[int, str] = {
            lead_id: status
            for lead_id, status in journal.outcome_statuses(job.id).items()
            if status in LEAD_FINAL
        }
        self.tally: dict[str, int] = dict.fromkeys(LEAD_FINAL, 0)
        for status in self.final.values():
            self.tally[status] += 1
        self.seen: set[int] = set(self.final)
        self.listed = 0
        self.stream_total: int | None = None
        self.lost = 0
        self.max_leads = max_leads
        self.slice = max_leads or 0  # one share: `max_leads` grows by it while `go_on` says so
        self.go_on = go_on
        self.taken = 0  # leads this run took up (the slice `max_leads` bounds)
        self.paused = False
        self.mode = mode  # the CRM mode as last seen (None: not known yet)
        self.watch = True  # whether batches carry the mode check
        self.mode_misses = 0
        self.switched = False  # Bitrix24 took over: the CRM went Simple under this job
        self.by_bitrix = 0  # leads of this job Bitrix24 converted itself
        self.absorbing = False  # leads kept arriving (best_starts then takes all that fit)

    def run(self) -> JobReport:
        """Run the job to its end (or interruption) and return its report."""
        try:
            self._admit_unfinished()
            if self.mode is Mode.SIMPLE:
                self._recheck_failed()
            if self.explicit:
                self._execute(self._by_id(self.explicit, absorb=True), stop_on_switch=True)
            else:
                self._execute(self._active(), stop_on_switch=True)
            if self.switched:
                self.paused = False  # the job ends: nothing is left for another slice
            if not self.paused:
                self._execute(self._by_id(self._left_over()))
            if self.switched:
                self._left_to_bitrix()
        except Stop as stop:
            message = str(stop)
            log.warning("conversion job %d interrupted: %s", self.job.id, message)
            return self._finish(INTERRUPTED, message)
        except B24Error as exc:
            return self._finish(INTERRUPTED, msg.JOB_PORTAL_FAILED.format(error=exc))
        except BaseException as exc:
            # Best effort: if even the journal fails, the job is taken over once we are gone.
            with contextlib.suppress(Exception):
                self._finish(INTERRUPTED, msg.JOB_STOPPED_BY.format(cause=type(exc).__name__))
            raise
        status = PENDING if self.paused else FAILED if self._counts().failed else DONE
        log.info("conversion job %d %s: %s", self.job.id, status, self._counts())
        note = "; ".join(filter(None, (self._switch_note(), self._fields_note()))) or None
        return self._finish(status, note)

    def _fields_note(self) -> str | None:
        """The custom lead fields this job could not copy, per target (None when none)."""
        notes = [
            *self.reader.field_notes,
            field_mapping(self.reader.custom_fields, self.policy).note(),
        ]
        return "; ".join(n for n in notes if n) or None

    def _finish(self, status: str, error: str | None) -> JobReport:
        counts = self._counts()
        self.journal.finish_job(self.job.id, status=status, error=error, counts=counts)
        job = self.journal.job(self.job.id) or self.job
        return build_report(
            job,
            self.journal.outcomes(self.job.id),
            requests=self._requests(),
            status=status,
            error=error,
        )
