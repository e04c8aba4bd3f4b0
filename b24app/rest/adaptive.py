"""The share of a portal's leaky bucket this app may use, learned from the portal's refusals.

Pure arithmetic on a frozen state; `throttle.LocalBucket` keeps it under a lock, and
`throttle.RedisBucket` runs the same arithmetic in Lua so every process shares it.

Bitrix24 counts every request to a portal in one leaky bucket - X = 50 deep, drained at Y = 2/s
(Enterprise: 250 and 5/s) - shared by every app, webhook and script on that portal; a request
that finds it full is refused with 503 QUERY_LIMIT_EXCEEDED without being run
(https://apidocs.bitrix24.com/limits.html). The client keeps a mirror of that bucket filled by
its own requests only, kept `headroom` requests below X, and a drain `rate` it allows itself
(at most Y). What others spend is invisible - until the portal refuses a request:

* A refusal is a measurement. At that moment the portal's bucket was full (X) while the mirror
  held `slot.level`: others put at least X - slot.level requests in since the mirror last matched
  the portal (the previous refusal, or the last time the mirror ran empty, `since`). Spread over
  that span it is their rate, so ours becomes `rate - missed / span`, a little below it
  (`UNDERSHOOT`) so the portal's bucket drains again; never more than `MAX_CUT` of the rate at
  once (the first span may start with the portal's bucket already part full, which the mirror
  cannot know), never below `FLOOR` of Y. The client's first refusal within one drain time
  (X / Y) of its start teaches no rate at all: that is the level a neighbour's burst left (an
  import just before the app's first request), not a share it keeps spending. The mirror is
  then set full, so the next request waits until the portal has room. Only the first refusal
  of a generation counts: requests already in flight when the rate was cut are answered by the
  same congestion and teach nothing new.
* A request that has to wait for room leaves up to one drain interval later than the mirror
  allows (`jitter`). Sent on the dot, it would always arrive the moment the portal's bucket has
  room again: every slot would be ours, a neighbour's requests would be the ones refused, and the
  client would never learn it has one. The mirror drains meanwhile, so the next request catches
  up: the average rate is unchanged.
* While the mirror is the bottleneck (a request had to wait), the rate creeps back up by
  `GROWTH * Y**2 / X` requests/s per second - 1% of Y every 25 s on the standard plan, every
  second on the sandbox's 25x `fast` plan. A steady neighbour costs a rare probe refusal (about
  one a minute or two on the standard plan); when it stops, the rate climbs back (from 1.2 to
  2/s in about 17 minutes on the standard plan). An idle client does not grow.

* Others' requests can also be *counted* after the fact: the portal's newest leads (ids in
  order of creation, with their creation times) say that at least so many leads - so many
  requests, at 50 per batch - were added since a given moment (`at_least`, evidence as
  (requests, age) pairs). While a bucket receives faster than it drains, its level is what came
  in less what drained since, however the arrivals were spread: each pair gives what is left of
  those requests now, drained at the learned rate. The largest is added to the mirror (none of
  those requests is the client's own; never above X), so the first requests after an import
  wait for the room it left instead of drawing a 503. A count is read once per facts request,
  at most once a minute (their cache), by when an earlier count has drained.

Without neighbours nothing is ever refused and the rate stays at Y.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from b24app.config import RateLimit

# Requests may reach the portal bunched although they left evenly; the mirror keeps this many
# seconds of drain (at least 2 requests) free for that.
ARRIVAL_SLACK_SECONDS = 0.25
# After a refusal, aim this far below the measured share, so the portal's bucket drains.
UNDERSHOOT = 0.05
# One refusal cuts the rate by at most this fraction.
MAX_CUT = 0.3
# The rate never drops below this fraction of the plan's drain rate.
FLOOR = 0.02
# Recovery speed, in units of Y**2 / X (plan-independent in bucket-fill times).
GROWTH = 0.01


@dataclass(frozen=True)
class Shape:
    """The constants of one portal's bucket, as the client mirrors it."""

    capacity: float  # X: the portal's bucket depth
    cap: float  # the mirror's limit: X minus the arrival headroom
    ceiling: float  # Y: the plan's drain rate, the most this client ever sends
    growth: float  # requests/s added per second while saturated
    floor: float  # the lowest rate a cut reaches
    adaptive: bool = True  # False: a refusal fills the mirror but never lowers the rate

    @classmethod
    def of(cls, rate: RateLimit, *, adaptive: bool = True) -> Shape:
        """The shape for a plan's (drain per second, burst)."""
        headroom = max(2, math.ceil(rate.per_second * ARRIVAL_SLACK_SECONDS))
        return cls(
            capacity=float(rate.burst),
            cap=float(max(1, rate.burst - headroom)),
            ceiling=rate.per_second,
            growth=GROWTH * rate.per_second**2 / rate.burst,
            floor=FLOOR * rate.per_second,
            adaptive=adaptive,
        )


