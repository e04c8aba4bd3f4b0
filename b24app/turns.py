"""Whose turn it is on a portal: which of its jobs runs next, and why a job waits.

One conversion runs per portal at a time (the portal lock, `b24app.locks`). Among the jobs waiting
for it the rule is:

1. a running job keeps the portal until its slice ends (B24APP_SLICE_LEADS leads);
2. jobs an admin started (the app page's "convert", kind `app`; a CLI run, kind `convert`, holds
   the lock itself) go before automatic work, oldest first: an admin never waits behind events;
3. then the automatic job (kind `event` or `sweep`: the leads events and sweeps brought in, one
   job record gathering them), oldest first, once it is *due*: its coalescing window
   (B24APP_EVENT_WINDOW) has passed since it opened, or it holds a full batch
   (B24APP_EVENT_BATCH leads), or it holds a request's worth of leads (MAX_BATCH) and none
   joined it for QUIET seconds (a burst that stopped - an import - waits no longer).

Pure: the caller passes the portal's live jobs (`Journal.live_jobs`) and the time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from b24app.store.journal import AUTO_KINDS, FINISHED, INTERRUPTED, PENDING, RUNNING, JobRow
from b24app.vocabulary import MAX_BATCH

# A gathering job holding a request's worth of leads (MAX_BATCH) is due once no lead joined it
# for this long: an import's events come in batches of 50 at the portal's pace (2 requests/s),
# well inside it; a burst that stopped is converted without waiting out the window.
QUIET = 1.0


def automatic(job: JobRow) -> bool:
    """Whether the job is automatic work (events, sweeps) rather than an admin's."""
    return job.kind in AUTO_KINDS


def due_at(job: JobRow, window: float) -> dt.datetime:
    """When an automatic job's coalescing window ends (an admin's job is due when created):
    `window` after it opened, or QUIET after a lead last joined it once it holds MAX_BATCH."""
    if not automatic(job):
        return job.created_at
    end = job.created_at + dt.timedelta(seconds=window)
    joined = job.heartbeat_at if job.started_at is None else None  # `Journal.gather` sets it
    if joined is not None and len(job.lead_ids or ()) >= MAX_BATCH:
        end = min(end, joined + dt.timedelta(seconds=QUIET))
    return end


def due(job: JobRow, *, now: dt.datetime, window: float, batch: int) -> bool:
    """Whether a pending job may run now: an admin's at once, an automatic one once its window
    has passed, it holds a full batch, or it ran before (a paused slice goes on)."""
    if not automatic(job) or job.started_at is not None:
        return True
    return len(job.lead_ids or ()) >= batch or now >= due_at(job, window)


def order(jobs: Iterable[JobRow]) -> list[JobRow]:
    """Jobs in the order they get the portal (rule 2 then 3: admin first, then by id)."""
    return sorted(jobs, key=lambda job: (automatic(job), job.id))


def next_job(
    jobs: Sequence[JobRow],
    *,
    now: dt.datetime,
    window: float,
    batch: int,
    named: Iterable[int] = (),
    skip: Iterable[int] = (),
) -> JobRow | None:
    """The job to run next among the portal's live jobs: a due pending one by the rule, or one
    of `named` that is not pending (an interrupted or abandoned job a task or the recovery
    asked for); never one of `skip`. A gathering job runs when due, whoever asks."""
    asked, left_out = set(named), set(skip)
    runnable = [
        job
        for job in jobs
        if job.id not in left_out
        and job.status not in FINISHED
        and (
            due(job, now=now, window=window, batch=batch)
            if job.status == PENDING
            else job.id in asked
        )
    ]
    found = order(runnable)
    return found[0] if found else None


def next_due(jobs: Sequence[JobRow], *, window: float) -> dt.datetime | None:
    """When the earliest automatic job not yet due becomes due (None: none waits for that)."""
    times = [
        due_at(job, window)
        for job in jobs
        if job.status == PENDING and automatic(job) and job.started_at is None
    ]
    return min(times) if times else None


@dataclass(frozen=True)
class Wait:
    """Why a job is not running: `place` in the portal's line (1 = next), the jobs `behind`
    which it waits (the running one first), `reason` (running | line | gathering | worker |
    interrupted), `until` (when an automatic job's window ends) and `text` (English)."""

    place: int
    behind: tuple[int, ...]
    reason: str
    until: dt.datetime | None = None
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for the page."""
        return {
            "place": self.place,
            "behind": list(self.behind),
            "reason": self.reason,
            "until": self.until.isoformat() if self.until else None,
            "text": self.text,
        }


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def wait_of(
    job: JobRow, jobs: Sequence[JobRow], *, now: dt.datetime, window: float, batch: int
) -> Wait | None:
    """Why `job` waits, given the portal's live jobs (None when it runs or has finished)."""
    if job.status in FINISHED or job.status == RUNNING:
        return None
    running = [j for j in jobs if j.status == RUNNING and j.id != job.id]
    line = [j for j in order(j for j in jobs if j.status == PENDING) if j.id != job.id]
    ahead = [j for j in line if order([j, job])[0] is j]
    behind = tuple(j.id for j in [*running, *ahead])
    place = len(behind) + 1
    if job.status == INTERRUPTED:
        return Wait(place, behind, "interrupted", text="stopped; it is retried automatically")
    if automatic(job) and not due(job, now=now, window=window, batch=batch):
        until = due_at(job, window)
        return Wait(
            place,
            behind,
            "gathering",
            until,
            f"gathering leads from events until {until:%H:%M:%S} UTC, then converted together",
        )
    if running:
        kinds = "an admin's" if not automatic(running[0]) else "automatic"
        text = f"behind job {running[0].id} ({kinds}, running)"
        if ahead:
            text += f" and {len(ahead)} more; {_ordinal(place)} in line"
        return Wait(place, behind, "running", text=text)
    if ahead:
        return Wait(
            place,
            behind,
            "line",
            text=f"behind job {ahead[0].id}; {_ordinal(place)} in line",
        )
    return Wait(place, behind, "worker", text="next in line; waiting for a free worker")


def job_wait(
    journal: Any, job: JobRow, *, window: float, batch: int, now: dt.datetime | None = None
) -> dict[str, Any] | None:
    """Why `job` waits, as the app page shows it (`Wait.to_dict()`; None when it does not wait):
    reads the portal's live jobs from `journal` (a `Journal`)."""
    from b24app.store.db import utc_now

    found = wait_of(job, journal.live_jobs(), now=now or utc_now(), window=window, batch=batch)
    return found.to_dict() if found is not None else None
