"""Scheduling many leads' conversion steps into `batch` requests at the platform's floor.

The platform: no convert method, `batch` runs <= 50 sub-calls per request, 2 requests/s on
standard plans (https://apidocs.bitrix24.com/settings/how-to-call-rest-api/batch.html,
https://apidocs.bitrix24.com/limits.html). Converting N leads takes C calls, so the floor is
ceil(C / 50) requests.

The design problem. Chaining a lead's calls inside one batch with `$result[key]` (company ->
contact -> deal -> lead update) looks cheapest, but with `halt=0` a failed `crm.company.add`
leaves the contact's and deal's `$result[...]` unresolved (they run anyway, with a wrong or empty
id), and nothing stops the `crm.lead.update` that closes a lead whose deal does not exist.
`halt=1` prevents that but stops every other lead's calls in the batch too: each failure costs a
re-send of the rest, and the batch's outcome becomes harder to read.

The choice: a pipeline, with no `$result` references at all. Every step of a lead runs only
after the steps it depends on have *known, checked* results; their ids go into its parameters as
literals. Each batch is filled with the ready steps of many leads at different phases - lead A's
deal, lead B's contact, lead C's activity moves, lead D's company - up to 50, leads already
underway first. The commands of one batch are independent, so `halt=0` is safe and a failure
touches only its own lead. As long as leads remain to start every batch is full, so a run takes
ceil(C / 50) requests plus the pipeline's depth (at most 7 phases: company, contact, deal,
settling, bindings and writes, unbinding or a requisite's address, finalization) to drain the
tail. A lead closes (`crm.lead.update`) only
in a batch after every other step of it has succeeded. Once the run has read every lead it knows
of, `best_starts` may take up fewer new leads in a batch than fit, when playing the packing
forward shows the tail then drains in fewer batches (200 leads: 14 write batches, not 15).

Exactly once. A step whose answer was lost (timeout, a whole batch with an unknown outcome, an
ambiguous server error) is *unsure*. Idempotent steps (activity binding and completion, product
rows, lead update) are simply sent again (an "already bound" / "binding not found" answer counts
as done). Non-idempotent ones (the three creations and a client's requisite) are checked first
with a read - `crm.<entity>.list` by `ORIGINATOR_ID`/`ORIGIN_ID`, the client's requisites - and
re-sent only if nothing was found. `mark_sent` records steps as unsure *before* sending, so even a
crash between sending and recording cannot create a duplicate. A step that keeps meeting
transient errors (MAX_TRIES) fails its lead, unsure steps kept for a later `retry()`; lost
answers are not counted - deciding that the portal is unreachable is the executor's call.

The executor's loop (everything here is pure; the executor owns I/O and the journal)::

    states = [LeadState.start(plan) for plan in plans]     # or LeadState.from_dict(journal row)
    while batch := next_batch(states):
        states = mark_sent(states, batch)                   # persist before sending
        try:
            outcome = BatchOutcome.from_result(portal.batch(batch.commands, halt=False))
        except OutcomeUnknown:                              # sent; the answer was lost
            outcome = BatchOutcome.unknown()
        states = record(states, batch, outcome)             # persist
    # each state's .status is converted | failed | skipped; .ids has what exists

If the executor knows a batch was *not* executed (rejected before running, e.g. 503
QUERY_LIMIT_EXCEEDED), it may just send the same batch again; recording `unknown()` is also safe
(it costs one verification read per creation).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from b24app import messages as msg
from b24app.crm.journal import LeadStatus as Status
from b24app.crm.mapping import item_id, link_id
from b24app.crm.planner import (
    COMPANY,
    CONTACT,
    DEAL,
    SETTLE_GROUP,
    STEP_OF,
    Found,
    LeadPlan,
    PlanError,
    Source,
    Step,
    StepKind,
    StepShape,
    requisite_key,
    settle_command,
    settle_findings,
    step_shapes,
)
from b24app.errors import OutcomeUnknown
from b24app.rest.command import Command
from b24app.vocabulary import (
    ALREADY_DONE,
    AMBIGUOUS,
    NOT_EXECUTED,
    NOT_FOUND,
)
from b24app.vocabulary import MAX_BATCH as MAX_COMMANDS

MAX_TRIES = 5

# Errors meaning the step's effect is already there (or its activity is gone), per step kind.
_ALREADY_DONE = {
    StepKind.BIND: ALREADY_DONE["crm.activity.binding.add"] | {NOT_FOUND},
    StepKind.UNBIND: ALREADY_DONE["crm.activity.binding.delete"] | {NOT_FOUND},
    StepKind.COMPLETE: frozenset({NOT_FOUND}),
    StepKind.DISCARD: frozenset({NOT_FOUND}),
}
# Legacy errors carry no code, only a text: these mean the step's effect is already there.
# crm.address.add: "TypeAddress exists." (restservice.php:14466-14490).
_ALREADY_DONE_TEXT = {StepKind.REQUISITE_ADDRESS: ("typeaddress exists",)}


@dataclass(frozen=True)
class Progress:
    """What has happened to one lead's plan so far: the part of the journal that changes.

    `ids`: entities created (or found created) by this run; `done`: finished step ids; `unsure`:
    steps sent whose outcome is not known; `tries`: transient errors per step; `error`: why the
    lead failed; `discard`: this run's own entities to delete because another run's deal won the
    settling (see the planner), and `kept` those left because another lead uses them.
    """

    ids: Mapping[str, int] = field(default_factory=dict)
    done: frozenset[str] = frozenset()
    unsure: frozenset[str] = frozenset()
    tries: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    discard: Mapping[str, int] = field(default_factory=dict)
    kept: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data: dict[str, Any] = {
            "ids": dict(self.ids),
            "done": sorted(self.done),
            "unsure": sorted(self.unsure),
            "tries": dict(self.tries),
            "error": self.error,
        }
        if self.discard or self.kept:
            data |= {"discard": dict(self.discard), "kept": dict(self.kept)}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Progress:
        """Read back `to_dict()`; PlanError on anything else."""
        try:
            return cls(
                ids={str(k): int(v) for k, v in (data.get("ids") or {}).items()},
                done=frozenset(map(str, data.get("done") or ())),
                unsure=frozenset(map(str, data.get("unsure") or ())),
                tries={str(k): int(v) for k, v in (data.get("tries") or {}).items()},
                error=data.get("error"),
                discard={str(k): int(v) for k, v in (data.get("discard") or {}).items()},
                kept={str(k): int(v) for k, v in (data.get("kept") or {}).items()},
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise PlanError(f"not a stored progress ({exc.__class__.__name__}: {exc})") from None


@dataclass(frozen=True)
class LeadState:
    """One lead's plan and progress; the unit the journal stores (see `to_dict`)."""

    plan: LeadPlan
    progress: Progress = field(default_factory=Progress)

    @classmethod
    def start(cls, plan: LeadPlan) -> LeadState:
        """The state before anything is sent."""
        return cls(plan)

    @property
    def lead_id(self) -> int:
        """The lead's id."""
        return self.plan.lead_id

    @property
    def ids(self) -> dict[str, int]:
        """Every entity id known for this lead: reused ones and those created so far."""
        return {**self.plan.known_ids, **self.progress.ids}

    @property
    def created(self) -> dict[str, int]:
        """The entities b24app created (or found it had created) for this lead."""
        return {
            name: i
            for name, i in self.progress.ids.items()
            if (p := self.plan.entity(name)) is not None and p.created
        }

    @property
    def steps(self) -> tuple[Step, ...]:
        """The plan's steps, plus the deletions settling asked for (the lead closes after them)."""
        if not self.progress.discard:
            return self.plan.steps
        extra = tuple(
            Step(
                f"x{STEP_OF[name]}{entity_id}",
                StepKind.DISCARD,
                ("s",),
                discard=(name, entity_id),
            )
            for name, entity_id in (
                (key.split(":")[0], entity_id) for key, entity_id in self.progress.discard.items()
            )
        )
        waits = tuple(step.id for step in extra)
        steps = [s for s in self.plan.steps if s.kind is not StepKind.FINISH]
        steps += extra
        steps += [
            replace(s, after=(*s.after, *waits))
            for s in self.plan.steps
            if s.kind is StepKind.FINISH
        ]
        return tuple(steps)

    @property
    def settle_note(self) -> str | None:
        """What settling found, for the report (None when no other run converted the lead)."""
        progress = self.progress
        if not progress.discard and not progress.kept:
            return None
        parts = [msg.SETTLED, msg.SETTLED_KEPT.format(deal=self.ids.get(DEAL))]
        for template, keys in (
            (msg.SETTLED_REMOVED, progress.discard),
            (msg.SETTLED_SHARED, progress.kept),
        ):
            if keys:
                parts.append(template.format(entities=", ".join(k.replace(":", " ") for k in keys)))
        return "; ".join(parts)

    @property
    def status(self) -> Status:
        """pending | creating | converted | failed | skipped."""
        progress = self.progress
        if self.plan.skip is not None:
            return Status.SKIPPED
        if progress.error is not None:
            return Status.FAILED
        if "f" in progress.done:
            return Status.CONVERTED
        if progress.done or progress.unsure or progress.ids or progress.tries:
            return Status.CREATING
        return Status.PENDING

    def ready(self) -> list[tuple[Step, bool]]:
        """The steps that may be sent now, each with `verify` (check, don't resend)."""
        if self.status not in (Status.PENDING, Status.CREATING):
            return []
        done, unsure = self.progress.done, self.progress.unsure
        return [
            (step, step.id in unsure and step.verifiable)
            for step in self.steps
            if step.id not in done and all(a in done for a in step.after)
        ]

    def retry(self) -> LeadState:
        """A failed lead made runnable again: error and try counts cleared, unsure steps kept."""
        return replace(self, progress=replace(self.progress, error=None, tries={}))

    def to_dict(self) -> dict[str, Any]:
        """`{"plan": ..., "progress": ...}`, JSON-ready, for the journal."""
        return {"plan": self.plan.to_dict(), "progress": self.progress.to_dict()}

    def to_json(self) -> str:
        """`to_dict()` as the journal stores it: JSON with sorted keys.

        The plan's part is encoded once per plan (`LeadPlan.json_text`); only the progress is new
        (orjson: twice per batch per lead, it was a tenth of the journal's CPU with `json`).
        """
        progress = orjson.dumps(self.progress.to_dict(), option=orjson.OPT_SORT_KEYS).decode()
        return f'{{"plan": {self.plan.json_text}, "progress": {progress}}}'

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LeadState:
        """Read back `to_dict()`; PlanError on anything else."""
        if not isinstance(data, Mapping) or not isinstance(data.get("plan"), Mapping):
            raise PlanError("not a stored lead state")
        return cls(LeadPlan.from_dict(data["plan"]), Progress.from_dict(data.get("progress") or {}))


