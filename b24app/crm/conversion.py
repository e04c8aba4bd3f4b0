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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from b24app import messages as msg
from b24app.crm import fieldsync, scheduler
from b24app.crm.customfields import FieldMapping, field_mapping
from b24app.crm.facts import PortalFacts
from b24app.crm.mapping import link_id
from b24app.crm.mode import MODE_METHOD, Mode, mode_command, parse_mode
from b24app.crm.planner import (
    COMPANY,
    CONTACT,
    DEAL,
    LeadPlan,
    LeadPreview,
    PlanError,
    Surroundings,
    plan_lead,
)
from b24app.crm.planner import preview as preview_plan
from b24app.crm.policy import Policy
from b24app.crm.reader import CHUNK, MODE_KEY, Reader, forget_custom_fields, read_mode_result
from b24app.crm.reconcile import reconcile
from b24app.crm.report import JobReport, LeadOutcome, build_report, load_report
from b24app.crm.scheduler import MAX_COMMANDS, BatchOutcome, LeadState, Status
from b24app.errors import (
    AccessDenied,
    AuthError,
    B24Error,
    InsufficientScope,
    InvalidRequest,
    LimitExceeded,
    MethodNotFound,
    OutcomeUnknown,
    Overloaded,
    PaymentRequired,
    PortalDeleted,
    QueryLimitExceeded,
    TransportError,
    UsageError,
)
from b24app.rest.portal import Portal
from b24app.store.created_fields import CreatedFields
from b24app.store.journal import (
    DONE,
    FAILED,
    FINISHED,
    INTERRUPTED,
    LEAD_FINAL,
    PENDING,
    JobCounts,
    JobRow,
    Journal,
    LeadEntry,
)

__all__ = ["JobReport", "LeadOutcome", "Progress", "convert", "preview", "read_mode", "resume"]

log = logging.getLogger("b24app.crm")

KIND = "convert"
# Leads waiting to start below which the next chunk is read, so batches stay full.
REFILL = 60
# Batches in a row whose answers were lost before the portal counts as unreachable.
MAX_LOST = 8
# Per-command errors meaning no call of this run can succeed.
_PORTAL_WIDE = (AuthError, InsufficientScope, PaymentRequired, PortalDeleted, Overloaded)
# Errors for a whole request that Bitrix24 (or the client, for a connection never made) raises
# before anything runs; other failures leave the batch's steps "sent", to be verified.
_NOT_RUN = (
    LimitExceeded,
    AuthError,
    AccessDenied,
    PaymentRequired,
    PortalDeleted,
    TransportError,
    InvalidRequest,
    MethodNotFound,
)
# A batch touching this many leads whose every command failed with the same code is a portal
# problem (a required field, a permission), not a per-lead one.
_SAME_ERROR_LEADS = 5
_ENTITY_COLUMNS = {DEAL: "deal_id", CONTACT: "contact_id", COMPANY: "company_id"}
# Mode checks in a row that got no answer before the run stops checking (and trusting less).
MAX_MODE_MISSES = 5
# Errors of the mode check meaning it can never work on this portal: the run stops checking.
_MODE_UNAVAILABLE = (AccessDenied, MethodNotFound, InsufficientScope)
LEFT_TO_BITRIX = (
    "left to Bitrix24: the CRM was switched to Simple mode during the job, and Bitrix24 "
    "converts the leads in work itself"
)


@dataclass(frozen=True)
class Progress:
    """Where a running job stands, passed to `on_progress` after each batch.

    `total` is an estimate until every lead has been read (the portal's count of active leads
    plus the leads the journal had underway).
    """

    total: int
    converted: int
    failed: int
    skipped: int
    requests: int


ProgressCallback = Callable[[Progress], None]


class _Stop(Exception):
    """A portal-wide failure: the job stops as interrupted with this message."""


def read_mode(portal: Portal) -> Mode:
    """The portal's CRM mode (`crm.settings.mode.get`).

    https://apidocs.bitrix24.com/api-reference/crm/crm-settings-mode-get.html
    """
    return parse_mode(portal.call(MODE_METHOD).result)


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


