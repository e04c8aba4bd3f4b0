"""Bitrix24's two REST limits: the per-portal leaky bucket and per-method operating time.

https://apidocs.bitrix24.com/limits.html
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.errors import ApiError

MINUTE_BUCKETS = 10
BUCKET_SECONDS = 60.0


@dataclass(frozen=True)
class Plan:
    """A tariff's limits. `time_scale` > 1 fast-forwards time (drain rate up, windows shorter)."""

    name: str
    rate: float  # Y: requests drained from the bucket per second
    burst: int  # X: the counter may reach this; one more request is rejected
    time_scale: float = 1.0
    operating_limit: float = 480.0  # seconds of method time per window (10 buckets)

    @property
    def bucket_seconds(self) -> float:
        """Wall-clock length of one operating-time bucket (one minute at scale 1)."""
        return BUCKET_SECONDS / self.time_scale


PLANS: dict[str, Plan] = {
    "standard": Plan("standard", rate=2.0, burst=50),
    "enterprise": Plan("enterprise", rate=5.0, burst=250),
    # The standard plan fast-forwarded 25x: 50 req/s after a burst of 50, 24 s windows.
    "fast": Plan("fast", rate=50.0, burst=50, time_scale=25.0),
}


def plan_named(name: str) -> Plan:
    """The plan called `name`; a ValueError naming the choices otherwise."""
    try:
        return PLANS[name]
    except KeyError:
        choices = ", ".join(PLANS)
        raise ValueError(f"unknown plan {name!r} (choose {choices})") from None


def query_limit_error() -> ApiError:
    """The 503 every request over the bucket gets."""
    return ApiError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503)


