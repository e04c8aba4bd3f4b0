"""Which calls may be repeated, and how long to wait between attempts.

A read can always be repeated. A write is repeated only when Bitrix24 guarantees it did not run:
503 QUERY_LIMIT_EXCEEDED and 429 OPERATION_TIME_LIMIT reject before executing
(https://apidocs.bitrix24.com/limits.html), as does a connection that was never made. After a
timeout, a dropped connection or a 5xx the outcome of a write is unknown.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

# Methods that only read, beyond the suffix rule below.
_READS = frozenset(
    {
        "crm.settings.mode.get",
        "crm.status.list",
        "crm.duplicate.findbycomm",
        "profile",
        "app.info",
        "user.admin",
        "user.access",
        "user.current",
        "scope",
        "methods",
        "method.get",
        "server.time",
        "feature.get",
        "event.get",
        "placement.get",
        "crm.enum.fields",
    }
)
_READ_SUFFIXES = (".list", ".get", ".fields", ".search", ".current")
_READ_PREFIXES = ("crm.enum.",)
# Named like reads, but they change state.
_WRITES = frozenset({"event.offline.get"})


def is_read(method: str) -> bool:
    """True when calling `method` changes nothing on the portal, so it can be repeated."""
    name = method.lower().strip()
    if name in _WRITES:
        return False
    return name in _READS or name.endswith(_READ_SUFFIXES) or name.startswith(_READ_PREFIXES)


def all_reads(methods: Iterable[str]) -> bool:
    """True when every method is a read (a batch of reads is a read)."""
    return all(is_read(m) for m in methods)


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter, counted per request (never shared), for
    failures; a busy portal is waited for (see `max_busy_wait`)."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 30.0
    # Longest wait for an OPERATION_TIME_LIMIT block to lift before giving up.
    max_block_wait: float = 660.0
    # 503 QUERY_LIMIT_EXCEEDED is not a failure and costs no attempt: the request is sent again
    # at the bucket's learned rate until it gets through. Only a portal that refuses one request
    # for this long (it lets nothing through: blocked, not busy) makes the call raise.
    max_busy_wait: float = 600.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        ceiling = min(self.cap, self.base * (2 ** (attempt - 1)))
        return rng.uniform(ceiling / 2, ceiling)
