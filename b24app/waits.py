"""Why a pending conversion job has not started: the rule the app page puts into words.

The journal lets one job per portal run at a time (`Journal._take_portal`); the queue takes
pending jobs oldest first and a job that ran a slice (`max_leads`) goes back to pending until its
next slice. So a pending job waits behind the running job, else behind an older pending job, else
for its next slice or for a worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from b24app.store.journal import PENDING, RUNNING, JobRow


class WaitReason(StrEnum):
    """What a pending job waits for."""

    RUNNING = "running"  # another job of the portal is running
    QUEUED = "queued"  # an older pending job goes first
    NEXT_SLICE = "next_slice"  # it ran a slice and continues with the next one
    WORKER = "worker"  # nothing ahead: a worker has yet to take it


@dataclass(frozen=True)
class Waiting:
    """Why `job_id` waits, and the job it waits behind (None when it waits for no job)."""

    job_id: int
    reason: WaitReason
    behind: int | None = None


def why_waiting(job: JobRow, live: Iterable[JobRow]) -> Waiting | None:
    """Why `job` waits, given the portal's running and pending jobs; None unless it is pending."""
    if job.status != PENDING:
        return None
    others = [other for other in live if other.id != job.id]
    running = sorted(other.id for other in others if other.status == RUNNING)
    if running:
        return Waiting(job.id, WaitReason.RUNNING, running[0])
    older = sorted(other.id for other in others if other.status == PENDING and other.id < job.id)
    if older:
        return Waiting(job.id, WaitReason.QUEUED, older[0])
    if job.started_at is not None:
        return Waiting(job.id, WaitReason.NEXT_SLICE)
    return Waiting(job.id, WaitReason.WORKER)
