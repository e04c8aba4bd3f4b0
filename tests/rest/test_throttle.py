"""The mirrored leaky bucket: a burst, then the drain rate; one schedule across threads."""

from __future__ import annotations

from threading import Lock

import pytest

from b24app.config import PLANS, RateLimit
from b24app.rest import LocalBucket, OperatingBudget, Time
from b24app.rest.adaptive import Shape
from tests.rest.conftest import NoJitter, in_threads


@pytest.mark.parametrize(("plan", "burst"), [("standard", 48), ("enterprise", 248), ("fast", 37)])
def test_bucket_keeps_headroom_under_the_plan(plan, burst):
    shape = Shape.of(RateLimit(*PLANS[plan]))
    assert shape.cap == burst
    assert shape.ceiling == PLANS[plan][0]


def test_a_burst_then_the_drain_rate(clock):
    bucket = LocalBucket(
        RateLimit(per_second=2.0, burst=50), clock=clock, adaptive=False, rng=NoJitter()
    )
    waits = [bucket.take().wait for _ in range(52)]
    assert waits[:48] == [0.0] * 48
    assert waits[48:] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    clock.advance(10)  # 20 slots drained, 4 of them already promised to the waiters above
    assert [bucket.take().wait for _ in range(16)] == [0.0] * 16
    assert bucket.take().wait > 0


def test_one_schedule_across_threads(clock):
    bucket = LocalBucket(
        RateLimit(per_second=5.0, burst=20), clock=clock, adaptive=False, rng=NoJitter()
    )
    waits: list[float] = []
    lock = Lock()

    def worker() -> None:
        for _ in range(25):
            wait = bucket.take().wait
            with lock:
                waits.append(wait)

    in_threads(worker, 8)
    # 200 reservations: 18 free slots, then exactly one every 0.2 s - no two threads share one
    assert sorted(waits) == pytest.approx([0.0] * 18 + [0.2 * k for k in range(1, 183)])


def test_a_refusal_means_the_portal_bucket_is_full(clock):
    bucket = LocalBucket(
        RateLimit(per_second=2.0, burst=50), clock=clock, adaptive=False, rng=NoJitter()
    )
    slot = bucket.take()
    assert slot.wait == 0.0
    bucket.refused(slot)
    # full (50): room for one more once 3 have drained, keeping the 2 requests of headroom
    assert bucket.take().wait == pytest.approx(1.5)
    assert bucket.take().wait == pytest.approx(2.0)
    assert bucket.rate == 2.0  # not adaptive: the rate never changes


def test_operating_budget_counts_durations_per_method_in_the_window(clock):
    budget = OperatingBudget(limit=100, clock=clock)
    for _ in range(8):
        budget.observe("crm.lead.update", Time(duration=10.0))
        clock.advance(10)
    assert budget.delay(["crm.lead.update"]) == 0.0  # 80 s: under 90% of the limit
    budget.observe("crm.lead.update", Time(duration=10.0))
    # 90 s spent; the oldest 10 s leave the window 600 s after they were spent
    assert budget.delay(["crm.lead.update", "crm.deal.add"]) == pytest.approx(520)
    assert budget.delay(["crm.deal.add"]) == 0.0
    clock.advance(520)
    assert budget.delay(["crm.lead.update"]) == 0.0


def test_operating_budget_memory_stays_bounded_under_many_sub_calls(clock):
    budget = OperatingBudget(limit=480, clock=clock)
    for _ in range(10_000):  # a batch-heavy run: many sub-calls within each second
        budget.observe("crm.lead.update", Time(duration=0.001))
        clock.advance(0.01)
    assert len(budget._spent["crm.lead.update"]) <= 101  # one entry per second seen
    assert budget._totals["crm.lead.update"] == pytest.approx(10.0)
    assert budget.delay(["crm.lead.update"]) == 0.0
