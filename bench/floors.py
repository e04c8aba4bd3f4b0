"""The platform floors a run is measured against, from the sandbox's own counters.

Requests: a batch carries at most 50 calls, so a run that executed W writes and R reads needs at
least ceil(W/50) + ceil(R/50) HTTP requests. Time: the portal's leaky bucket lets `burst`
requests through at once and then `rate` per second, so N requests need (N - burst) / rate
seconds. https://apidocs.bitrix24.com/limits.html
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from b24app.config import PLANS
from b24app.rest.retry import is_read

BATCH = 50


@dataclass(frozen=True)
class Usage:
    """What one run cost the portal, as the sandbox counted it."""

    requests: int
    writes: int
    reads: int
    rejected_503: int

    @property
    def request_floor(self) -> int:
        """The fewest HTTP requests that could carry the calls this run executed."""
        return math.ceil(self.writes / BATCH) + math.ceil(self.reads / BATCH)


def time_floor(requests: int, plan: str) -> float:
    """Seconds the leaky bucket of `plan` needs to let `requests` requests through."""
    rate, burst = PLANS[plan]
    return max(0.0, (requests - burst) / rate)


def usage_between(before: Mapping[str, Any], after: Mapping[str, Any]) -> Usage:
    """The usage between two `Sandbox.stats()` snapshots."""
    calls_before = before.get("sub_calls", {})
    writes = reads = 0
    for method, count in after.get("sub_calls", {}).items():
        delta = count - calls_before.get(method, 0)
        if is_read(method):
            reads += delta
        else:
            writes += delta
    return Usage(
        requests=after["http_requests"] - before["http_requests"],
        writes=writes,
        reads=reads,
        rejected_503=after["query_limit_exceeded"] - before["query_limit_exceeded"],
    )


def ratio(value: float, floor: float) -> str:
    """`value / floor` as text (e.g. "1.08x"); "-" when the floor is zero."""
    if floor <= 0:
        return "-"
    return f"{value / floor:.2f}x"