def _facts_mode(reader: Reader, policy: Policy) -> tuple[PortalFacts, Mode | None]:
    facts, mode = reader.facts_and_mode((policy.pipeline,))
    policy.check(facts)
    facts.success_stage  # noqa: B018 - raises FactsError now rather than mid-run
    return facts, mode


def preview(
    portal: Portal, policy: Policy, *, lead_ids: Sequence[int] | None = None
) -> list[LeadPreview]:
    """What converting would do to each selected lead; changes nothing on the portal."""
    return preview_with_fields(portal, policy, lead_ids=lead_ids)[0]


def preview_with_fields(
    portal: Portal, policy: Policy, *, lead_ids: Sequence[int] | None = None
) -> tuple[list[LeadPreview], FieldMapping]:
    """`preview`, and where each custom lead field goes (read in the same facts request)."""
    explicit = _explicit(policy, lead_ids)
    reader = Reader(portal)
    facts = _facts(reader, policy)
    fields = field_mapping(reader.custom_fields, policy)
    stream = reader.leads_by_id(explicit) if explicit else reader.active_leads(facts, policy.leads)
    previews: list[LeadPreview] = []
    seen: set[int] = set()
    for chunk in stream.chunks():
        for item in _plan_chunk(reader, chunk, policy=policy, facts=facts, files=False):
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
    journal: Journal,
    policy: Policy,
    *,
    lead_ids: Sequence[int] | None = None,
    on_progress: ProgressCallback | None = None,
    kind: str = KIND,
    max_leads: int | None = None,
) -> JobReport:
    """Convert every active lead selected by the policy (or only `lead_ids`), exactly once.

    `max_leads` pauses the job (status pending) once this run has taken up that many leads.

    Raises PolicyError (the policy does not fit the portal), JobBusy (another job of this portal
    is running) or a B24Error when the portal cannot be read at all; once the job exists, every
    failure ends up in the returned report.
    """
    explicit = _explicit(policy, lead_ids)
    first_request = portal.requests_made
    reader = _reader(portal, max_leads)
    facts, mode = _facts_mode(reader, policy)
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
    portal: Portal, journal: Journal, reader: Reader, policy: Policy, job_id: int
) -> None:
    """Policy "create missing custom fields": create them before any lead is planned."""
    if not policy.create_fields:
        return
    store = CreatedFields(journal.engine, journal.portal)
    found, notes = fieldsync.ensure(portal, store, reader.custom_fields, policy, job_id=job_id)
    if found is not reader.custom_fields:
        forget_custom_fields(portal)
    reader.custom_fields, reader.field_notes = found, notes


def _reader(portal: Portal, max_leads: int | None) -> Reader:
    return Reader(portal, chunk_size=min(CHUNK, max_leads) if max_leads else CHUNK)


def resume(
    portal: Portal,
    journal: Journal,
    job_id: int,
    *,
    on_progress: ProgressCallback | None = None,
    max_leads: int | None = None,
) -> JobReport:
    """Continue an interrupted (or pending) job with its own policy and leads; `max_leads` as
    for `convert`.

    A finished job is not run again: its stored report comes back (requests 0).
    """
    job = journal.job(job_id)
    if job is None:
        raise UsageError(f"no conversion job {job_id} for this portal")
    if job.status in FINISHED:
        return replace(load_report(journal, job_id), requests=0)
    first_request = portal.requests_made
    policy = Policy.from_dict(job.policy)
    reader = _reader(portal, max_leads)
    facts, mode = _facts_mode(reader, policy)
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
    ).run()


