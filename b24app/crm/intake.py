"""A conversion run's intake: which leads it takes up, in what order, planned afresh or continued
from the journal's state (see `b24app.crm.conversion`'s doc, "Which leads a run takes").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from b24app import messages as msg
from b24app.crm.journal import AUTO_KINDS, LEAD_FINAL, LeadEntry
from b24app.crm.mapping import link_id
from b24app.crm.planner import PlanError
from b24app.crm.planning import plan_chunk
from b24app.crm.scheduler import LeadState, Status
from b24app.crm.tally import has_progress
from b24app.crm.watch import ModeWatch


class Intake(ModeWatch):
    """The run, taking leads up: reading, planning or continuing them."""

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

    def _by_id(
        self, lead_ids: Sequence[int], *, absorb: bool = False
    ) -> Iterator[list[dict[str, Any]]]:
        """These leads (read by id, whatever their stage); ids the portal lacks: not found.
        `absorb` (an automatic job): then the leads events brought in meanwhile, merged into
        this job from the portal's gathering one (`JobJournal.absorb`) while its batches run, so
        a burst keeps one job and full batches instead of a job and a drained pipeline each."""
        batch = list(lead_ids)
        while batch:
            yield from self._read_by_id(batch)
            batch = list(self._absorbed()) if absorb else []

    def _absorbed(self) -> tuple[int, ...]:
        if self.job.kind not in AUTO_KINDS or self.switched or self.paused:
            return ()
        found = self.journal.absorb(self.job.id)
        self.absorbing = self.absorbing or bool(found)
        return found

    def _read_by_id(self, lead_ids: Sequence[int]) -> Iterator[list[dict[str, Any]]]:
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
        for item in plan_chunk(self.reader, fresh, policy=self.policy, facts=self.facts):
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
        if (
            record is None
            or record.state is None
            or record.status not in (Status.CREATING, Status.FAILED)
        ):
            return None
        try:
            state = LeadState.from_dict(record.state)
        except PlanError:
            return None
        if state.status is Status.FAILED:
            state = state.retry()
        return state if has_progress(state) else None