@dataclass(frozen=True)
class Slot:
    """Which lead and step a batch command belongs to; `verify`: it is a check, not the step."""

    lead_id: int
    step: str
    verify: bool = False


@dataclass(frozen=True)
class Batch:
    """Up to 50 independent commands (send with `halt=False`) and what each one is for."""

    commands: tuple[Command, ...] = ()
    slots: Mapping[str, Slot] = field(default_factory=dict)
    halt: bool = False
    settles: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # key -> leads it reads

    def __len__(self) -> int:
        return len(self.commands)

    def __bool__(self) -> bool:
        return bool(self.commands)


@dataclass(frozen=True)
class CommandError:
    """One sub-call's error from `result_error`: the Bitrix24 code and its description."""

    code: str
    description: str = ""


@dataclass(frozen=True)
class BatchOutcome:
    """What a sent batch returned: results and errors by key; a key in neither is unknown."""

    results: Mapping[str, Any] = field(default_factory=dict)
    errors: Mapping[str, CommandError] = field(default_factory=dict)

    @classmethod
    def unknown(cls) -> BatchOutcome:
        """The outcome of a batch whose answer never arrived: every command unknown."""
        return cls()

    @classmethod
    def from_result(cls, result: Any) -> BatchOutcome:
        """Adapt the REST client's `BatchResult` (`.results`; `.errors` with code, description).

        An `OutcomeUnknown` error leaves its command unknown.
        """
        errors = {}
        for key, error in dict(result.errors).items():
            if isinstance(error, OutcomeUnknown):
                continue
            errors[str(key)] = CommandError(
                str(getattr(error, "code", "") or ""), str(getattr(error, "description", "") or "")
            )
        return cls(results=dict(result.results), errors=errors)

    @classmethod
    def from_response(cls, body: Mapping[str, Any]) -> BatchOutcome:
        """Parse a `batch` answer (the whole body, or its `result` object).

        Empty containers arrive as `[]`, not `{}` (PHP arrays).
        """
        inner = body
        if "result_error" not in body and isinstance(body.get("result"), Mapping):
            inner = body["result"]
        results = inner.get("result")
        errors = inner.get("result_error")
        return cls(
            results=dict(results) if isinstance(results, Mapping) else {},
            errors={
                str(key): CommandError(
                    str(err.get("error") or ""), str(err.get("error_description") or "")
                )
                for key, err in (errors.items() if isinstance(errors, Mapping) else ())
                if isinstance(err, Mapping)
            },
        )