def _plan_chunk(
    reader: Reader,
    leads: Sequence[Mapping[str, Any]],
    *,
    policy: Policy,
    facts: PortalFacts,
    files: bool = True,
) -> list[LeadPlan | LeadEntry]:
    """Fresh plans for these leads (reads their extras); LeadEntry(failed) for unplannable ones.
    `files`: download the custom-field files the plans carry (not for a preview).

    Leads the policy's selection does not pick (its stages, sources, dates: the ids were applied
    when reading), and inactive ones, get a skipped plan and no reads.
    """
    selection = replace(policy.leads, ids=())
    out: list[LeadPlan | LeadEntry] = []
    success = facts.success_stage
    wanted = []
    for lead in leads:
        lead_id = link_id(lead.get("ID"))
        if lead_id is None:
            continue
        if not selection.selects(lead):
            out.append(
                LeadPlan(
                    lead_id=lead_id,
                    skip=msg.SKIP_NOT_SELECTED,
                    success_stage=success,
                )
            )
        elif not facts.is_active(lead):
            out.append(plan_lead(lead, policy=policy, facts=facts))
        else:
            wanted.append((lead_id, lead))
    if not wanted:
        return out
    ids = [lead_id for lead_id, _ in wanted]
    extras = reader.extras([lead for _, lead in wanted], policy, origins=ids)
    for lead_id, lead in wanted:
        match = extras.matches.get(lead_id)
        clients = {
            name: client
            for name in (COMPANY, CONTACT)
            if (
                client := link_id(lead.get(f"{name.upper()}_ID"))
                or (getattr(match, f"{name}_id") if match else None)
            )
        }
        around = Surroundings(
            activities=extras.activities.get(lead_id, ()),
            comments=extras.comments.get(lead_id, ()),
            product_rows=extras.product_rows.get(lead_id, ()),
            match=match,
            known=extras.created.get(lead_id) or {},
            contacts=extras.contacts.get(lead_id, ()),
            requisites={
                name: found
                for name, client in clients.items()
                if (found := extras.requisites.get((name, client)))
            },
            clients={
                name: extras.clients[(name, client)]
                for name, client in clients.items()
                if (name, client) in extras.clients
            },
            custom=reader.custom_fields,
        )
        try:
            plan = plan_lead(lead, policy=policy, facts=facts, around=around)
            out.append(reader.fill_files(plan) if files else plan)
        except (PlanError, ValueError) as exc:
            out.append(
                LeadEntry(
                    lead_id=lead_id, status="failed", error=msg.FAIL_UNPLANNABLE.format(error=exc)
                )
            )
    return out


def _entry(state: LeadState) -> LeadEntry:
    """A lead state as the journal stores it (no stored plan once converted)."""
    status = state.status
    ids = state.ids
    error = state.progress.error if status is Status.FAILED else state.plan.skip
    if status is Status.CONVERTED:
        error = "; ".join(filter(None, (state.settle_note, *state.plan.warnings))) or None
    keep = status not in (Status.CONVERTED, Status.SKIPPED)
    return LeadEntry(
        lead_id=state.lead_id,
        status=status.value,
        state=state.to_dict() if keep else None,
        **{column: ids.get(name) for name, column in _ENTITY_COLUMNS.items()},
        error=error,
    )


def _has_progress(state: LeadState) -> bool:
    progress = state.progress
    return bool(progress.ids or progress.done or progress.unsure)


