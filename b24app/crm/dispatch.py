"""A conversion run's dispatch: the scheduler's loop against the portal - fill the working set,
send full batches (the mode check last), record the answers, stop on a portal-wide failure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from b24app import messages as msg
from b24app.crm import scheduler
from b24app.crm.intake import Intake
from b24app.crm.mode import MODE_KEY, mode_command
from b24app.crm.planner import COMPANY, CONTACT
from b24app.crm.scheduler import MAX_COMMANDS, BatchOutcome, Status
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
)
from b24app.vocabulary import AMBIGUOUS, HARMLESS, NOT_EXECUTED, NOT_FOUND_TEXT

log = logging.getLogger("b24app.crm")

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


class Stop(Exception):
    """A portal-wide failure: the job stops as interrupted with this message."""


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
        code in AMBIGUOUS
        or code in NOT_EXECUTED
        or code in HARMLESS
        or (not code and error.description.strip().lower().startswith(NOT_FOUND_TEXT))
    )


class Dispatch(Intake):
    """The run, sending batches until the leads it takes are settled."""

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
                    if self.go_on is not None and self.go_on():
                        self.max_leads += self.slice  # nobody waits: one more share
                        continue
                    exhausted = self.paused = True  # this run's share is taken: finish it
                    continue
                exhausted = not self._admit_next(chunks)
                continue
            size = MAX_COMMANDS - 1 if self.watch else MAX_COMMANDS
            starts = None
            if not self.paused and (exhausted or (self._all_listed() and not self.absorbing)):
                # the run's last leads: fill the tail too (not while leads keep arriving: the
                # 2,000-lead import took 266 requests instead of 186 that way; nor at the end of
                # a turn's share: 10 portals x 500 leads in turns of 100 took 796 requests with
                # and without, and the look was 14-25% of the worker's CPU)
                starts = scheduler.best_starts(self.working.values(), size=size)
            batch = scheduler.next_batch(self.working.values(), size=size, starts=starts)
            if not batch and starts is not None:
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

    def _all_listed(self) -> bool:
        """Whether every lead the run knows of is read (more may still be absorbed)."""
        return self.stream_total is not None and self.listed >= self.stream_total

    def _waiting(self) -> int:
        return sum(1 for state in self.working.values() if state.status is Status.PENDING)

    def _send(self, batch: scheduler.Batch) -> None:
        settling = [lead_id for group in batch.settles.values() for lead_id in group]
        involved = list(
            dict.fromkeys([*(slot.lead_id for slot in batch.slots.values()), *settling])
        )
        before = [self.working[lead_id] for lead_id in involved]
        marked = scheduler.mark_sent(before, batch)
        # committed before sending: a crash after this cannot duplicate (only the unsure steps
        # changed: a job outcome is written again for a lead whose status changed with them)
        self._save(marked, before=before)
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
                raise Stop(msg.JOB_PORTAL_LOST.format(count=self.lost)) from None
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
            raise Stop(msg.JOB_BATCH_REFUSED.format(error=exc)) from None
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
            raise Stop(msg.JOB_EVERY_CALL_REFUSED.format(error=fatal))
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