def operation_time_error() -> ApiError:
    """The 429 a method over its operating-time budget gets: error and text only, no `time`
    (rest/classes/general/rest.php:213; `time` is added to answers that succeed, :731-762)."""
    return ApiError("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429)


class LeakyBucket:
    """The per-portal request counter: +1 per HTTP request, drains `rate`/s, rejects past `burst`.

    A rejected request does not fill the bucket, so a client that backs off recovers.
    """

    def __init__(self, plan: Plan, clock: Callable[[], float]) -> None:
        self._plan = plan
        self._clock = clock
        self._level = 0.0
        self._last = clock()
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        """Count one request; False (and no count) when the bucket is full."""
        with self._lock:
            now = self._clock()
            self._level = max(0.0, self._level - (now - self._last) * self._plan.rate)
            self._last = now
            if self._level + 1.0 > self._plan.burst + 1e-3:  # tolerate clock float noise
                return False
            self._level += 1.0
            return True

    @property
    def level(self) -> float:
        """The counter as of the last request (for stats)."""
        return self._level

    def level_now(self) -> float:
        """The counter now: the last request's level, drained since (benches' floors)."""
        with self._lock:
            return max(0.0, self._level - (self._clock() - self._last) * self._plan.rate)


# Whose time is summed: (auth type "oauth" | "webhook", the app's client id or the webhook's id,
# method): rest/lib/engine/access/loadlimiter.php:197-203 (getKey),
# rest/classes/general/rest.php:201-214.
MeterKey = tuple[str, str, str]
# Calls are timed per HTTP request; a key's time in one request is stored only when it is over
# 0.1 s (loadlimiter.php:27 $minimalFixTime, :331 finalize), and while the request runs only
# single calls over 0.1 s count (:288-301 getRestTime).
MINIMAL_FIX_TIME = 0.1
# `batch` itself is never timed or blocked, only its commands (loadlimiter.php:31-33,174-180).
IGNORED_METHODS = frozenset({"batch"})


class RequestMeter:
    """The method time one HTTP request spent, per key, until the request ends.

    Bitrix24 writes it to the shared buckets in a background job after the answer
    (loadlimiter.php:141-165,312-355), so a request never sees its own short calls.
    """

    def __init__(self) -> None:
        self.calls: dict[MeterKey, list[float]] = {}

    def record(self, key: MeterKey, seconds: float) -> None:
        """One finished call of `key`."""
        if key[2] not in IGNORED_METHODS:
            self.calls.setdefault(key, []).append(seconds)

    def pending(self, key: MeterKey) -> float:
        """What this request adds to `key` while it runs: its single calls over 0.1 s."""
        return sum(s for s in self.calls.get(key, ()) if s > MINIMAL_FIX_TIME)


class OperatingTime:
    """Method execution time summed in ten one-minute buckets (scaled by the plan), per key.

    A key whose sum is over the limit is blocked: the *next* call gets 429 until old buckets
    fall out of the window. The call that crosses the limit still runs.
    """

    def __init__(self, plan: Plan, clock: Callable[[], float]) -> None:
        self._plan = plan
        self._clock = clock
        self._buckets: dict[MeterKey, dict[int, float]] = {}
        self._lock = threading.Lock()

    def _live(self, key: MeterKey, now: float) -> dict[int, float]:
        current = int(now // self._plan.bucket_seconds)
        buckets = self._buckets.setdefault(key, {})
        for index in [i for i in buckets if i <= current - MINUTE_BUCKETS]:
            del buckets[index]
        return buckets

    def check(self, key: MeterKey, meter: RequestMeter | None = None) -> None:
        """Raise OPERATION_TIME_LIMIT when `key` is blocked right now (loadlimiter.php:172-195)."""
        if key[2] in IGNORED_METHODS:
            return
        if self.used(key, meter) > self._plan.operating_limit:
            raise operation_time_error()

    def charge(self, key: MeterKey, seconds: float) -> float:
        """Add `seconds` of simulated method time; the key's total over the window."""
        with self._lock:
            now = self._clock()
            buckets = self._live(key, now)
            index = int(now // self._plan.bucket_seconds)
            buckets[index] = buckets.get(index, 0.0) + seconds
            return sum(buckets.values())

    def finish(self, meter: RequestMeter) -> None:
        """The request ended: store each key's time when it is over 0.1 s (loadlimiter.php:331)."""
        for key, calls in meter.calls.items():
            total = sum(calls)
            if total > MINIMAL_FIX_TIME:
                self.charge(key, total)
        meter.calls.clear()

    def used(self, key: MeterKey, meter: RequestMeter | None = None) -> float:
        """The key's time over the window (`time.operating`), with this request's long calls."""
        with self._lock:
            stored = sum(self._live(key, self._clock()).values())
        return stored + (meter.pending(key) if meter is not None else 0.0)

    def reset_at(self, key: MeterKey) -> int:
        """When part of the key's budget is released: the oldest bucket's expiry (unix s)."""
        with self._lock:
            now = self._clock()
            buckets = self._live(key, now)
            oldest = min(buckets) if buckets else int(now // self._plan.bucket_seconds)
        return int((oldest + MINUTE_BUCKETS) * self._plan.bucket_seconds)


_READ_SUFFIXES = (".get", ".fields", ".mode.get")
_WRITE_SUFFIXES = (".add", ".update", ".set", ".delete")


def simulated_cost(method: str, result: object) -> float:
    """Seconds of server time a call "costs": writes > reads; lists grow with the rows returned.

    Bitrix24 reports the real execution time; the sandbox answers in microseconds, so it charges
    figures of the order the docs' examples show (a 50-row `crm.lead.list` ~0.055 s).
    """
    if method.endswith(".list"):
        rows = len(result) if isinstance(result, list) else 1
        if isinstance(result, dict):
            inner = next(iter(result.values()), None)
            rows = len(inner) if isinstance(inner, list) else 1
        return 0.02 + 0.0007 * rows
    if method.endswith(_WRITE_SUFFIXES):
        return 0.03
    if method.endswith(_READ_SUFFIXES):
        return 0.005
    return 0.003