def next_batch(
    states: Iterable[LeadState], *, size: int = MAX_COMMANDS, starts: int | None = None
) -> Batch:
    """The next batch: ready steps of leads underway first, then of pending leads, up to `size`.
    `starts`: take up at most this many pending leads (`best_starts`; None: as many as fit).

    Empty when every lead is converted, failed or skipped.
    """
    states = list(states)
    if len({state.lead_id for state in states}) != len(states):
        raise PlanError("a lead appears twice among the states; batch keys would collide")
    commands: list[Command] = []
    slots: dict[str, Slot] = {}
    settling: list[int] = []  # leads whose settle step is ready: read SETTLE_GROUP per command
    started = 0

    def room() -> int:
        return size - len(commands) - math.ceil(len(settling) / SETTLE_GROUP)

    for wanted in (Status.CREATING, Status.PENDING):
        for state in states:
            if room() <= 0:
                break
            if state.status is not wanted:
                continue
            if wanted is Status.PENDING:
                if starts is not None and started >= starts:
                    break
                started += 1
            ids = state.ids
            for step, verify in state.ready():
                if step.kind is StepKind.SETTLE:
                    if len(settling) % SETTLE_GROUP or room() >= 1:
                        settling.append(state.lead_id)
                    continue
                if room() <= 0:
                    break
                plan = state.plan
                command = plan.verify_command(step, ids) if verify else plan.command(step, ids)
                commands.append(command)
                slots[command.key] = Slot(state.lead_id, step.id, verify)
    settles: dict[str, tuple[int, ...]] = {}
    for start in range(0, len(settling), SETTLE_GROUP):
        group = tuple(settling[start : start + SETTLE_GROUP])
        command = settle_command(group)
        commands.append(command)
        settles[command.key] = group
    return Batch(tuple(commands), slots, settles=settles)


