"""The cross-machine paths: the PostgreSQL row-locked refresh and the Redis-held throttle.

Marked `services`: they fail loudly under CI=true when PostgreSQL or Redis is missing, and skip
with the reason otherwise.
"""

from __future__ import annotations

import multiprocessing
import secrets

import pytest
import redis

from b24app.config import RateLimit
from b24app.rest import RedisBucket
from sandbox import Sandbox
from sandbox.limits import Plan
from tests.rest import workers
from tests.rest.sandbox_app import Installed, race_refresh

pytestmark = pytest.mark.services


def test_postgres_row_lock_refreshes_once_for_two_processes_of_eight_threads(fresh_postgres_url):
    with Sandbox(seed_leads=60, seed=1, plan="fast") as portal:
        app = Installed(portal, fresh_postgres_url)
        assert app.store.engine.dialect.name == "postgresql"
        outcomes, stats = race_refresh(portal, app)
    app.store.engine.dispose()
    assert outcomes == [("ok", 50)] * 16, outcomes
    assert stats["refreshes"] == 1
    assert stats["oauth_requests"] == 1


def test_redis_buckets_share_one_schedule(redis_url):
    key = f"b24app:test:{secrets.token_hex(4)}"
    rate = RateLimit(per_second=2.0, burst=50)
    first = RedisBucket(redis.Redis.from_url(redis_url), key, rate)
    second = RedisBucket(redis.Redis.from_url(redis_url), key, rate)
    waits = [(first if i % 2 else second).reserve() for i in range(52)]
    assert waits[:48] == [0.0] * 48
    # the two "processes" drew alternate slots of one bucket, each 0.5 s after the last
    assert waits[48:] == pytest.approx([0.5, 1.0, 1.5, 2.0], abs=0.2)
    first.penalize()
    assert second.reserve() >= 2.0
    redis.Redis.from_url(redis_url).delete(key)


def _run_writers(portal: Sandbox, redis_url: str | None) -> list[tuple]:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=workers.shared_bucket_writer,
            args=(portal.webhook_url, redis_url, 5.0, 20, 15, f"P{n}x", results),
        )
        for n in range(2)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    return outcomes


def test_two_processes_sharing_the_redis_bucket_never_draw_503(redis_url):
    tight = Plan("tight", rate=5.0, burst=20)
    with Sandbox(seed_leads=0, seed=1, plan=tight) as portal:
        redis.Redis.from_url(redis_url).delete(f"b24app:bucket:{portal.webhook_url.split('/')[2]}")
        outcomes = _run_writers(portal, redis_url)
        stats = portal.stats()
    assert outcomes == [("ok", 750, 0, 15)] * 2, outcomes
    assert stats["query_limit_exceeded"] == 0
    assert stats["counts"]["lead"] == 1_500


def test_without_redis_two_processes_overrun_the_portal():
    # The contrast that makes the test above mean something: per-process buckets each spend
    # the burst, the portal answers 503 (and the client retries them).
    tight = Plan("tight", rate=5.0, burst=20)
    with Sandbox(seed_leads=0, seed=1, plan=tight) as portal:
        outcomes = _run_writers(portal, None)
        stats = portal.stats()
    assert [o[:3] for o in outcomes] == [("ok", 750, 0)] * 2, outcomes
    assert stats["query_limit_exceeded"] > 0
    assert stats["counts"]["lead"] == 1_500
