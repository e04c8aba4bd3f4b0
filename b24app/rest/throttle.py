"""Client-side limits: the portal's leaky bucket mirrored (per process or in Redis) at a rate
learned from the portal's refusals, and a per-method operating-time budget, so the client slows
down before Bitrix24 says no - and, when others on the portal spend part of its budget, settles
on what they leave.

https://apidocs.bitrix24.com/limits.html
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from b24app.config import RateLimit
from b24app.errors import ConfigError
from b24app.rest.adaptive import (
    MAX_CUT,
    UNDERSHOOT,
    Shape,
    Slot,
    State,
    at_least,
    refused,
    take,
)
from b24app.rest.clock import SYSTEM_CLOCK, Clock
from b24app.rest.response import Time

log = logging.getLogger("b24app.rest")


class RateBucket(Protocol):
    """A leaky bucket shared by everything that calls one portal, at a rate learned from the
    portal's refusals (see `b24app.rest.adaptive`)."""

    def take(self) -> Slot:
        """Reserve the next request slot; wait `slot.wait` seconds before sending."""
        ...

    def refused(self, slot: Slot) -> None:
        """The portal answered the request sent in `slot` with QUERY_LIMIT_EXCEEDED."""
        ...

    def at_least(self, evidence: Sequence[tuple[float, float]]) -> None:
        """Others sent at least `requests` requests within the last `age` seconds, for each
        (requests, age) pair (the portal's newest leads are the evidence)."""
        ...

    @property
    def rate(self) -> float:
        """The drain rate (requests/s) this bucket allows now."""
        ...


class _CutLog:
    """Says when a portal's learned rate drops: a warning at most once a minute, unless the rate
    fell by another tenth since the last one; debug otherwise."""

    QUIET_SECONDS = 60.0

    def __init__(self, key: str, ceiling: float, clock: Clock) -> None:
        self._key = key
        self._ceiling = ceiling
        self._clock = clock
        self._said: tuple[float, float] | None = None  # (when, rate) of the last warning

    def cut(self, before: float, after: float) -> None:
        """Report a refusal that moved the rate from `before` to `after`."""
        if after >= before:
            return
        now = self._clock.monotonic()
        said = self._said
        loud = said is None or now - said[0] >= self.QUIET_SECONDS or after < 0.9 * said[1]
        if loud:
            self._said = (now, after)
        log.log(
            logging.WARNING if loud else logging.DEBUG,
            "portal %s is busy (QUERY_LIMIT_EXCEEDED): sending at most %.2f requests/s "
            "(was %.2f, plan %.2f); others on the portal spend the rest",
            self._key,
            after,
            before,
            self._ceiling,
        )


class LocalBucket:
    """The bucket for one process, safe across threads (one `adaptive.State` under a lock)."""

    def __init__(
        self,
        rate: RateLimit,
        *,
        clock: Clock = SYSTEM_CLOCK,
        adaptive: bool = True,
        key: str = "",
        rng: random.Random | None = None,
    ) -> None:
        self.shape = Shape.of(rate, adaptive=adaptive)
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._state = State.start(self.shape, clock.monotonic())
        self._log = _CutLog(key.removeprefix("b24app:rate:"), self.shape.ceiling, clock)

    @property
    def rate(self) -> float:
        """The drain rate this process allows itself now."""
        return self._state.rate

    def take(self) -> Slot:
        """Reserve the next slot."""
        with self._lock:
            now = self._clock.monotonic()
            self._state, slot = take(self._state, self.shape, now, self._rng.random())
        return slot

    def refused(self, slot: Slot) -> None:
        """Learn from a refusal: the portal's bucket is full, others spend part of it."""
        with self._lock:
            before = self._state.rate
            self._state = refused(self._state, self.shape, slot, self._clock.monotonic())
            after = self._state.rate
            self._log.cut(before, after)

    def at_least(self, evidence: Sequence[tuple[float, float]]) -> None:
        """Add what others' counted requests left to the mirror (`adaptive.at_least`)."""
        with self._lock:
            self._state = at_least(self._state, self.shape, self._clock.monotonic(), evidence)


# `adaptive.take` and `adaptive.refused`, atomic in Redis and on Redis's clock, so every process
# and machine calling the portal shares one mirror and one learned rate. The state is a hash
# (level, at, rate, gen, since). ARGV: op ('take' | 'refused' | 'atleast'), capacity, cap, ceiling,
# growth, floor, adaptive (1/0), undershoot, max cut, ttl ms, then for 'take' the jitter draw,
# for 'refused' the slot's gen and level, for 'atleast' (requests, age) pairs.
# Returns {wait, gen, level, rate} as strings (Lua numbers would be truncated to integers).
_ADAPTIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local capacity, cap = tonumber(ARGV[2]), tonumber(ARGV[3])
local ceiling, growth, floor = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local adaptive = ARGV[7] == '1'
local undershoot, max_cut = tonumber(ARGV[8]), tonumber(ARGV[9])
local s = redis.call('HMGET', KEYS[1], 'level', 'at', 'rate', 'gen', 'since')
local level = tonumber(s[1]) or 0
local at = tonumber(s[2]) or now
local rate = math.min(tonumber(s[3]) or ceiling, ceiling)  -- learned under another plan?
local gen = tonumber(s[4]) or 0
local since = tonumber(s[5]) or now
-- drained
local left = level - rate * math.max(0, now - at)
if left > 0 then
  level = left
