"""A chaos run's progress and its longest stall (the longest time in which nothing moved).

What counts as movement is read from the portal's own records (the highest deal, contact and
company id, through the sandbox core, never b24app's client) and from the job's lead counts in
the journal: any change in either is progress, so a takeover that converts nothing for a minute
shows as a one-minute stall however busy the workers look.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from demo.checks import Query

ENTITY_LISTS = ("crm.deal.list", "crm.contact.list", "crm.company.list")


def portal_marks(query: Query) -> tuple[int, ...]:
    """The highest deal, contact and company id on the portal now (0 when there is none)."""
    marks = []
    for method in ENTITY_LISTS:
        found = query(method, {"order": {"ID": "DESC"}, "select": ["ID"], "start": -1}) or []
        marks.append(int(found[0]["ID"]) if found else 0)
    return tuple(marks)


@dataclass(frozen=True)
class Stall:
    """A time without progress: from `start` for `seconds` (seconds from the run's start)."""

    start: float = 0.0
    seconds: float = 0.0

    def __str__(self) -> str:
        return f"{self.seconds:.1f} s (from {self.start:.1f} s)"


class Progress:
    """Observations of a run's state; the longest stall between changes."""

    def __init__(self, at: float = 0.0) -> None:
        self._state: Hashable = None
        self._since = at  # when the state last changed
        self._now = at
        self.longest = Stall(at, 0.0)

    def observe(self, at: float, state: Hashable) -> bool:
        """Note the state seen at `at`; True when it moved since the last observation."""
        self._now = max(self._now, at)
        if state == self._state:
            return False
        self._state = state
        self._close(at)
        self._since = at
        return True

    def end(self, at: float) -> Stall:
        """The run ended at `at` (finishing counts as progress); the longest stall."""
        self._now = max(self._now, at)
        self._close(at)
        self._since = at
        return self.longest

    def quiet(self) -> float:
        """Seconds since the state last moved, as of the latest observation."""
        return self._now - self._since

    def _close(self, at: float) -> None:
        if at - self._since > self.longest.seconds:
            self.longest = Stall(self._since, at - self._since)
