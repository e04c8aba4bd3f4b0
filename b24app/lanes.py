"""Lanes: how one worker process serves many portals at once.

A conversion spends most of its time waiting for its portal's rate limit (2 requests/s on a
standard plan), so a worker thread that runs one portal's job to the end serves nobody else
meanwhile. `Lanes` gives every portal with work a lane of its own - a thread that holds that
portal's turn, sleeps on that portal's bucket and wakes for that portal only - up to `size` lanes
per process. N portals then progress together, bounded by the CPU and each portal's own limit,
not by the worker's thread count.

Fairness: lanes are handed out first come, first served; one portal holds at most one lane; when
portals wait for a lane (`crowded`) the running ones give theirs up after the slice in hand and
queue again at the back (see `b24app.jobs`). `size=0` runs every submission inline in the caller
(immediate mode, tests).

A lane is in memory only: if the process dies its work is in the journal (leases, recovery).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger("b24app.jobs")


class Lanes:
    """Up to `size` threads, each running `run(key, *args)` for one key at a time."""

    def __init__(self, size: int, run: Callable[..., Any], *, name: str = "lane") -> None:
        self.size = max(0, int(size))
        self._run = run
        self._name = name
        self._cond = threading.Condition()
        self._waiting: deque[Hashable] = deque()
        self._args: dict[Hashable, list[tuple[Any, ...]]] = {}
        self._busy: set[Hashable] = set()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"Lanes({self.size})"

    @property
    def inline(self) -> bool:
        """Whether submissions run in the caller (no threads)."""
        return self.size == 0

    def submit(self, key: Hashable, *args: Any) -> None:
        """Run `run(key, *args)` in a lane; a key already waiting or running keeps one turn per
        distinct `args`, queued behind its current one."""
        if self.inline:
            self._run(key, *args)
            return
        with self._cond:
            if self._closed:
                return
            pending = self._args.setdefault(key, [])
            if args not in pending:
                pending.append(args)
            if key not in self._busy and key not in self._waiting:
                self._waiting.append(key)
            if self._idle == 0 and len(self._threads) < self.size:
                thread = threading.Thread(
                    target=self._serve, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._cond.notify()

    @property
    def closed(self) -> bool:
        """Whether `close` was called (running turns should end after the slice in hand)."""
        return self._closed

    def crowded(self) -> bool:
        """Whether some key waits for a lane while every lane is taken."""
        with self._cond:
            return bool(self._waiting) and self._idle == 0 and len(self._threads) >= self.size

    def busy(self) -> int:
        """How many keys run now."""
        with self._cond:
            return len(self._busy)

    def close(self, timeout: float | None = None) -> bool:
        """Take no more work; wait up to `timeout` for the running turns. True when none runs."""
        with self._cond:
            self._closed = True
            self._waiting.clear()
            self._args.clear()
            self._cond.notify_all()
            return self._cond.wait_for(lambda: not self._busy, timeout=timeout)

    def _serve(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                while not self._waiting and not self._closed:
                    self._cond.wait()
                self._idle -= 1
                if self._closed:
                    return
                key = self._waiting.popleft()
                args = self._args[key].pop(0)
                self._busy.add(key)
            try:
                self._run(key, *args)
            except Exception:  # a lane outlives a failed turn; the journal keeps the job
                log.exception("lane %s: turn for %s failed", threading.current_thread().name, key)
            finally:
                with self._cond:
                    self._busy.discard(key)
                    if self._args.get(key):
                        self._waiting.append(key)  # more turns asked for: back of the line
                    else:
                        self._args.pop(key, None)
                    self._cond.notify_all()
