"""A conversion run's watch on the CRM mode: the check riding in every batch, and what the run
does when Bitrix24 takes over (a switch to Simple mode) - see `b24app.crm.conversion`'s doc.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from b24app import messages as msg
from b24app.crm.journal import LeadEntry
from b24app.crm.mode import MODE_KEY, Mode
from b24app.crm.planner import PlanError
from b24app.crm.reader import forget_facts, read_mode_result
from b24app.crm.reconcile import reconcile
from b24app.crm.scheduler import LeadState, Status
from b24app.crm.tally import RunState, has_progress
from b24app.errors import AccessDenied, InsufficientScope, MethodNotFound

log = logging.getLogger("b24app.crm")

# Mode checks in a row that got no answer before the run stops checking (and trusting less).
MAX_MODE_MISSES = 5
# Errors of the mode check meaning it can never work on this portal: the run stops checking.
_MODE_UNAVAILABLE = (AccessDenied, MethodNotFound, InsufficientScope)
LEFT_TO_BITRIX = (
    "left to Bitrix24: the CRM was switched to Simple mode during the job, and Bitrix24 "
    "converts the leads in work itself"
)


class ModeWatch(RunState):
    """The run, watching the CRM mode and settling what it holds when Bitrix24 takes over."""

    def _switch_note(self) -> str | None:
        """What the job's end says when Bitrix24 took over (None otherwise)."""
        if not self.switched:
            return None
        return msg.JOB_SWITCHED.format(count=self.by_bitrix)

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
        failed = [lead_id for lead_id, status in self.final.items() if status == Status.FAILED]
        states = []
        for record in self.journal.states(failed).values():
            if record.status != Status.FAILED or record.state is None:
                continue
            if this_job and record.job_id != self.job.id:
                continue
            with contextlib.suppress(PlanError):
                state = LeadState.from_dict(record.state)
                if has_progress(state):
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
        forget_facts(self.portal)  # the mode changed: no cached facts outlive it
        return False, previous is Mode.CLASSIC and mode is Mode.SIMPLE