# `best_starts`: how far below a full share of new leads it looks, and the most leads underway
# or pending and batches left it simulates (beyond that a tail is a small part of the run, and
# the look costs CPU: it plays the rest of the run START_CHOICES times for every batch).
START_CHOICES = 13
LOOK_LEADS = 250
LOOK_BATCHES = 16


@dataclass
class _Sketch:
    """A lead's steps for `best_starts`: (id, after, settle), those done (as if every step sent
    succeeded) and how many are left."""

    steps: tuple[StepShape, ...]
    done: set[str]
    started: bool
    left: int

    @classmethod
    def of(cls, state: LeadState) -> _Sketch:
        steps = state.steps
        # no deletions added by settling: the plan's own shapes, built once
        shapes = state.plan.step_shapes if steps is state.plan.steps else step_shapes(steps)
        done = set(state.progress.done)
        left = sum(1 for step_id, _, _ in shapes if step_id not in done)
        return cls(shapes, done, state.status is Status.CREATING, left)

    def copy(self) -> _Sketch:
        return _Sketch(self.steps, set(self.done), self.started, self.left)

    def ready(self) -> list[tuple[str, bool]]:
        done = self.done
        return [
            (step_id, settle)
            for step_id, after, settle in self.steps
            if step_id not in done and all(a in done for a in after)
        ]