class _Run:
    """One run of a job: reads leads chunk by chunk, executes the scheduler's loop, journals."""

    def __init__(
        self,
        portal: Portal,
        journal: Journal,
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
        self.tally = dict.fromkeys(LEAD_FINAL, 0)
        for status in self.final.values():
            self.tally[status] += 1
        self.seen: set[int] = set(self.final)
        self.listed = 0
        self.stream_total: int | None = None
        self.lost = 0
        self.max_leads = max_leads
        self.taken = 0  # leads this run took up (the slice `max_leads` bounds)
        self.paused = False
        self.mode = mode  # the CRM mode as last seen (None: not known yet)
        self.watch = True  # whether batches carry the mode check
        self.mode_misses = 0
        self.switched = False  # Bitrix24 took over: the CRM went Simple under this job
        self.by_bitrix = 0  # leads of this job Bitrix24 converted itself

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> JobReport:
        """Run the job to its end (or interruption) and return its report."""
        try:
            self._admit_unfinished()
            if self.mode is Mode.SIMPLE:
                self._recheck_failed()
            if self.explicit:
                self._execute(self._by_id(self.explicit), stop_on_switch=True)
            else:
                self._execute(self._active(), stop_on_switch=True)
            if self.switched:
                self.paused = False  # the job ends: nothing is left for another slice
            if not self.paused:
                self._execute(self._by_id(self._left_over()))
            if self.switched:
                self._left_to_bitrix()
        except _Stop as stop:
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

    def _switch_note(self) -> str | None:
        """What the job's end says when Bitrix24 took over (None otherwise)."""
        if not self.switched:
            return None
        return msg.JOB_SWITCHED.format(count=self.by_bitrix)

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

    def _left_over(self) -> list[int]:
        """Leads this job took up earlier and has not settled (e.g. no longer listed)."""
        return [
            lead_id
            for lead_id, status in self.journal.outcome_statuses(self.job.id).items()
            if status not in LEAD_FINAL
            and lead_id not in self.final
            and lead_id not in self.working
        ]

    def _active(self) -> Iterator[list[dict[str, Any]]]:
        stream = self.reader.active_leads(self.facts, self.policy.leads)
        for chunk in stream.chunks():
            self.stream_total = stream.total
            self.listed += len(chunk)
            yield chunk

    def _by_id(self, lead_ids: Sequence[int]) -> Iterator[list[dict[str, Any]]]:
        """These leads (read by id, whatever their stage); ids the portal lacks: not found."""
        todo = [i for i in dict.fromkeys(lead_ids) if i not in self.seen]
        self._skip_converted(todo)
        todo = [i for i in todo if i not in self.seen]
        if todo:
            self.stream_total = (self.stream_total or 0) + len(todo)
            for chunk in self.reader.leads_by_id(todo).chunks():
                self.listed += len(chunk)
                yield chunk
        missing = [i for i in todo if i not in self.seen]
        self.seen.update(missing)
        self._take(
            [],
            [
                LeadEntry(lead_id=i, status=Status.SKIPPED.value, error=msg.SKIP_NOT_FOUND)
                for i in missing
            ],
        )

    def _execute(
        self, chunks: Iterator[list[dict[str, Any]]], *, stop_on_switch: bool = False
    ) -> None:
        """Send batches until these chunks' leads (and every lead underway) are settled.

        `stop_on_switch`: take no more of these chunks once Bitrix24 has taken over.
        """
        exhausted = False
        while True:
            if not exhausted and stop_on_switch and self.switched:
                exhausted = True
            if not exhausted and self._waiting() < REFILL:
                if self.max_leads and self.taken >= self.max_leads and not self.switched:
                    exhausted = self.paused = True  # this run's share is taken: finish it
                    continue
                exhausted = not self._admit_next(chunks)
                continue
            size = MAX_COMMANDS - 1 if self.watch else MAX_COMMANDS
            batch = scheduler.next_batch(self.working.values(), size=size)
            if batch:
                self._send(batch)
            elif exhausted:
                return
            else:
                exhausted = not self._admit_next(chunks)

    def _admit_next(self, chunks: Iterator[list[dict[str, Any]]]) -> bool:
        chunk = next(chunks, None)
        if chunk is None:
            return False
        self._admit(chunk)
        return True

    def _waiting(self) -> int:
        return sum(1 for state in self.working.values() if state.status is Status.PENDING)

    # -- taking leads up -----------------------------------------------------------------------

    def _admit_unfinished(self) -> None:
        """Leads the journal has underway: checked, then finished first from their stored state."""
        states = []
        for record in self.journal.unfinished(self.explicit):
            if record.lead_id in self.seen or record.state is None:
                continue
            try:
                states.append(LeadState.from_dict(record.state))
            except PlanError:
                continue  # unreadable: planned afresh if listed, found by ORIGIN_ID then
            self.seen.add(record.lead_id)
        states, entries = self._recheck(states)
        self._take(states, entries)

    def _recheck(self, states: list[LeadState]) -> tuple[list[LeadState], list[LeadEntry]]:
        """States from an earlier run, before anything more is sent for them: the leads
        Bitrix24 converted meanwhile come back as entries (converted by Bitrix24, or failed
        when b24app's duplicate could not be removed), the others as states to continue."""
        if not states:
            return states, []
        outcome = reconcile(self.portal, states)
        if outcome.taken:
            self.by_bitrix += len(outcome.taken)
            if self.mode is Mode.SIMPLE:
                self.switched = True  # Bitrix24 took these over while no run was watching
        entries = [taken.entry() for taken in outcome.taken.values()]
        entries += [outcome.failed_entry(s) for s in states if s.lead_id in outcome.unresolved]
        settled = {entry.lead_id for entry in entries}
        return [s for s in states if s.lead_id not in settled], entries

    def _failed_states(self, *, this_job: bool) -> list[LeadState]:
        """The stored states of leads this job failed, with something sent for them."""
        failed = [lead_id for lead_id, status in self.final.items() if status == FAILED]
        states = []
        for record in self.journal.states(failed).values():
            if record.status != FAILED or record.state is None:
                continue
            if this_job and record.job_id != self.job.id:
                continue
            with contextlib.suppress(PlanError):
                state = LeadState.from_dict(record.state)
                if _has_progress(state):
                    states.append(state)
        return states

    def _recheck_failed(self) -> None:
        """In Simple mode: leads this job failed that Bitrix24 has converted since."""
        states = self._failed_states(this_job=True)
        if not states:
            return
        outcome = reconcile(self.portal, states)
        if outcome.taken:
            self.by_bitrix += len(outcome.taken)
            self._take([], [taken.entry() for taken in outcome.taken.values()])

    def _switch(self) -> None:
        """The CRM went Simple under this run: settle every lead it holds (see the module doc)."""
        log.warning(
            "conversion job %d: the CRM was switched to Simple mode; Bitrix24 converts the "
            "leads in work itself, b24app settles the %d lead(s) it holds and takes no more",
            self.job.id,
            len(self.working),
        )
        self.switched = True
        self.stream_total = self.listed  # leads not read yet are Bitrix24's now
        held = [*self.working.values(), *self._failed_states(this_job=True)]
        outcome = reconcile(self.portal, held)
        self.by_bitrix += len(outcome.taken)
        entries = [taken.entry() for taken in outcome.taken.values()]
        entries += [
            outcome.failed_entry(state)
            for state in held
            if state.lead_id in outcome.unresolved and state.lead_id in self.working
        ]
        for entry in entries:
            self.working.pop(entry.lead_id, None)
            self._settle(entry.lead_id, entry.status)
        if entries:
            self.journal.save(self.job.id, entries, counts=self._counts())
            self._report_progress()

    def _left_to_bitrix(self) -> None:
        """Explicit leads the run never got to after the switch: reported, not converted."""
        unseen = [i for i in self.explicit or () if i not in self.seen]
        self.seen.update(unseen)
        self._take(
            [],
            [
                LeadEntry(lead_id=i, status=Status.SKIPPED.value, error=LEFT_TO_BITRIX)
                for i in unseen
            ],
        )

    def _skip_converted(self, lead_ids: Sequence[int]) -> None:
        """Explicit leads the journal says are converted: skipped, and not even read."""
        entries = [
            self._already(record)
            for record in self.journal.states(lead_ids).values()
            if record.status == Status.CONVERTED.value
        ]
        self.seen.update(entry.lead_id for entry in entries)
        self._take([], entries)

    @staticmethod
    def _already(record: Any) -> LeadEntry:
        return LeadEntry(
            lead_id=record.lead_id,
            status=Status.SKIPPED.value,
            deal_id=record.deal_id,
            contact_id=record.contact_id,
            company_id=record.company_id,
            error=msg.SKIP_CONVERTED_BY_JOB.format(job=record.job_id),
        )

    def _admit(self, chunk: Sequence[Mapping[str, Any]]) -> None:
        """Plan a chunk of listed leads and add them to the working set."""
        leads = {}
        for lead in chunk:
            lead_id = link_id(lead.get("ID"))
            if lead_id is not None and lead_id not in self.seen and lead_id not in leads:
                leads[lead_id] = lead
        self.seen.update(leads)
        records = self.journal.states(list(leads))
        states: list[LeadState] = []
        entries: list[LeadEntry] = []
        fresh = []
        stored_states = []
        for lead_id, lead in leads.items():
            record = records.get(lead_id)
            if record is not None and record.status == Status.CONVERTED.value:
                entries.append(self._already(record))
                continue
            stored = self._stored(record)
            if stored is not None:
                stored_states.append(stored)
            else:
                fresh.append(lead)
        stored_states, settled = self._recheck(stored_states)
        states += stored_states
        entries += settled
        for item in _plan_chunk(self.reader, fresh, policy=self.policy, facts=self.facts):
            if isinstance(item, LeadEntry):
                entries.append(item)
            elif item.skip is not None:
                entries.append(
                    LeadEntry(lead_id=item.lead_id, status=Status.SKIPPED.value, error=item.skip)
                )
            else:
                states.append(LeadState.start(replace(item, token=self.token)))
        self._take(states, entries)

    @staticmethod
    def _stored(record: Any) -> LeadState | None:
        """The stored state worth continuing (something was sent for it), else None."""
        if record is None or record.state is None or record.status not in ("creating", "failed"):
            return None
        try:
            state = LeadState.from_dict(record.state)
        except PlanError:
            return None
        if state.status is Status.FAILED:
            state = state.retry()
        return state if _has_progress(state) else None

    def _take(self, states: Iterable[LeadState], entries: Sequence[LeadEntry]) -> None:
        states = list(states)
        self.taken += len(states)
        for state in states:
            self.working[state.lead_id] = state
        for entry in entries:
            self._settle(entry.lead_id, entry.status)
        if states or entries:
            self.journal.save(
                self.job.id, [*map(_entry, states), *entries], counts=self._counts(), taken=True
            )
            self._report_progress()

    # -- sending -------------------------------------------------------------------------------

    def _send(self, batch: scheduler.Batch) -> None:
        settling = [lead_id for group in batch.settles.values() for lead_id in group]
        involved = list(
            dict.fromkeys([*(slot.lead_id for slot in batch.slots.values()), *settling])
        )
        before = [self.working[lead_id] for lead_id in involved]
        marked = scheduler.mark_sent(before, batch)
        self._save(marked)  # committed before sending: a crash after this cannot duplicate
        fatal: B24Error | None = None
        commands = batch.commands
        if self.watch:
            commands = (*commands, mode_command(MODE_KEY))  # last: it vouches for the others
        switched = False
        try:
            result = self.portal.batch(commands, halt=False)
        except OutcomeUnknown:
            self.lost += 1
            if self.lost >= MAX_LOST:
                raise _Stop(msg.JOB_PORTAL_LOST.format(count=self.lost)) from None
            outcome = BatchOutcome.unknown()
        except QueryLimitExceeded:
            # Busy, not failing: the client let nothing through for a long while (it waits out
            # ordinary 503s itself). Nothing ran; the batch is sent again, the job goes on.
            self._save(before)
            log.warning("conversion job %d: the portal is still busy; waiting", self.job.id)
            return
        except B24Error as exc:
            if isinstance(exc, _NOT_RUN):
                self._save(before)  # rejected before running: nothing to verify later
            raise _Stop(msg.JOB_BATCH_REFUSED.format(error=exc)) from None
        else:
            self.lost = 0
            results = dict(result.results)
            lead_errors = {k: e for k, e in result.errors.items() if k != MODE_KEY}
            fatal, dropped = _portal_wide(batch, lead_errors)
            # Commands refused that way did not run: left "sent", they are verified on resume.
            errors = {k: e for k, e in lead_errors.items() if k not in dropped}
            vouched, switched = self._observe(result)
            if not vouched:
                # The switch may have come before a closing call: it counts once vouched for.
                for key, slot in batch.slots.items():
                    if slot.step == "f":
                        results.pop(key, None)
            outcome = BatchOutcome.from_result(_Result(results, errors))
        recorded = scheduler.record(marked, batch, outcome, in_use=self._clients_in_use())
        self._save(recorded)
        if fatal is not None:
            raise _Stop(msg.JOB_EVERY_CALL_REFUSED.format(error=fatal))
        if switched:
            self._switch()
        self._report_progress()

    def _clients_in_use(self) -> dict[tuple[str, int], set[int]]:
        """Which leads the run holds use each contact and company (settling keeps those)."""
        used: dict[tuple[str, int], set[int]] = {}
        for state in self.working.values():
            for name in (CONTACT, COMPANY):
                if entity_id := state.ids.get(name):
                    used.setdefault((name, entity_id), set()).add(state.lead_id)
        return used

    def _observe(self, result: Any) -> tuple[bool, bool]:
        """Read the batch's mode check: (its calls are vouched for, the CRM just went Simple)."""
        if not self.watch:
            return True, False
        mode = read_mode_result(result.results)
        if mode is None:
            error = result.errors.get(MODE_KEY)
            self.mode_misses += 1
            if isinstance(error, _MODE_UNAVAILABLE) or self.mode_misses >= MAX_MODE_MISSES:
                self.watch = False
                log.warning(
                    "conversion job %d: the CRM mode cannot be read (%s); a switch to Simple "
                    "mode during the job will not be noticed",
                    self.job.id,
                    error or "no answer",
                )
                return True, False
            return False, False
        self.mode_misses = 0
        previous, self.mode = self.mode, mode
        if previous is None or previous is mode:
            return True, False
        return False, previous is Mode.CLASSIC and mode is Mode.SIMPLE

    def _save(self, states: Sequence[LeadState]) -> None:
        for state in states:
            status = state.status.value
            if status in LEAD_FINAL:
                self._settle(state.lead_id, status)
                self.working.pop(state.lead_id, None)
            else:
                self.working[state.lead_id] = state
        self.journal.save(self.job.id, [_entry(state) for state in states], counts=self._counts())

    # -- counting ------------------------------------------------------------------------------

    def _requests(self) -> int:
        return self.portal.requests_made - self.first_request

    def _settle(self, lead_id: int, status: str) -> None:
        old = self.final.get(lead_id)
        if old is not None:
            self.tally[old] -= 1
        self.final[lead_id] = status
        self.tally[status] += 1

    def _counts(self) -> JobCounts:
        remaining = max(0, (self.stream_total or 0) - self.listed)
        total = len(self.final) + len(self.working) + remaining
        return JobCounts(requests=self.job.requests + self._requests(), total=total, **self.tally)

    def _report_progress(self) -> None:
        if self.on_progress is None:
            return
        counts = self._counts()
        self.on_progress(
            Progress(
                total=counts.total or 0,
                converted=counts.converted,
                failed=counts.failed,
                skipped=counts.skipped,
                requests=self._requests(),
            )
        )


@dataclass(frozen=True)
class _Result:
    """A batch result with some errors taken out (for `BatchOutcome.from_result`)."""

    results: Mapping[str, Any]
    errors: Mapping[str, B24Error]


def _portal_wide(
    batch: scheduler.Batch, errors: Mapping[str, B24Error]
) -> tuple[B24Error | None, set[str]]:
    """The error saying no call can succeed now, if the batch got one, and the keys it hit."""
    wide = {key for key, error in errors.items() if isinstance(error, _PORTAL_WIDE)}
    if wide:
        return errors[min(wide)], wide
    leads = {slot.lead_id for slot in batch.slots.values()}
    codes = {(type(error), error.code, error.description) for error in errors.values()}
    if (
        errors
        and len(errors) == len(batch)
        and len(leads) >= _SAME_ERROR_LEADS
        and len(codes) == 1
        and not _harmless(next(iter(errors.values())))
    ):
        return next(iter(errors.values())), set(errors)
    return None, set()


def _harmless(error: B24Error) -> bool:
    """Codes the scheduler settles per step: transient ones and "already done" answers."""
    code = error.code or ""
    return (
        code in scheduler.AMBIGUOUS
        or code in scheduler.NOT_EXECUTED
        or code in {"ACTIVITY_IS_ALREADY_BOUND", "BINDING_NOT_FOUND", "NOT_FOUND"}
        or (not code and error.description.strip().lower().startswith("not found"))
    )
