"""Client-side limits: the portal's leaky bucket mirrored (per process or in Redis) and a
per-method operating-time budget, so the client slows down before Bitrix24 says no.

https://apidocs.bitrix24.com/limits.html
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

from b24app.config import RateLimit
from b24app.errors import ConfigError
from b24app.rest.clock import SYSTEM_CLOCK, Clock
from b24app.rest.response import Time

log = logging.getLogger("b24app.rest")

# How long a request may take to reach the portal, as slack in the mirrored bucket: requests that
# leave evenly can arrive bunched, and the portal counts arrivals.
ARRIVAL_SLACK_SECONDS = 0.25


class RateBucket(Protocol):
    """A leaky bucket shared by everything that calls one portal."""

    def reserve(self) -> float:
        """Take the next request slot; return how many seconds to wait before sending."""
        ...

    def penalize(self) -> None:
        """The portal answered QUERY_LIMIT_EXCEEDED: treat its bucket as full."""
        ...


def bucket_shape(rate: RateLimit) -> tuple[float, float]:
    """(interval, tolerance) of the GCRA equivalent to `rate`, minus a little headroom."""
    headroom = max(2, math.ceil(rate.per_second * ARRIVAL_SLACK_SECONDS))
    burst = max(1, rate.burst - headroom)
    interval = 1.0 / rate.per_second
    return interval, (burst - 1) * interval


class LocalBucket:
    """The bucket for one process, safe across threads (GCRA: one timestamp under a lock)."""

    def __init__(self, rate: RateLimit, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._interval, self._tolerance = bucket_shape(rate)
        self._clock = clock
        self._lock = threading.Lock()
        self._tat = 0.0  # theoretical arrival time of the next request

    def reserve(self) -> float:
        """Take the next slot; seconds to wait before using it."""
        with self._lock:
            now = self._clock.monotonic()
            tat = max(self._tat, now)
            self._tat = tat + self._interval
            return max(0.0, tat - self._tolerance - now)

    def penalize(self) -> None:
        """Assume the portal's bucket is full: the next slot is one drain interval away."""
        with self._lock:
            now = self._clock.monotonic()
            self._tat = max(self._tat, now + self._tolerance + self._interval)


# The same GCRA as LocalBucket, atomic in Redis and on Redis's clock, so every process and
# machine calling the portal shares one bucket. ARGV: interval, tolerance, mode.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local wait = 0
if ARGV[3] == 'penalize' then
  tat = math.max(tat, now + tolerance + interval)
else
  tat = math.max(tat, now)
  wait = math.max(0, tat - tolerance - now)
  tat = tat + interval
end
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX',
           math.ceil((tat - now + tolerance + 1) * 1000))