def best_starts(states: Iterable[LeadState], *, size: int = MAX_COMMANDS) -> int | None:
    """How many pending leads the next batch should take up so that these leads, and no others,
    take the fewest batches (None: as many as fit).

    Taking up every pending lead that fits is right while leads keep coming, but at the end of
    a run it can leave the last leads' chains (contact -> deal -> settling -> closing call) to
    drain in half-empty batches. This plays the scheduler's own packing forward - as if every
    step sent succeeded, starting at most k leads now and as many as fit afterwards - for the
    START_CHOICES largest k, and keeps the k that ends soonest (the largest on a tie). Pure and
    only a choice of order: what each batch may carry is unchanged (issue 16: 200 leads in 14
    write batches instead of 15)."""
    sketches = [
        _Sketch.of(state) for state in states if state.status in (Status.CREATING, Status.PENDING)
    ]
    pending = sum(1 for sketch in sketches if not sketch.started)
    if not pending or len(sketches) > LOOK_LEADS:
        return None
    trial = [s.copy() for s in sketches]
    if not _sketch_batch(trial, size, None):
        return None
    full = sum(s.started for s in trial) - sum(s.started for s in sketches)  # a full batch's
    batches = 1  # this greedy play is the play of k = full
    while batches <= LOOK_BATCHES and _sketch_batch(trial, size, None):
        batches += 1
    if batches > LOOK_BATCHES:
        return None  # the tail is still far off
    best = (batches, full)  # (batches, k)
    for k in range(full - 1, max(0, full - START_CHOICES), -1):
        trial = [s.copy() for s in sketches]
        if not _sketch_batch(trial, size, k):
            continue
        count = 1
        # a play that reaches the best count so far cannot win (a tie keeps the larger k)
        while count < best[0] and _sketch_batch(trial, size, None):
            count += 1
        if count < best[0]:
            best = (count, k)
    if best[1] >= full:
        return None
    return best[1]


def _sketch_batch(sketches: list[_Sketch], size: int, starts: int | None) -> bool:
    """One batch of `next_batch`'s packing on sketches, its steps marked done; False if empty.

    `used` is what `next_batch` counts as taken: the steps sent plus one command per settling
    group begun."""
    marked: list[tuple[_Sketch, str]] = []
    used = settles = started = 0
    for underway in (True, False):
        for sketch in sketches:
            if sketch.started is not underway or not sketch.left:
                continue
            if used >= size:
                break
            if not underway:
                if starts is not None and started >= starts:
                    break
                started += 1
            for step_id, settle in sketch.ready():
                if settle:
                    if settles % SETTLE_GROUP == 0:
                        if used >= size:
                            continue
                        used += 1  # this settle begins a group: one more command
                    settles += 1
                elif used >= size:
                    break
                else:
                    used += 1
                marked.append((sketch, step_id))
    for sketch, step_id in marked:
        sketch.done.add(step_id)
        sketch.left -= 1
        sketch.started = True
    return bool(marked)


