"""A noisy neighbour: another app on the same portal, spending part of its REST budget.

Bitrix24 keeps one leaky bucket per portal, shared by every app, webhook and script on it
(https://apidocs.bitrix24.com/limits.html), so a busy portal is normal life. The neighbour is a
thread calling a cheap read (`profile`) through a webhook of its own at `fraction` of the plan's
drain rate, one request every 1/rate seconds (+-20%, seeded). A refused request (503
QUERY_LIMIT_EXCEEDED) is sent again a second later and the schedule catches up afterwards (at most
five requests behind), like a script with a retry: over time it takes its share whatever else
runs. It counts what it sent, what the portal accepted and what it refused.

    python -m chaos --neighbour 0.4      # the chaos run beside a neighbour spending 40%
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests

METHOD = "profile"
RETRY_SECONDS = 1.0
MAX_BEHIND = 5  # requests the schedule may fall behind and send back to back to catch up


@dataclass(frozen=True)
class NeighbourStats:
    """What the neighbour did."""

    sent: int
    accepted: int
    refused: int  # 503 QUERY_LIMIT_EXCEEDED
    other: int  # anything else (errors, dropped connections)
    seconds: float

    @property
    def rate(self) -> float:
        """Accepted requests per second."""
        return self.accepted / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """One line for a log or a timeline."""
        return (
            f"neighbour: {self.accepted} accepted ({self.rate:.2f}/s), {self.refused} x 503, "
            f"{self.other} other, of {self.sent} sent in {self.seconds:.0f} s"
        )


class Neighbour:
    """Another app calling `url` (an incoming webhook) at `per_second`; `start()`, `stop()`."""

    def __init__(
        self,
        url: str,
        *,
        per_second: float,
        seed: int = 1,
        retry: float = RETRY_SECONDS,
        timeout: float = 10.0,
    ) -> None:
        if per_second <= 0:
            raise ValueError("a neighbour needs a positive rate")
        self._url = url.rstrip("/") + "/" + METHOD
        self._period = 1.0 / per_second
        self._rng = random.Random(seed)
        self._retry = retry
        self._timeout = timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counts = {"sent": 0, "accepted": 0, "refused": 0, "other": 0}
        self._started = 0.0
        self._stopped: float | None = None
        self._thread = threading.Thread(target=self._loop, name="neighbour", daemon=True)

    @classmethod
    def beside(cls, portal: Any, fraction: float, *, seed: int = 1) -> Neighbour:
        """A neighbour on a sandbox portal, with a webhook of its own, spending `fraction` of
        the portal plan's drain rate."""
        if not 0 < fraction < 1:
            raise ValueError(f"the neighbour's share must be between 0 and 1 (got {fraction})")
        return cls(portal.add_webhook(), per_second=fraction * portal.plan.rate, seed=seed)

    def start(self) -> Neighbour:
        """Start calling in the background."""
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> NeighbourStats:
        """Stop calling; what it did."""
        self._stop.set()
        self._thread.join(timeout=self._timeout + 5)
        if self._stopped is None:
            self._stopped = time.monotonic()
        return self.stats()

    def __enter__(self) -> Neighbour:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> NeighbourStats:
        """What it did so far."""
        end = self._stopped if self._stopped is not None else time.monotonic()
        with self._lock:
            counts = dict(self._counts)
        return NeighbourStats(seconds=max(0.0, end - self._started), **counts)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _loop(self) -> None:
        with requests.Session() as session:
            due = time.monotonic() + self._rng.uniform(0, self._period)
            while not self._stop.is_set():
                now = time.monotonic()
                if now < due:
                    self._stop.wait(due - now)
                    continue
                answer = self._call(session)
                if answer == "refused":
                    self._stop.wait(self._retry)  # the same request again, a second later
                    continue
                due = max(due, now - MAX_BEHIND * self._period)
                due += self._period * self._rng.uniform(0.8, 1.2)
        self._stopped = time.monotonic()

    def _call(self, session: requests.Session) -> str:
        self._count("sent")
        try:
            http = session.post(self._url, json={}, timeout=self._timeout)
            error = http.json().get("error") if http.status_code != 200 else None
        except (requests.RequestException, ValueError):
            self._count("other")
            return "other"
        if http.status_code == 200:
            self._count("accepted")
            return "accepted"
        if error == "QUERY_LIMIT_EXCEEDED":
            self._count("refused")
            return "refused"
        self._count("other")
        return "other"


HELP = (
    "run a noisy neighbour beside b24app: another app spending this fraction of the portal's "
    "REST budget (0 < FRACTION < 1, e.g. 0.4)"
)


@contextlib.contextmanager
def beside_every_sandbox(
    fraction: float | None, *, seed: int = 1, say: Callable[[str], None] = print
) -> Iterator[None]:
    """While open, every sandbox portal started in this process gets a neighbour spending
    `fraction` of its budget, stopped (and reported through `say`) when the portal stops.

    The chaos scenario starts its own portal; this is how `--neighbour` reaches it without the
    scenario knowing. `fraction` None: nothing happens.
    """
    if fraction is None:
        yield
        return
    if not 0 < fraction < 1:
        raise ValueError(f"--neighbour must be between 0 and 1 (got {fraction})")
    from sandbox.server import Sandbox

    start, stop = Sandbox.start, Sandbox.stop
    running: dict[int, Neighbour] = {}

    def start_with_neighbour(portal: Sandbox) -> Sandbox:
        started = start(portal)
        if id(portal) not in running:
            running[id(portal)] = Neighbour.beside(portal, fraction, seed=seed).start()
            say(f"neighbour: spending {fraction:.0%} of the portal's budget ({METHOD} calls)")
        return started

    def stop_neighbour_first(portal: Sandbox) -> None:
        neighbour = running.pop(id(portal), None)
        if neighbour is not None:
            say(neighbour.stop().line())
        stop(portal)

    Sandbox.start = start_with_neighbour  # type: ignore[method-assign]
    Sandbox.stop = stop_neighbour_first  # type: ignore[method-assign]
    try:
        yield
    finally:
        Sandbox.start, Sandbox.stop = start, stop  # type: ignore[method-assign]
        for neighbour in running.values():
            neighbour.stop()