return string.format('%.6f', wait)
"""


class RedisBucket:
    """The bucket held in Redis under `key`; falls back to a local bucket if Redis fails."""

    def __init__(
        self, client: Any, key: str, rate: RateLimit, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._interval, self._tolerance = bucket_shape(rate)
        self._key = key
        self._script = client.register_script(_GCRA)
        self._fallback = LocalBucket(rate, clock=clock)
        self._warned = False

    def _run(self, mode: str) -> float | None:
        import redis

        try:
            return float(
                self._script(
                    keys=[self._key], args=[f"{self._interval:.6f}", f"{self._tolerance:.6f}", mode]
                )
            )
        except redis.RedisError as exc:
            if not self._warned:
                log.warning(
                    "Redis throttle unavailable (%s); limiting this process only",
                    type(exc).__name__,
                )
                self._warned = True
            return None

    def reserve(self) -> float:
        """Take the next slot in Redis; seconds to wait before using it."""
        wait = self._run("take")
        return self._fallback.reserve() if wait is None else wait

    def penalize(self) -> None:
        """Mark the shared bucket full."""
        if self._run("penalize") is None:
            self._fallback.penalize()


def make_bucket(
    rate: RateLimit, *, key: str, redis_url: str | None = None, clock: Clock = SYSTEM_CLOCK
) -> RateBucket:
    """A RedisBucket when `redis_url` is set, else a LocalBucket."""
    if not redis_url:
        return LocalBucket(rate, clock=clock)
    import redis

    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    except ValueError:
        raise ConfigError("B24APP_REDIS_URL must look like redis://host:6379/0") from None
    return RedisBucket(client, f"b24app:bucket:{key}", rate, clock=clock)


class OperatingBudget:
    """Per-method operating time over Bitrix24's 10-minute window, from `time.operating`
    (the portal's running total) and from the durations this client saw, whichever is larger.

    Before a call it says how long to wait: until `operating_reset_at` once the method is near its
    limit, or until a 429 OPERATION_TIME_LIMIT block lifts. https://apidocs.bitrix24.com/limits.html
    """

    WINDOW = 600.0
    # Bitrix24 keeps ten one-minute buckets: a blocked method frees budget within a minute.
    BUCKET = 60.0
    # Durations seen within this many seconds share one entry, so the memory per method stays
    # bounded (<= WINDOW / GRAIN entries) however many sub-calls a batch-heavy run makes.
    GRAIN = 1.0

    def __init__(
        self, *, limit: float = 480.0, soft: float = 0.9, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._soft_limit = limit * soft
        self._clock = clock
        self._lock = threading.Lock()
        self._spent: dict[str, deque[list[float]]] = {}  # [first seen, seconds] per grain
        self._totals: dict[str, float] = {}
        self._reported: dict[str, tuple[float, float | None, float]] = {}
        self._blocked: dict[str, float] = {}

    def observe(self, method: str, time: Time | None) -> None:
        """Account one finished call of `method` from its `time` object."""
        if time is None:
            return
        now = self._clock.now()
        with self._lock:
            if time.duration:
                spent = self._spent.setdefault(method, deque())
                if spent and now - spent[-1][0] < self.GRAIN:
                    spent[-1][1] += time.duration
                else:
                    spent.append([now, time.duration])
                self._totals[method] = self._totals.get(method, 0.0) + time.duration
            if time.operating is not None:
                self._reported[method] = (time.operating, time.operating_reset_at, now)

    def block(self, method: str, reset_at: float | None) -> float:
        """Record a 429 for `method`; return the unix time the block is expected to lift."""
        now = self._clock.now()
        with self._lock:
            if reset_at is None or reset_at <= now:
                reported = self._reported.get(method)
                known = reported[1] if reported else None
                reset_at = known if known and known > now else now + self.BUCKET
            self._blocked[method] = max(self._blocked.get(method, 0.0), reset_at)
            return self._blocked[method]

    def delay(self, methods: Iterable[str]) -> float:
        """Seconds to wait before calling all of `methods`."""
        return max((self._delay(m) for m in set(methods)), default=0.0)

    def _delay(self, method: str) -> float:
        now = self._clock.now()
        with self._lock:
            blocked = self._blocked.get(method, 0.0)
            if blocked > now:
                return blocked - now
            spent = self._spent.get(method, deque())
            while spent and spent[0][0] <= now - self.WINDOW:
                self._totals[method] -= spent.popleft()[1]
            if not spent:  # no float drift left behind
                self._totals[method] = 0.0
            local = self._totals.get(method, 0.0)
            if local >= self._soft_limit:
                return self._until_local_below(spent, local, now)
            operating, reset_at, seen = self._reported.get(method, (0.0, None, 0.0))
            # The portal's total is stale a bucket after it was seen, or once its reset passed.
            if seen <= now - self.BUCKET or operating < self._soft_limit:
                return 0.0
            if reset_at is None:
                return seen + self.BUCKET - now
            return max(0.0, reset_at - now)

    def _until_local_below(self, spent: deque[list[float]], local: float, now: float) -> float:
        for at, duration in spent:
            local -= duration
            if local < self._soft_limit:
                return max(0.0, at + self.WINDOW - now)
        return self.BUCKET


class RedisBudget(OperatingBudget):
    """The operating-time budget of portal `key` shared in Redis by every process and machine:
    durations summed in ten one-minute buckets (Bitrix24 keeps ten too), the portal's last
    reported `time.operating`, and 429 blocks. It also keeps the local budget, and falls back to
    it alone when Redis fails.

    Observations are buffered and written with the reads of the next `delay()` in one pipeline,
    so a 50-call batch costs one Redis round trip, not fifty.
    """

    def __init__(
        self,
        client: Any,
        key: str,
        *,
        limit: float = 480.0,
        soft: float = 0.9,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(limit=limit, soft=soft, clock=clock)
        self._redis = client
        self._prefix = f"b24app:budget:{key}:"
        self._buffer_lock = threading.Lock()
        self._durations: dict[str, float] = {}
        self._reports: dict[str, tuple[float, float | None]] = {}
        self._warned = False

    def observe(self, method: str, time: Time | None) -> None:
        """Account a finished call locally and buffer it for Redis."""
        super().observe(method, time)
        if time is None:
            return
        with self._buffer_lock:
            if time.duration:
                self._durations[method] = self._durations.get(method, 0.0) + time.duration
            if time.operating is not None:
                self._reports[method] = (time.operating, time.operating_reset_at)

    def block(self, method: str, reset_at: float | None) -> float:
        """Record a 429 for `method` here and for every other process."""
        until = super().block(method, reset_at)
        millis = int((until - self._clock.now()) * 1000)
        if millis > 0:
            self._shared(
                lambda pipe: pipe.set(self._prefix + f"{method}:blocked", until, px=millis)
            )
        return until

    def delay(self, methods: Iterable[str]) -> float:
        """Seconds to wait before calling all of `methods`, by the local and the shared budget."""
        wanted = sorted(set(methods))
        local = super().delay(wanted)
        now = self._clock.now()
        minute = int(now // self.BUCKET)
        buckets = int(self.WINDOW // self.BUCKET)
        with self._buffer_lock:
            durations, self._durations = self._durations, {}
            reports, self._reports = self._reports, {}

        def pipeline(pipe: Any) -> None:
            for method, seconds in durations.items():
                name = self._prefix + f"{method}:m{minute}"
                pipe.incrbyfloat(name, seconds)
                pipe.expire(name, int(self.WINDOW + 2 * self.BUCKET))
            for method, (operating, reset_at) in reports.items():
                pipe.set(
                    self._prefix + f"{method}:reported",
                    json.dumps([operating, reset_at, now]),
                    ex=int(self.BUCKET),
                )
            for method in wanted:
                pipe.get(self._prefix + f"{method}:blocked")
                pipe.get(self._prefix + f"{method}:reported")
                pipe.mget([self._prefix + f"{method}:m{minute - i}" for i in range(buckets)])

        answers = self._shared(pipeline)
        if answers is None:
            return local
        shared = 0.0
        for index in range(len(wanted)):
            blocked, reported, spent = answers[len(answers) - 3 * len(wanted) + 3 * index :][:3]
            shared = max(shared, self._shared_delay(now, minute, blocked, reported, spent))
        return max(local, shared)

    def _shared_delay(
        self, now: float, minute: int, blocked: Any, reported: Any, spent: list[Any]
    ) -> float:
        if blocked is not None and float(blocked) > now:
            return float(blocked) - now
        seconds = [float(value) if value is not None else 0.0 for value in spent]
        total = sum(seconds)
        if total >= self._soft_limit:
            for age in range(len(seconds) - 1, -1, -1):  # oldest bucket first
                total -= seconds[age]
                if total < self._soft_limit:
                    leaves = (minute - age) * self.BUCKET + self.WINDOW
                    return max(0.0, leaves - now)
            return self.BUCKET
        if reported is not None:
            operating, reset_at, seen = json.loads(reported)
            if operating >= self._soft_limit:
                return max(0.0, reset_at - now) if reset_at else max(0.0, seen + self.BUCKET - now)
        return 0.0

    def _shared(self, build: Any) -> list[Any] | None:
        import redis

        try:
            pipe = self._redis.pipeline(transaction=False)
            build(pipe)
            return list(pipe.execute())
        except redis.RedisError as exc:
            if not self._warned:
                log.warning(
                    "Redis operating budget unavailable (%s); budgeting this process only",
                    type(exc).__name__,
                )
                self._warned = True
            return None


def make_budget(
    *, key: str, redis_url: str | None = None, clock: Clock = SYSTEM_CLOCK
) -> OperatingBudget:
    """A RedisBudget for portal `key` when `redis_url` is set, else a per-process budget."""
    if not redis_url:
        return OperatingBudget(clock=clock)
    import redis

    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    except ValueError:
        raise ConfigError("B24APP_REDIS_URL must look like redis://host:6379/0") from None
    return RedisBudget(client, key, clock=clock)
