"""A portal's leaky bucket with a neighbour spending part of it, on the fake clock.

The bucket follows https://apidocs.bitrix24.com/limits.html (+1 per request, drained at the
plan's rate, a request that finds it full is refused and does not count). The neighbour is
another script: one request every `1 / rate` seconds (+-20%, seeded), a refused one sent again a
second later. `Drive.run` sends b24app's requests one after another through a bucket, the way
the conversion loop does, and lets the neighbour's requests in between reach the portal first.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from b24app.rest import RateBucket
from tests.rest.conftest import FakeClock


@dataclass
class PortalBucket:
    """The portal's side: level, drain, refusals."""

    rate: float
    burst: int
    level: float = 0.0
    at: float = 0.0

    def arrive(self, now: float) -> bool:
        """One request arriving at `now`: True when accepted."""
        self.level = max(0.0, self.level - (now - self.at) * self.rate)
        self.at = now
        if self.level + 1.0 > self.burst + 1e-9:
            return False
        self.level += 1.0
        return True


@dataclass
class Neighbour:
    """Another app on the portal, `rate` requests/s, retrying what is refused."""

    rate: float
    seed: int = 1
    retry: float = 1.0
    until: float = float("inf")
    accepted: int = 0
    refused: int = 0
    _due: list[float] = field(default_factory=list)
    _next: float = 0.0
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._next = self._rng.uniform(0, 1 / self.rate) if self.rate else float("inf")

    def until_time(self, portal: PortalBucket, now: float) -> None:
        """Send every request due up to `now`, in time order."""
        while True:
            while self._next <= now and self._next < self.until:
                heapq.heappush(self._due, self._next)
                self._next += (1 / self.rate) * self._rng.uniform(0.8, 1.2)
            if not self._due or self._due[0] > now:
                return
            at = heapq.heappop(self._due)
            if portal.arrive(at):
                self.accepted += 1
            else:
                self.refused += 1
                heapq.heappush(self._due, at + self.retry)


@dataclass
class Drive:
    """b24app's side: requests sent one after another, `work` seconds apart. Times are seconds
    since the drive was made (the portal's clock)."""

    clock: FakeClock
    portal: PortalBucket
    neighbour: Neighbour
    work: float = 0.05
    refusals: list[float] = field(default_factory=list)
    accepted: int = 0
    origin: float = 0.0

    def __post_init__(self) -> None:
        self.origin = self.clock.monotonic()

    def now(self) -> float:
        """Seconds since the drive started."""
        return self.clock.monotonic() - self.origin

    def run(self, bucket: RateBucket, requests: int) -> float:
        """Send until `requests` more were accepted; the (fake) seconds it took."""
        start = self.now()
        target = self.accepted + requests
        while self.accepted < target:
            self.clock.advance(self.work)
            slot = bucket.take()
            self.clock.sleep(slot.wait)
            now = self.now()
            self.neighbour.until_time(self.portal, now)
            if self.portal.arrive(now):
                self.accepted += 1
            else:
                self.refusals.append(now)
                bucket.refused(slot)
        return self.now() - start

    def idle(self, seconds: float) -> None:
        """Send nothing for `seconds` (the neighbour goes on)."""
        self.clock.advance(seconds)
        self.neighbour.until_time(self.portal, self.now())
