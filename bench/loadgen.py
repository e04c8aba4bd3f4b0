"""A paced (open-loop) HTTP load generator: POST bodies at a fixed rate, keep-alive, threads.

Request i is due at start + i / rate whatever happened to the ones before it, so a slow server
cannot slow the offered load down (no coordinated omission): each request's time to answer is
measured from its due time, not from when a free thread got round to sending it.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Load:
    """What one paced run saw: per-request latencies (s), statuses ("200", "error: ...")."""

    latencies: tuple[float, ...]
    statuses: Counter[str]
    seconds: float

    @property
    def sent(self) -> int:
        """Requests sent (answered or not)."""
        return sum(self.statuses.values())

    @property
    def not_ok(self) -> int:
        """Answers other than 200, plus requests that got no answer."""
        return self.sent - self.statuses.get("200", 0)

    @property
    def rate(self) -> float:
        """Requests answered per second of the run."""
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """The latency below which `fraction` of the answered requests fell (nearest rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
        return ordered[rank]


def paced(
    url: str,
    bodies: Sequence[bytes],
    *,
    rate: float,
    seconds: float,
    threads: int = 16,
    content_type: str = "application/x-www-form-urlencoded",
    timeout: float = 10.0,
) -> Load:
    """POST `bodies` (round robin) to `url` at `rate` per second for `seconds`."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    total = max(1, round(rate * seconds))
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    start = time.perf_counter() + 0.2  # every thread is up before the first request is due

    def worker() -> None:
        connection: http.client.HTTPConnection | None = None
        mine: list[float] = []
        seen: Counter[str] = Counter()
        while True:
            with lock:
                index = next(counter)
            if index >= total:
                break
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(host, port, timeout=timeout)
                connection.request(
                    "POST",
                    path,
                    body=bodies[index % len(bodies)],
                    headers={"Content-Type": content_type},
                )
                response = connection.getresponse()
                response.read()
                mine.append(time.perf_counter() - due)
                seen[str(response.status)] += 1
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                seen[f"error: {type(exc).__name__}"] += 1
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()
        with lock:
            latencies.extend(mine)
            statuses.update(seen)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return Load(tuple(latencies), statuses, max(time.perf_counter() - start, 1e-9))