def mark_sent(states: Sequence[LeadState], batch: Batch) -> list[LeadState]:
    """The states to persist *before* sending `batch`: its steps marked unsure."""

    def mark(state: LeadState, pairs: list[tuple[str, Slot]]) -> LeadState:
        sent = {slot.step for _, slot in pairs if not slot.verify}
        progress = state.progress
        return replace(state, progress=replace(progress, unsure=progress.unsure | sent))

    return _per_lead(states, batch, mark)


def record(
    states: Sequence[LeadState],
    batch: Batch,
    outcome: BatchOutcome,
    *,
    in_use: Mapping[tuple[str, int], set[int]] | None = None,
) -> list[LeadState]:
    """The states after `batch` returned `outcome` (persist them): ids learned, steps settled.

    `in_use`: which leads use each (client, id) among every lead the run holds; a client another
    lead uses is kept, not discarded, when settling hands a lead over to another run's deal.
    """
    methods = {command.key: command.method for command in batch.commands}
    found: dict[int, Found] = {}
    for key, group in batch.settles.items():
        found |= settle_findings(outcome.results.get(key), group) or {}
    states = [
        settle(state, found[state.lead_id], in_use=in_use or {})
        if state.lead_id in found
        else state
        for state in states
    ]

    def apply(state: LeadState, pairs: list[tuple[str, Slot]]) -> LeadState:
        change = _Change(state)
        steps = {s.id: s for s in state.steps}
        for key, slot in pairs:
            step = steps[slot.step]
            if key in outcome.errors:
                change.error(step, slot, methods.get(key, "?"), outcome.errors[key])
            elif key in outcome.results:
                change.result(step, slot, outcome.results[key])
        return change.state()

    return _per_lead(states, batch, apply)


def settle(
    state: LeadState, found: Found, *, in_use: Mapping[tuple[str, int], set[int]]
) -> LeadState:
    """`state` once its settle listing `found` the deals b24app made from the lead (see the
    planner): the winner's deal and clients become the lead's; every other deal is to be deleted,
    and so are this run's own clients the winner does not use (unless another lead of this run
    uses them: kept)."""
    progress = state.progress
    if "s" in progress.done or state.plan.deal is None:
        return state
    done = progress.done | {"s"}
    winner = found.winner
    if winner is None:  # not even this run's deal is listed: nothing to settle against
        return replace(state, progress=replace(progress, done=done))
    mine = state.ids
    ids = dict(progress.ids)
    discard = {f"{DEAL}:{i}": i for i in found.deals if i != winner[DEAL]}
    kept: dict[str, int] = {}
    for name in (CONTACT, COMPANY):
        entity, own = state.plan.entity(name), mine.get(name)
        if entity is None or own is None or own == winner[name]:
            continue
        if winner[name]:
            ids[name] = winner[name]  # type: ignore[assignment]
        if entity.source not in (Source.CREATE, Source.JOURNAL):
            continue  # a client the lead or a match brought: never this run's to delete
        users = in_use.get((name, own), set()) - {state.lead_id}
        (kept if users else discard)[f"{name}:{own}"] = own
        if not users and not winner[name]:
            ids.pop(name, None)
    ids[DEAL] = winner[DEAL]  # type: ignore[assignment]
    # A client the winner does not have: nothing to bind to it or write onto it.
    every = {**state.plan.known_ids, **ids}
    done |= {
        step.id
        for step in state.plan.steps
        if step.target in (CONTACT, COMPANY) and not every.get(step.target)
    }
    return replace(
        state, progress=replace(progress, ids=ids, done=done, discard=discard, kept=kept)
    )


def tally(states: Iterable[LeadState]) -> dict[Status, int]:
    """How many leads are in each status (every status listed, zeros included)."""
    counts = dict.fromkeys(Status, 0)
    for state in states:
        counts[state.status] += 1
    return counts


