"""The cross-machine paths: the PostgreSQL row-locked refresh and the Redis-held throttle.

Marked `services`: they fail loudly under CI=true when PostgreSQL or Redis is missing, and skip
with the reason otherwise.
"""

from __future__ import annotations

import multiprocessing
import secrets

import pytest
import redis
import requests

from b24app.config import RateLimit
from b24app.rest import LocalBucket, RedisBucket
from chaos.neighbour import Neighbour
from sandbox import Sandbox
from sandbox.limits import Plan
from tests.rest import workers
from tests.rest.conftest import NoJitter
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


def test_redis_buckets_share_one_mirror_and_one_learned_rate(rate_redis_url):
    key = f"b24app:test:{secrets.token_hex(4)}"
    rate = RateLimit(per_second=2.0, burst=50)
    first = RedisBucket(redis.Redis.from_url(rate_redis_url), key, rate)
    second = RedisBucket(redis.Redis.from_url(rate_redis_url), key, rate)
    slots = [(first if i % 2 else second).take() for i in range(52)]
    assert [slot.wait for slot in slots[:48]] == [0.0] * 48
    # the two "processes" drew alternate slots of one mirror, a drain interval apart (+ jitter)
    for k, slot in enumerate(slots[48:], start=1):
        assert 0.5 * k - 0.2 <= slot.wait < 0.5 * (k + 1)
    first.refused(slots[-1])
    # the client's first refusal, within one drain time of its start: the level a burst before
    # it left, not a rate (b24app/rest/adaptive.py); the mirror is set full for both
    assert first.rate == pytest.approx(2.0)
    after = second.take()
    assert after.wait >= 3 / 2.0 - 0.2  # the mirror is full for both: wait for the portal's room
    second.refused(after)  # a later refusal: a neighbour's share, learned once for both
    learned = second.rate
    assert learned < 2.0
    first.take()
    assert first.rate == pytest.approx(learned, abs=0.01)  # learned together (+ growth)
    first.refused(slots[-2])  # sent before the cut: the same congestion, no second cut
    assert first.rate == pytest.approx(learned, abs=0.01)
    redis.Redis.from_url(rate_redis_url).delete(key)


def test_the_redis_bucket_counts_others_requests_as_the_local_one_does(rate_redis_url):
    # The Lua copy of `adaptive.at_least` beside the Python one: the most left of the counted
    # requests (drained at the learned rate) joins the mirror, never above the portal's depth.
    key = f"b24app:test:{secrets.token_hex(4)}"
    rate = RateLimit(per_second=2.0, burst=50)
    shared = RedisBucket(redis.Redis.from_url(rate_redis_url), key, rate, rng=NoJitter())
    local = LocalBucket(rate, rng=NoJitter())
    levels: dict[str, list[float]] = {"redis": [], "local": []}
    for name, bucket in (("redis", shared), ("local", local)):
        bucket.at_least([(40.0, 6.0), (1.0, 4.0)])  # 28 left
        levels[name].append(bucket.take().level)
        bucket.at_least([(10.0, 1.0), (3.0, 9.0)])  # 8 left (and none of 3 after 9 s)
        levels[name].append(bucket.take().level)
        bucket.at_least([(400.0, 0.0)])  # up to the depth
        levels[name].append(bucket.take().level)
        bucket.at_least([])
    assert levels["redis"] == pytest.approx(levels["local"], abs=0.15)
    assert levels["local"] == pytest.approx([29.0, 38.0, 48.0], abs=0.15)
    redis.Redis.from_url(rate_redis_url).delete(key)


def _run_writers(portal: Sandbox, redis_url: str | None) -> list[tuple]:
    ctx = multiprocessing.get_context("spawn")
    results, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(
            target=workers.shared_bucket_writer,
            args=(portal.webhook_url, redis_url, 5.0, 20, 15, f"P{n}x", results, ready, go),
        )
        for n in range(2)
    ]
    for proc in procs:
        proc.start()
    assert all(ready.get(timeout=120) for _ in procs)
    go.set()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    return outcomes


@pytest.mark.slow  # spawned writer processes against a 5/s portal: 4-16 s
def test_two_processes_sharing_the_redis_bucket_never_draw_503(rate_redis_url):
    tight = Plan("tight", rate=5.0, burst=20)
    with Sandbox(seed_leads=0, seed=1, plan=tight) as portal:
        host = portal.webhook_url.split("/")[2]
        redis.Redis.from_url(rate_redis_url).delete(f"b24app:rate:{host}")
        outcomes = _run_writers(portal, rate_redis_url)
        stats = portal.stats()
    assert [o[:4] for o in outcomes] == [("ok", 750, 0, 15)] * 2, outcomes
    assert stats["query_limit_exceeded"] == 0
    assert stats["counts"]["lead"] == 1_500


@pytest.mark.slow  # spawned writer processes against a 5/s portal: 4-16 s
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


def _fill_the_bucket(portal: Sandbox) -> None:
    """Spend the portal's whole burst through a webhook of its own, until it answers 503."""
    url = portal.add_webhook().rstrip("/") + "/profile"
    for _ in range(portal.plan.burst * 4):
        if requests.post(url, timeout=10).status_code == 503:
            return
    raise AssertionError("the portal never refused a request")


@pytest.mark.slow  # spawned writer processes against a 5/s portal: 4-16 s
def test_processes_sharing_redis_learn_the_neighbours_share_together(rate_redis_url):
    # Two processes writing through one Redis-held bucket beside a neighbour spending 40% of a
    # 5/s portal: the 503s either of them meets lower the one shared rate. They start on a portal
    # whose bucket another app has just filled, so they meet 503s however slowly this machine
    # runs the sandbox (a loaded CI machine did not reach the rate by writing alone).
    tight = Plan("tight", rate=5.0, burst=20)
    with Sandbox(seed_leads=0, seed=1, plan=tight) as portal:
        key = f"b24app:rate:{portal.webhook_url.split('/')[2]}"
        shared = redis.Redis.from_url(rate_redis_url)
        shared.delete(key)
        with Neighbour.beside(portal, 0.4, seed=1):
            ctx = multiprocessing.get_context("spawn")
            results, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
            procs = [
                ctx.Process(
                    target=workers.shared_bucket_writer,
                    args=(
                        portal.webhook_url,
                        rate_redis_url,
                        5.0,
                        20,
                        20,
                        f"B{n}x",
                        results,
                        ready,
                        go,
                    ),
                )
                for n in range(2)
            ]
            for proc in procs:
                proc.start()
            assert all(ready.get(timeout=120) for _ in procs)
            _fill_the_bucket(portal)
            go.set()
            outcomes = [results.get(timeout=180) for _ in procs]
            for proc in procs:
                proc.join(30)
        stats = portal.stats()
        learned = float(shared.hget(key, "rate"))
        shared.delete(key)
    assert [o[:3] for o in outcomes] == [("ok", 1000, 0)] * 2, outcomes
    assert stats["counts"]["lead"] == 2_000  # every refused batch was sent again, and ran once
    assert sum(o[4] for o in outcomes) > 0
    assert learned < 5.0