else
  since = math.max(since, at + level / rate)
  level = 0
end
at = math.max(now, at)
local wait, slot_level = 0, 0
if ARGV[1] == 'take' then
  wait = math.max(0, (level + 1 - cap) / rate)
  if wait > 0 then
    wait = wait + tonumber(ARGV[11]) / rate
  end
  slot_level = level + 1 - rate * wait
  level = level + 1
  if wait > 0 and adaptive then
    rate = math.min(ceiling, rate + growth / rate)
  end
elseif ARGV[1] == 'atleast' then
  -- adaptive.at_least: (requests, age) pairs from ARGV[11]; the most left of them joins
  local left = 0
  for i = 11, #ARGV - 1, 2 do
    left = math.max(left, tonumber(ARGV[i]) - rate * math.max(0, tonumber(ARGV[i + 1])))
  end
  slot_level = math.max(level, math.min(level + left, capacity))
  level = slot_level
elseif tonumber(ARGV[11]) == gen then
  local span = math.max(now - since, 1 / rate)
  -- adaptive._first_burst: the first refusal within a drain time is a level, not a rate
  if adaptive and not (gen == 0 and span < capacity / ceiling) then
    local missed = math.max(0, capacity - tonumber(ARGV[12]))
    local measured = (rate - missed / span) * (1 - undershoot)
    rate = math.max(rate * (1 - max_cut), measured, floor)
  end
  level = math.max(level, capacity)
  gen = gen + 1
  since = at
else
  return {'0', tostring(gen), '0', string.format('%.9f', rate)}
end
redis.call('HSET', KEYS[1], 'level', string.format('%.9f', level), 'at', string.format('%.6f', at),
           'rate', string.format('%.9f', rate), 'gen', tostring(gen),
           'since', string.format('%.6f', since))
redis.call('PEXPIRE', KEYS[1], ARGV[10])
return {string.format('%.9f', wait), tostring(gen), string.format('%.9f', slot_level),
        string.format('%.9f', rate)}
"""

# How long Redis keeps a portal's learned rate after its last request: an hour without traffic
# and the next run starts again from the plan's rate.
_REMEMBER_MS = 3_600_000


class RedisBucket:
    """The bucket and learned rate held in Redis under `key`; a local bucket if Redis fails."""

    def __init__(
        self,
        client: Any,
        key: str,
        rate: RateLimit,
        *,
        clock: Clock = SYSTEM_CLOCK,
        adaptive: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.shape = Shape.of(rate, adaptive=adaptive)
        self._key = key
        self._script = client.register_script(_ADAPTIVE)
        self._rng = rng or random.Random()
        self._fallback = LocalBucket(rate, clock=clock, adaptive=adaptive, key=key, rng=self._rng)
        self._log = _CutLog(key.removeprefix("b24app:rate:"), self.shape.ceiling, clock)
        self._rate = self.shape.ceiling
        self._warned = False

    @property
    def rate(self) -> float:
        """The shared rate as of this process's last call to Redis."""
        return self._rate

    def _run(self, *args: str) -> list[Any] | None:
        import redis

        shape = self.shape
        argv = [
            args[0],
            repr(shape.capacity),
            repr(shape.cap),
            repr(shape.ceiling),
            repr(shape.growth),
            repr(shape.floor),
            "1" if shape.adaptive else "0",
            repr(UNDERSHOOT),
            repr(MAX_CUT),
            str(_REMEMBER_MS),
            *args[1:],
        ]
        try:
            return list(self._script(keys=[self._key], args=argv))
        except redis.RedisError as exc:
            if not self._warned:
                log.warning(
                    "Redis throttle unavailable (%s); limiting this process only",
                    type(exc).__name__,
                )
                self._warned = True
            return None

    def take(self) -> Slot:
        """Reserve the next slot in Redis."""
        answer = self._run("take", repr(self._rng.random()))
        if answer is None:
            return self._fallback.take()
        wait, generation, level, rate = answer
        self._rate = float(rate)
        return Slot(wait=float(wait), generation=int(generation), level=float(level))

    def refused(self, slot: Slot) -> None:
        """Teach every process sharing the bucket from this refusal."""
        before = self._rate
        answer = self._run("refused", str(slot.generation), repr(slot.level))
        if answer is None:
            self._fallback.refused(slot)
            return
        self._rate = float(answer[3])
        self._log.cut(before, self._rate)

    def at_least(self, evidence: Sequence[tuple[float, float]]) -> None:
        """Add what others' counted requests left to the shared mirror."""
        pairs = [repr(float(value)) for pair in evidence for value in pair]
        if not pairs:
            return
        answer = self._run("atleast", *pairs)
        if answer is None:
            self._fallback.at_least(evidence)
            return
        self._rate = float(answer[3])


def make_bucket(
    rate: RateLimit,
    *,
    key: str,
    redis_url: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
    adaptive: bool = True,
    rng: random.Random | None = None,
) -> RateBucket:
    """A RedisBucket when `redis_url` is set, else a LocalBucket."""
    if not redis_url:
        return LocalBucket(rate, clock=clock, adaptive=adaptive, key=key, rng=rng)
    import redis

    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    except ValueError:
        raise ConfigError("B24APP_REDIS_URL must look like redis://host:6379/0") from None
    return RedisBucket(client, f"b24app:rate:{key}", rate, clock=clock, adaptive=adaptive, rng=rng)


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
