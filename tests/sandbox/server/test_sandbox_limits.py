"""Limits: the per-portal leaky bucket (503) and per-method operating time (429)."""

from __future__ import annotations

import pytest
import requests

from sandbox.errors import ApiError
from sandbox.limits import PLANS, LeakyBucket, OperatingTime, Plan
from sandbox.server import Sandbox

from .conftest import FakeClock, call


def test_standard_plan_rejects_the_51st_request_of_a_burst_with_503(clock: FakeClock) -> None:
    with Sandbox(plan="standard", seed_leads=3, clock=clock) as portal:
        statuses = [call(portal.webhook_url, "profile").status_code for _ in range(50)]
        rejected = call(portal.webhook_url, "profile")
        stats = portal.stats()
    assert statuses == [200] * 50
    assert rejected.status_code == 503
    assert rejected.json() == {
        "error": "QUERY_LIMIT_EXCEEDED",
        "error_description": "Too many requests",
    }
    assert stats["query_limit_exceeded"] == 1
    assert stats["sub_calls"]["profile"] == 50


def test_rejected_requests_do_not_fill_the_bucket(clock: FakeClock) -> None:
    with Sandbox(plan="standard", clock=clock) as portal:
        for _ in range(50):
            call(portal.webhook_url, "profile")
        hammering = [call(portal.webhook_url, "profile").status_code for _ in range(20)]
        clock.advance(1.0)  # drains 2 requests at 2/s
        after_a_second = [call(portal.webhook_url, "profile").status_code for _ in range(3)]
    assert hammering == [503] * 20
    assert after_a_second == [200, 200, 503]


def test_enterprise_bucket_is_250_and_drains_5_per_second(clock: FakeClock) -> None:
    bucket = LeakyBucket(PLANS["enterprise"], clock)
    assert [bucket.try_acquire() for _ in range(251)].count(True) == 250
    clock.advance(1.0)
    assert [bucket.try_acquire() for _ in range(6)] == [True] * 5 + [False]


