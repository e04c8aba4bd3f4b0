"""The operating-time budget shared in Redis: what one process spends, another waits for."""

from __future__ import annotations

import uuid

import pytest

from b24app.rest import Time
from b24app.rest.throttle import OperatingBudget, RedisBudget, make_budget
from tests.rest.conftest import FakeClock

pytestmark = pytest.mark.services

METHOD = "crm.lead.list"


def _pair(redis_url: str) -> tuple[RedisBudget, RedisBudget, FakeClock]:
    import redis

    clock = FakeClock()
    key = f"test-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_url)
    return (
        RedisBudget(client, key, limit=100, clock=clock),
        RedisBudget(client, key, limit=100, clock=clock),
        clock,
    )


def _spend(budget: OperatingBudget, seconds: float, **extra: float) -> None:
    budget.observe(METHOD, Time(start=0, finish=seconds, duration=seconds, **extra))


def test_time_spent_in_one_process_makes_the_other_wait(redis_url: str) -> None:
    first, second, clock = _pair(redis_url)
    for _ in range(10):
        _spend(first, 10.0)
    assert first.delay([METHOD]) > 0  # flushes to Redis
    wait = second.delay([METHOD, "crm.deal.add"])
    assert 0 < wait <= 600
    assert second.delay(["crm.deal.add"]) == 0
    clock.advance(wait + 1)
    assert second.delay([METHOD]) == 0


def test_a_429_block_and_the_portal_report_are_shared(redis_url: str) -> None:
    first, second, clock = _pair(redis_url)
    first.block(METHOD, clock.now() + 30)
    assert 29 <= second.delay([METHOD]) <= 30
    clock.advance(31)
    _spend(first, 0.5, operating=95.0, operating_reset_at=clock.now() + 40)
    first.delay([METHOD])
    assert 39 <= second.delay([METHOD]) <= 40


def test_without_redis_the_budget_is_local_and_never_fails() -> None:
    budget = make_budget(key="p", redis_url="redis://127.0.0.1:1/0")
    assert isinstance(budget, RedisBudget)
    _spend(budget, 1.0)
    assert budget.delay([METHOD]) == 0
    assert type(make_budget(key="p")) is OperatingBudget