def _per_lead(states: Sequence[LeadState], batch: Batch, change: Any) -> list[LeadState]:
    grouped: dict[int, list[tuple[str, Slot]]] = {}
    for key, slot in batch.slots.items():
        grouped.setdefault(slot.lead_id, []).append((key, slot))
    return [
        change(state, grouped[state.lead_id]) if state.lead_id in grouped else state
        for state in states
    ]


class _Change:
    """Accumulates what one batch's answers mean for one lead."""

    def __init__(self, state: LeadState) -> None:
        self.before = state
        self.ids = dict(state.progress.ids)
        self.done = set(state.progress.done)
        self.unsure = set(state.progress.unsure)
        self.tries = dict(state.progress.tries)
        self.failure: str | None = state.progress.error

    def _again(self, step: Step) -> None:
        self.tries[step.id] = self.tries.get(step.id, 0) + 1

    def _finish(self, step: Step) -> None:
        self.done.add(step.id)
        self.unsure.discard(step.id)

    def result(self, step: Step, slot: Slot, value: Any) -> None:
        plan = self.before.plan
        if slot.verify:
            found = plan.read_verification(step, value)
            if step.creates is not None and found:
                self.ids[step.creates] = int(found)
                self._finish(step)
            elif step.kind is StepKind.REQUISITE and found:
                self.ids[requisite_key(step.target or "")] = int(found)
                self._finish(step)
            elif found:
                self._finish(step)
            else:
                self.unsure.discard(step.id)  # checked: it did not happen, send it
            return
        if step.creates is not None or step.kind is StepKind.REQUISITE:
            new_id = item_id(value) if step.creates else link_id(value)
            if new_id is None:
                self._again(step)  # an answer that is not an id: stays unsure, verified next
                return
            self.ids[step.creates or requisite_key(step.target or "")] = new_id
        if step.kind is StepKind.TIMELINE and value is False:
            # crm.timeline.bindings.bind answers false, HTTP 200, when update access is denied
            # (restservice.php:16260-16304).
            self.unsure.discard(step.id)
            self.failure = self.failure or (
                f"step {step.id} (crm.timeline.bindings.bind) failed: the portal answered false "
                f"(no right to change the {step.target})"
            )
            return
        self._finish(step)

    def error(self, step: Step, slot: Slot, method: str, error: CommandError) -> None:
        code = error.code
        if code in AMBIGUOUS:
            self._again(step)
            return
        if code in NOT_EXECUTED:
            self._again(step)
            if not slot.verify:
                self.unsure.discard(step.id)
            return
        gone = code == "NOT_FOUND" or (
            not code and error.description.strip().lower().startswith("not found")
        )
        text = error.description.strip().lower()
        if not slot.verify and (
            code in _ALREADY_DONE.get(step.kind, ())
            or (gone and step.kind in _ALREADY_DONE)
            or any(text.startswith(t) for t in _ALREADY_DONE_TEXT.get(step.kind, ()))
        ):
            self._finish(step)
            if gone and step.kind is StepKind.BIND:
                self.done.add(f"u{step.activity_id}")  # a deleted activity has nothing to unbind
            return
        if not slot.verify:
            self.unsure.discard(step.id)
        what = msg.FAIL_CHECK if slot.verify else msg.FAIL_STEP
        reason = f"{code or 'error'}: {error.description}".rstrip(": ")
        self.failure = self.failure or what.format(step=step.id, method=method, error=reason)

    def state(self) -> LeadState:
        failure = self.failure
        if failure is None:
            for step_id, tries in sorted(self.tries.items()):
                if step_id not in self.done and tries >= MAX_TRIES:
                    failure = msg.FAIL_GAVE_UP.format(step=step_id, tries=tries)
                    break
        return replace(
            self.before,
            progress=replace(
                self.before.progress,
                ids=self.ids,
                done=frozenset(self.done),
                unsure=frozenset(self.unsure),
                tries=self.tries,
                error=failure,
            ),
        )