def test_fast_plan_is_standard_fast_forwarded(clock: FakeClock) -> None:
    bucket = LeakyBucket(PLANS["fast"], clock)
    assert [bucket.try_acquire() for _ in range(51)].count(True) == 50
    clock.advance(0.1)
    assert [bucket.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    assert PLANS["fast"].bucket_seconds == 60 / 25


def test_a_batch_is_one_request_for_the_bucket(clock: FakeClock) -> None:
    with Sandbox(plan="standard", seed_leads=1, clock=clock) as portal:
        cmd = {f"c{i}": "crm.lead.get?id=1" for i in range(50)}
        results = [call(portal.webhook_url, "batch", cmd=cmd) for _ in range(50)]
        assert all(r.status_code == 200 for r in results)
        assert call(portal.webhook_url, "batch", cmd=cmd).status_code == 503
        assert portal.stats()["sub_calls"]["crm.lead.get"] == 2500


def slow(method: str, result: object) -> float:
    """Every call "takes" 0.2 s: over the 0.1 s below which Bitrix24 does not count one."""
    return 0.2


def test_operating_time_blocks_the_method_after_the_limit(clock: FakeClock) -> None:
    """rest/classes/general/rest.php:201-214: a blocked key answers 429 with error and text
    only - no `time`, so no operating_reset_at (b24phpsdk ApiLevelErrorHandlerTest.php:89-100);
    inside a batch the block arrives per command with HTTP 200 (rest_provider.php:366-377)."""
    tight = Plan("tight", rate=1000.0, burst=1000, operating_limit=0.3)
    with Sandbox(plan=tight, seed_leads=60, clock=clock, cost=slow) as portal:
        # 0.2 s a call: the 2nd call crosses 0.3 s and still runs.
        first = call(portal.webhook_url, "crm.lead.list")
        second = call(portal.webhook_url, "crm.lead.list")
        blocked = call(portal.webhook_url, "crm.lead.list")
        other_method = call(portal.webhook_url, "crm.lead.get", id=1)
        in_batch = call(portal.webhook_url, "batch", cmd={"l": "crm.lead.list", "g": "profile"})
        clock.advance(10 * 60)  # all ten one-minute buckets drop out
        later = call(portal.webhook_url, "crm.lead.list")
        stats = portal.stats()
    assert [first.status_code, second.status_code] == [200, 200]
    assert first.json()["time"]["operating"] < second.json()["time"]["operating"]
    assert blocked.status_code == 429
    assert blocked.json() == {
        "error": "OPERATION_TIME_LIMIT",
        "error_description": "Method is blocked due to operation time limit.",
    }
    assert other_method.status_code == 200  # only the method is blocked
    assert in_batch.status_code == 200
    batch_result = in_batch.json()["result"]
    assert batch_result["result_error"] == {
        "l": {
            "error": "OPERATION_TIME_LIMIT",
            "error_description": "Method is blocked due to operation time limit.",
        }
    }
    assert batch_result["result"]["g"]["ID"] == "1"
    assert later.status_code == 200
    assert stats["operation_time_limit"] == 2
    assert stats["statuses"]["429"] == 1


def test_calls_under_a_tenth_of_a_second_are_not_counted(clock: FakeClock) -> None:
    """rest/lib/engine/access/loadlimiter.php:27,331: a request's time for a key is stored only
    when it is over 0.1 s - a 0.055 s list alone never is, fifty of them in one batch are."""
    with Sandbox(plan="standard", seed_leads=60, clock=clock) as portal:
        for _ in range(5):
            single = call(portal.webhook_url, "crm.lead.list").json()
        cmd = {f"l{i}": "crm.lead.list" for i in range(50)}
        batch = call(portal.webhook_url, "batch", cmd=cmd).json()
        after = call(portal.webhook_url, "crm.lead.list").json()
    assert single["time"]["operating"] == 0
    # While the batch runs only single calls over 0.1 s count (loadlimiter.php:288-301) ...
    assert batch["result"]["result_time"]["l49"]["operating"] == 0
    # ... then its 50 x 0.055 s are stored at once (finalize, loadlimiter.php:312-355).
    assert after["time"]["operating"] == pytest.approx(50 * 0.055)


def test_operating_time_is_keyed_by_auth_type_app_or_webhook_and_method(
    clock: FakeClock,
) -> None:
    """rest/lib/engine/access/loadlimiter.php:197-203 (getKey), rest.php:201-207: another
    webhook, the app's token and another method each have their own budget; `batch` itself is
    never charged nor blocked (loadlimiter.php:31-33)."""
    tight = Plan("tight", rate=1000.0, burst=1000, operating_limit=0.1)
    with Sandbox(plan=tight, seed_leads=3, clock=clock, cost=slow) as portal:
        token = portal.install_app()["access_token"]
        other_hook = portal.add_webhook()
        call(portal.webhook_url, "crm.lead.get", id=1)
        blocked = call(portal.webhook_url, "crm.lead.get", id=1)
        by_other_hook = call(other_hook, "crm.lead.get", id=1)
        by_app = requests.post(
            f"{portal.base_url}/rest/crm.lead.get", json={"id": 1, "auth": token}, timeout=10
        )
        other_method = call(portal.webhook_url, "crm.lead.list")
        batches = [call(portal.webhook_url, "batch", cmd={"p": "profile"}) for _ in range(3)]
    assert blocked.status_code == 429
    assert [by_other_hook.status_code, by_app.status_code, other_method.status_code] == [200] * 3
    assert [b.status_code for b in batches] == [200] * 3
    assert all(b.json()["time"]["operating"] == 0 for b in batches)


def test_operating_time_sums_ten_minute_buckets(clock: FakeClock) -> None:
    meter = OperatingTime(PLANS["standard"], clock)
    add, deal_add = ("webhook", "1/x", "crm.lead.add"), ("webhook", "1/x", "crm.deal.add")
    meter.charge(add, 100.0)
    clock.advance(5 * 60)
    meter.charge(add, 200.0)
    assert meter.used(add) == 300.0
    clock.advance(5 * 60)
    assert meter.used(add) == 200.0  # the first bucket fell out
    assert meter.used(deal_add) == 0.0


def test_fast_plan_operating_windows_are_24_seconds(clock: FakeClock) -> None:
    meter = OperatingTime(PLANS["fast"], clock)
    add, deal_add = ("oauth", "app", "crm.lead.add"), ("oauth", "app", "crm.deal.add")
    meter.charge(add, 500.0)
    meter.check(deal_add)
    with pytest.raises(ApiError) as blocked:
        meter.check(add)
    assert blocked.value.code == "OPERATION_TIME_LIMIT"
    clock.advance(24.0)
    meter.check(add)


def test_limits_count_every_rest_request_even_unauthenticated(clock: FakeClock) -> None:
    with Sandbox(plan="standard", clock=clock) as portal:
        bad = [
            requests.post(f"{portal.base_url}/rest/1/nope/profile", timeout=10).status_code
            for _ in range(50)
        ]
        assert bad == [401] * 50
        assert call(portal.webhook_url, "profile").status_code == 503
