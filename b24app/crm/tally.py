"""A conversion run's bookkeeping: what it holds, what it settled, the counts and progress it
reports, and the journal writes that keep them. The base of `conversion._Run`: the run's other
concerns (mode watch, intake, dispatch) build on it in that order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from b24app.crm.facts import PortalFacts
from b24app.crm.journal import LEAD_FINAL, JobCounts, JobJournal, JobRow, LeadEntry
from b24app.crm.mode import Mode
from b24app.crm.planner import COMPANY, CONTACT, DEAL
from b24app.crm.policy import Policy
from b24app.crm.reader import Reader
from b24app.crm.scheduler import LeadState, Status
from b24app.rest.portal import Portal

_ENTITY_COLUMNS = {DEAL: "deal_id", CONTACT: "contact_id", COMPANY: "company_id"}


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
        state=state.to_json() if keep else None,
        **{column: ids.get(name) for name, column in _ENTITY_COLUMNS.items()},
        error=error,
        done=state.to_json() if status is Status.CONVERTED else None,  # for b24app.undo
    )


def has_progress(state: LeadState) -> bool:
    """Whether anything was sent or created for this lead: its stored state is worth continuing."""
    progress = state.progress
    return bool(progress.ids or progress.done or progress.unsure)


class RunState:
    """What one run holds (set by `conversion._Run.__init__`), and its bookkeeping."""

    token: str  # marks the clients this run creates
    portal: Portal
    journal: JobJournal
    job: JobRow
    reader: Reader
    policy: Policy
    facts: PortalFacts
    explicit: tuple[int, ...] | None
    on_progress: ProgressCallback | None
    first_request: int
    working: dict[int, LeadState]
    final: dict[int, str]
    tally: dict[str, int]
    seen: set[int]
    listed: int
    stream_total: int | None
    lost: int
    max_leads: int | None
    taken: int  # leads this run took up (the slice `max_leads` bounds)
    slice: int  # one share of leads (`max_leads` at the start; 0: none)
    go_on: Callable[[], bool] | None  # asked at a share's end: True runs another one
    paused: bool
    mode: Mode | None  # the CRM mode as last seen (None: not known yet)
    watch: bool  # whether batches carry the mode check
    mode_misses: int
    switched: bool  # Bitrix24 took over: the CRM went Simple under this job
    by_bitrix: int  # leads of this job Bitrix24 converted itself
    absorbing: bool  # leads kept arriving: this run absorbed some (`Intake._absorbed`)

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

    def _save(
        self, states: Sequence[LeadState], *, before: Sequence[LeadState] | None = None
    ) -> None:
        """Journal these states; `before` (the same leads' previous states, in order): only
        the leads whose status changed get their job outcome written again."""
        changed = None
        if before is not None:
            changed = {
                s.lead_id for s, b in zip(states, before, strict=True) if s.status != b.status
            }
        for state in states:
            status = state.status.value
            if status in LEAD_FINAL:
                self._settle(state.lead_id, status)
                self.working.pop(state.lead_id, None)
            else:
                self.working[state.lead_id] = state
        self.journal.save(
            self.job.id,
            [_entry(state) for state in states],
            counts=self._counts(),
            outcomes_of=changed,
        )