@dataclass(frozen=True)
class Slot:
    """One request's place in the schedule: wait this long, then send."""

    wait: float
    generation: int  # the state's generation when the slot was taken
    level: float  # the mirror's level right after this request, at its send time


@dataclass(frozen=True)
class State:
    """The mirror: its level (requests, reservations included) at time `at`, the learned rate,
    the generation (refusals that taught something), and since when the mirror has matched the
    portal's bucket."""

    level: float
    at: float
    rate: float
    generation: int
    since: float

    @classmethod
    def start(cls, shape: Shape, now: float) -> State:
        """An empty mirror at the plan's full rate."""
        return cls(level=0.0, at=now, rate=shape.ceiling, generation=0, since=now)


def drained(state: State, now: float) -> State:
    """The state at `now`: the level drained at the learned rate (an empty mirror resets
    `since` to when it emptied)."""
    elapsed = max(0.0, now - state.at)
    level = state.level - state.rate * elapsed
    if level > 0.0:
        return replace(state, level=level, at=max(now, state.at))
    emptied = state.at + state.level / state.rate
    return replace(state, level=0.0, at=max(now, state.at), since=max(state.since, emptied))


def take(state: State, shape: Shape, now: float, jitter: float = 0.0) -> tuple[State, Slot]:
    """Reserve the next request slot; `jitter` is a draw from [0, 1) (see the module doc)."""
    current = drained(state, now)
    wait = max(0.0, (current.level + 1.0 - shape.cap) / current.rate)
    level = current.level + 1.0
    rate = current.rate
    if wait > 0.0:
        wait += jitter / current.rate
        if shape.adaptive:
            rate = min(shape.ceiling, rate + shape.growth / rate)
    slot = Slot(wait=wait, generation=current.generation, level=level - current.rate * wait)
    return replace(current, level=level, rate=rate), slot


def at_least(
    state: State, shape: Shape, now: float, evidence: Iterable[tuple[float, float]]
) -> State:
    """Others sent at least `requests` requests within the last `age` seconds, for each pair of
    `evidence` (see the module doc): what is left of them now joins the mirror, up to X."""
    current = drained(state, now)
    left = max((requests - current.rate * max(0.0, age) for requests, age in evidence), default=0)
    level = max(current.level, min(current.level + max(0.0, left), shape.capacity))
    return replace(current, level=level)


def _first_burst(state: State, shape: Shape, span: float) -> bool:
    """Whether a refusal is the client's first, within one bucket-drain time of its start: the
    portal's bucket was part full when the mirror began (a neighbour's burst - an import just
    before the app's first request), a level the mirror could not know rather than a rate. The
    mirror is set full and the rate kept; a neighbour that goes on spending is measured by the
    next refusal, whose span starts from a mirror that matched the portal."""
    return state.generation == 0 and span < shape.capacity / shape.ceiling


def refused(state: State, shape: Shape, slot: Slot, now: float) -> State:
    """The portal refused the request sent in `slot` with QUERY_LIMIT_EXCEEDED."""
    if slot.generation != state.generation:
        return state  # the rate was already cut for this congestion
    current = drained(state, now)
    rate = current.rate
    span = max(now - current.since, 1.0 / rate)
    if shape.adaptive and not _first_burst(state, shape, span):
        missed = max(0.0, shape.capacity - slot.level)
        measured = (rate - missed / span) * (1.0 - UNDERSHOOT)
        rate = max(rate * (1.0 - MAX_CUT), measured, shape.floor)
    return State(
        level=max(current.level, shape.capacity),
        at=current.at,
        rate=rate,
        generation=current.generation + 1,
        since=current.at,
    )
