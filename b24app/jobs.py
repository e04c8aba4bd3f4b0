"""Background work on Huey: conversion jobs, event-triggered conversions, sweeps, token keep-alive
and the recovery of jobs a crash left behind.

The queue is a SQLite file beside the database by default (no broker to run), Redis when
B24APP_QUEUE_URL=redis://... (many worker machines), in memory and synchronous with
`immediate=True` (unit tests). `Jobs` binds the app's tasks to one Huey instance - no module
globals - so the web (which only enqueues) and `b24app worker` (which runs them) build the same
task names from the same settings.

Rules every task keeps:

* One conversion per portal at a time: a per-portal lock (`b24app.locks`) around every run, and
  the journal's own one-live-job rule behind it. A task that finds its portal busy is scheduled
  again a little later (never dropped silently, at most `BUSY_ATTEMPTS` times; after that the
  sweep and the recovery pass still find its work).
* Fair scheduling: a conversion task converts at most B24APP_SLICE_LEADS leads, then re-enqueues
  its job at the back of the queue, so one huge portal does not hold a worker for hours.
* Events coalesce: a lead event gathers its lead into the portal's open automatic job (no REST
  request; see `b24app.listeners`), whose run is scheduled for when its window
  (B24APP_EVENT_WINDOW) ends, or at once when it holds B24APP_EVENT_BATCH leads, or once a burst
  of 50 or more stopped (`turns.QUIET`). Sweeps add to the same job; a running automatic job
  absorbs the one gathering behind it (`Journal.absorb`), and goes on past its slice while
  nobody waits for the portal (`_nobody_waits`).
* A portal's turn (`_turn`): holding the portal lock, the worker runs the portal's due jobs one
  slice at a time in the order of `b24app.turns` - admin jobs first, then automatic work - and
  re-reads the journal after each slice, so a job that became due meanwhile needs no new task.
  Admin tasks also go first in queues that keep priorities (SQLite, memory).
* In `b24app worker` the turns run in lanes (`b24app.lanes`): one thread per portal with work,
  so a portal waiting on its rate limit does not hold up the others. When portals wait for a
  lane, a turn ends after its slice and the portal queues again at the back.
* Progress lives in the journal (status_counts, job()); Huey stores no results.
* A periodic tick (every minute by default; `b24app worker --tick`) recovers stuck jobs, enqueues
  the sweeps that are due (B24APP_SWEEP_MINUTES) and the token keep-alives (B24APP_KEEPALIVE_DAYS).
* A job is alive while its worker holds the lease: the thread running it renews the job's
  heartbeat every LEASE_BEAT seconds and stops when the run ends, however it ends. Under the portal
  lock (so never against a live worker run) the recovery takes a job over once its process is
  gone or its lease is LEASE_STALE old, and retries an abandoned job at once: a worker that dies
  at any moment has its job running again within LEASE_STALE + one tick (docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey

from b24app import turns
from b24app.config import Settings
from b24app.errors import B24AppError, ConfigError, UsageError
from b24app.lanes import Lanes
from b24app.locks import (
    FileLocks,
    MemoryLocks,
    PortalLocks,
    RedisLocks,
    conversion_locks,
    lock_redis_url,
    portal_lock_name,
)
from b24app.services import Services
from b24app.store import installations as inst
from b24app.store.db import utc_now
from b24app.store.journal import (
    ABANDONED,
    FINISHED,
    INTERRUPTED,
    PENDING,
    RUNNING,
    JobBusy,
    Journal,
)
from b24app.vocabulary import MAX_BATCH

log = logging.getLogger("b24app.jobs")

QUEUE_NAME = "b24app"
# A task whose portal is busy tries again after this many seconds, at most this many times.
BUSY_DELAY = 10.0
BUSY_ATTEMPTS = 180
# Job kinds the app runs (the CLI's `convert` jobs are resumed by `b24app jobs resume`).
APP_KINDS = ("app", "event", "sweep")
# Undo jobs (b24app.undo) are recovered too, through the undo path: `_undo_job` of the
# conversion job they undo, which continues the interrupted undo job (never starts a second).
UNDO_KIND = "undo"
# Queue priority of a task running an admin's job (queues that keep priorities run it first).
ADMIN_PRIORITY = 100
# A pending job untouched this long with no task in the queue lost its task (a worker killed
# between taking the task and starting the job, or the web could not enqueue).
PENDING_STALE = dt.timedelta(seconds=30)
# A due keep-alive is enqueued at most once per this many seconds.
KEEPALIVE_CLAIM = 3600.0
# An interrupted app job is tried again after this long (an unreachable portal, a refused
# batch); one whose process died (ABANDONED) at the next tick.
INTERRUPTED_RETRY = dt.timedelta(minutes=5)
# A worker running a job renews its lease (the heartbeat) this often; a lease this old is lapsed.
# Five missed beats: a live worker starved of CPU or waiting on the database keeps its job.
LEASE_BEAT = 10.0
LEASE_STALE = 60.0
_ABANDONED_PREFIX = ABANDONED.split("{", 1)[0]


def queue_path(settings: Settings) -> Path:
    """The default SQLite queue file: beside a SQLite database, else in the working directory."""
    url = settings.database_url
    if url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:"):
        database = Path(url.removeprefix("sqlite:///"))
        return database.with_name(f"{database.stem}-queue.db")
    return Path.cwd() / "b24app-queue.db"


def make_huey(settings: Settings, *, immediate: bool = False) -> Huey:
    """The Huey for `settings`: SQLite file by default, Redis for B24APP_QUEUE_URL=redis://...,
    a SQLite file for sqlite:///path, memory and synchronous when `immediate`."""
    if immediate:
        return MemoryHuey(QUEUE_NAME, immediate=True, results=False)
    url = settings.queue_url
    if not url:
        return SqliteHuey(QUEUE_NAME, filename=str(queue_path(settings)), results=False)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHuey(QUEUE_NAME, url=url, results=False)
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return SqliteHuey(QUEUE_NAME, filename=url.removeprefix("sqlite:///"), results=False)
    raise ConfigError("B24APP_QUEUE_URL must be redis://host:6379/1 or sqlite:///path/queue.db")


def make_locks(settings: Settings, huey: Huey, engine: Any = None) -> PortalLocks:
    """Per-portal locks all workers share: the portal's conversion lock (`conversion_locks`: this
    machine, plus Redis and PostgreSQL when configured, so a CLI run and the workers exclude each
    other) and claims in Redis or in files beside the SQLite queue; in memory in immediate mode."""
    if huey.immediate:
        return MemoryLocks()
    redis_url = lock_redis_url(settings.redis_url, settings.queue_url)
    if redis_url:
        claims: PortalLocks = RedisLocks.from_url(redis_url)
    else:
        filename = getattr(huey.storage, "filename", None) or str(queue_path(settings))
        claims = FileLocks(Path(f"{filename}.locks"))
    return conversion_locks(redis_url=redis_url, engine=engine, claims=claims)


def _always(_timestamp: dt.datetime) -> bool:
    return True


@contextlib.contextmanager
def lease(journal: Journal, job_id: int, every: float = LEASE_BEAT) -> Iterator[None]:
    """Renew job `job_id`'s lease every `every` seconds while the block runs (once the job is
    claimed by this process); the renewals end with the block, however it ends."""
    stop = threading.Event()

    def keep() -> None:
        while not stop.wait(every):
            try:
                journal.beat(job_id)
            except Exception as exc:  # the database is away: the lease may lapse, the lock holds
                log.warning("job %d: cannot renew its lease (%s)", job_id, type(exc).__name__)

    keeper = threading.Thread(target=keep, name=f"lease-{job_id}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        # a renewal in flight finishes first (one short write; a loaded machine may take longer
        # than `every`), so no renewal outlives the block
        keeper.join(timeout=max(every, 10.0))


class Jobs:
    """The app's tasks bound to one Huey instance, and the enqueue API the web uses."""

    def __init__(
        self,
        settings: Settings,
        *,
        huey: Huey | None = None,
        immediate: bool = False,
        services: Services | None = None,
        locks: PortalLocks | None = None,
        lanes: int = 0,
        window: float | None = None,
        batch: int | None = None,
        now: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        """`lanes`: portals this process converts at once, each in a thread of its own (0: in
        the task's thread). `window`/`batch`: the coalescing of event leads (default the
        settings; no window in immediate mode, where nothing runs later). `now`: the clock."""
        self.settings = settings
        self.huey = huey if huey is not None else make_huey(settings, immediate=immediate)
        self.services = services or Services(settings)
        self.locks = locks or make_locks(settings, self.huey, engine=self._shared_engine())
        default_window = 0.0 if self.huey.immediate else settings.event_window
        self.window = default_window if window is None else max(0.0, window)
        self.batch = settings.event_batch if batch is None else max(1, batch)
        self.now = now
        self.lanes = Lanes(lanes, self._turn, name="portal-lane")
        task = self.huey.task
        self._convert = task(name="convert_job")(self._convert_job)
        self._undo = task(name="undo_job")(self._undo_job)
        self._event = task(name="lead_event")(self._lead_event)
        self._sweep_all = task(name="sweep_all")(self._sweep_every_portal)
        self._sweep = task(name="sweep_portal")(self._sweep_portal)
        self._keep_alive = task(name="keep_alive")(self._keep_alive_portal)
        self._recover = task(name="recover")(self.recover)
        self._tick = self.huey.periodic_task(_always, name="tick")(self.tick)

    def __repr__(self) -> str:
        return f"Jobs({type(self.huey.storage).__name__})"

    def _shared_engine(self) -> Any:
        """An engine for the portal locks when the database is one other machines share
        (PostgreSQL), else None. Its own, without a pool: a held advisory lock keeps its
        connection for the whole turn, and a process with many lanes holds many at once - in
        the journal's pool (15 connections) they would starve the journal's own work."""
        if self.huey.immediate or not self.settings.database_url.startswith("postgres"):
            return None
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        from b24app.store.db import normalize_url

        self.services.engine  # noqa: B018 - migrated before any lock is taken
        return create_engine(normalize_url(self.settings.database_url), poolclass=NullPool)

    # -- enqueue API (the web) -----------------------------------------------------------------

    def lead_event(self, member_id: str, lead_id: int, event: str) -> None:
        """Enqueue the auto-conversion check of a lead a verified event named."""
        self._event(member_id, int(lead_id), str(event))

    def run_job(self, member_id: str, job_id: int) -> None:
        """Enqueue a conversion job an admin created as pending in the journal (ahead of
        automatic work where the queue keeps priorities)."""
        if getattr(self.huey.storage, "priority", False):
            self._convert(member_id, int(job_id), priority=ADMIN_PRIORITY)
        else:
            self._convert(member_id, int(job_id))

    def run_undo(self, member_id: str, job_id: int, *, force: bool = False) -> None:
        """Enqueue the undo of conversion job `job_id` (b24app.undo)."""
        self._undo(member_id, int(job_id), force=bool(force))

    def sweep(self, member_id: str | None = None) -> None:
        """Enqueue a sweep of one portal now, or of every active portal."""
        if member_id is None:
            self._sweep_all()
        else:
            self._sweep(member_id, force=True)

    # -- tasks ---------------------------------------------------------------------------------

    def _later(self, task: Any, *args: Any, attempt: int, **kwargs: Any) -> None:
        if attempt < 0:  # a recovery offer: the next tick offers it again
            return
        if attempt >= BUSY_ATTEMPTS:
            log.warning("%s%r: portal busy %d times; left to the sweep", task.name, args, attempt)
            return
        task.schedule(args=args, kwargs={**kwargs, "attempt": attempt + 1}, delay=BUSY_DELAY)

    def lock_name(self, member_id: str) -> str:
        """The portal's conversion lock: by its host, the name a webhook CLI run uses too."""
        found = self.services.installations.get_installation(member_id)
        return portal_lock_name(found.client_endpoint if found else member_id)

    def _active(self, member_id: str) -> bool:
        found = self.services.installations.get_installation(member_id)
        if found is None or not found.active:
            log.info("portal %s is not an active installation; task skipped", member_id)
            return False
        return True

    def _convert_job(self, member_id: str, job_id: int, *, attempt: int = 0) -> None:
        """Give the portal a turn that runs this job (pending, paused, interrupted or abandoned)
        and the portal's other due jobs, in the order of `b24app.turns`."""
        job = self._journal(member_id).job(job_id)
        if job is None or job.status in FINISHED or not self._active(member_id):
            return
        self.lanes.submit(member_id, job_id, attempt)

    def _turn(self, member_id: str, job_id: int, attempt: int = 0) -> None:
        """Hold the portal lock and run its due jobs one slice at a time, `job_id` among them."""
        journal = self._journal(member_id)
        tried: set[int] = set()  # jobs that stopped (interrupted, busy) in this turn
        with self.locks.hold(self.lock_name(member_id)) as got:
            if not got:
                job = journal.job(job_id)
                if job is not None and job.status not in FINISHED and job.status != RUNNING:
                    self._later(self._convert, member_id, job_id, attempt=attempt)
                return
            named = {job_id}
            while True:
                live = journal.live_jobs(APP_KINDS)
                job = turns.next_job(
                    live,
                    now=self.now(),
                    window=self.window,
                    batch=self.batch,
                    named=named,
                    skip=tried,
                )
                if job is None:
                    break
                status = self._slice(member_id, journal, job.id)
                named.discard(job.id)
                if status is None:  # another live job holds the portal (a run without the lock)
                    self._later(self._convert, member_id, job.id, attempt=attempt)
                    return
                if status != PENDING:
                    tried.add(job.id)
                elif self.lanes.crowded() or self.lanes.closed:
                    self._convert(member_id, job.id)  # others wait for a lane: back of the line
                    return
        self._wake_when_due(member_id, journal)

    def _slice(self, member_id: str, journal: Journal, job_id: int) -> str | None:
        """Run one slice of a job (the caller holds the portal lock): its status after it,
        None when another live job holds the portal."""
        from b24app.crm import conversion

        client = self.services.client(member_id)
        try:
            with lease(journal, job_id):
                report = conversion.resume(
                    client,
                    journal,
                    job_id,
                    max_leads=self.settings.slice_leads,
                    variants=self.services.variants(member_id),
                    go_on=None if self.lanes.inline else lambda: self._nobody_waits(journal),
                )
        except JobBusy:
            return None
        except B24AppError as exc:  # the portal or the policy refused before the job ran
            log.warning("portal %s: job %d not run: %s", member_id, job_id, exc)
            return INTERRUPTED
        finally:
            client.close()
        return report.status

    def _nobody_waits(self, journal: Journal) -> bool:
        """Whether a running slice may take another share of leads: no other portal waits for a
        lane, the worker is not stopping and no admin job of this portal waits (rule 2 of
        `b24app.turns`). A paused slice drains its batch pipeline (a few half-full batches), so
        a burst converted in one run costs fewer requests than one slice per share."""
        if self.lanes.crowded() or self.lanes.closed:
            return False
        return not any(
            job.status == PENDING and not turns.automatic(job)
            for job in journal.live_jobs(APP_KINDS)
        )

    def _wake_when_due(self, member_id: str, journal: Journal) -> None:
        """Schedule a turn for when the portal's gathering automatic job comes due."""
        live = journal.live_jobs(turns.AUTO_KINDS)
        due = turns.next_due(live, window=self.window)
        if due is None:
            return
        waiting = next(j for j in live if turns.due_at(j, self.window) == due)
        delay = max(0.0, (due - self.now()).total_seconds())
        self._run_later(member_id, waiting.id, delay)

    def _run_later(self, member_id: str, job_id: int, delay: float) -> None:
        if delay <= 0:
            self._convert(member_id, job_id)
        else:  # a little after the window ends, so the turn finds the job due
            self._convert.schedule(args=(member_id, job_id), delay=delay + 0.05)

    def _undo_job(
        self, member_id: str, job_id: int, *, force: bool = False, attempt: int = 0
    ) -> None:
        """Undo conversion job `job_id` under the portal's conversion lock; an undo another
        process runs, or a busy portal, is tried again later (a rerun continues an undo)."""
        from b24app import undo

        if not self._active(member_id):
            return
        journal = self._journal(member_id)
        with self.locks.hold(self.lock_name(member_id)) as got:
            if not got:
                self._later(self._undo, member_id, job_id, force=force, attempt=attempt)
                return
            client = self.services.client(member_id)
            try:
                report = undo.undo(client, journal, job_id, force=force)
            except JobBusy:
                self._later(self._undo, member_id, job_id, force=force, attempt=attempt)
                return
            except UsageError as exc:
                log.info("undo of job %s on %s refused: %s", job_id, member_id, exc)
                return
            finally:
                client.close()
        log.info("undo of job %s on %s: %s", job_id, member_id, report.status)

    def _journal(self, member_id: str) -> Journal:
        """The portal's journal as workers judge it: app jobs live by their lease."""
        return self.services.journal(member_id, leases=dict.fromkeys(APP_KINDS, LEASE_STALE))

    def _lead_event(self, member_id: str, lead_id: int, event: str, *, attempt: int = 0) -> None:
        """Gather the lead an event named into the portal's open automatic job (no REST request
        as a rule); run the job when its window ends, or now when it holds a full batch."""
        from b24app import listeners

        found = listeners.gather_from_event(self.services, member_id, lead_id=lead_id, event=event)
        if isinstance(found, listeners.Outcome):
            return
        self._gathered(found)

    def _gathered(self, found: Any) -> None:
        """Start what gathering leads into a job calls for (`listeners.Gathered`)."""
        before = found.size - len(found.added)
        if found.size >= self.batch > before:  # this call filled the batch: no more waiting
            self._convert(found.member_id, found.job_id)
        elif found.created:
            self._run_later(found.member_id, found.job_id, self.window)
        if found.size >= MAX_BATCH > before and self.window > turns.QUIET:
            # a request's worth: due once the burst goes quiet (a turn that finds leads still
            # joining wakes again when they stop, `_wake_when_due`)
            self._run_later(found.member_id, found.job_id, turns.QUIET)

    def _continue(self, member_id: str, job_id: int | None, status: str | None) -> None:
        if job_id is not None and status == PENDING:
            self._convert(member_id, job_id)

    def _sweep_every_portal(self) -> None:
        """Enqueue a sweep of every active portal."""
        for found in self.services.installations.list_installations(status=inst.ACTIVE):
            self._sweep(found.member_id, force=True)

    def _sweep_portal(self, member_id: str, *, force: bool = False, attempt: int = 0) -> None:
        """Sweep one portal if due (or `force`): record its mode, convert what events missed."""
        from b24app import listeners

        waiting = False  # rescheduled: the tick's claim on this sweep stays
        try:
            if not self._active(member_id):
                return
            with self.locks.hold(self.lock_name(member_id)) as got:
                if not got:
                    waiting = True
                    self._later(self._sweep, member_id, force=force, attempt=attempt)
                    return
                if not force and not self._sweep_due(
                    self.services.portal_settings.last_swept(member_id), utc_now()
                ):
                    return
                try:
                    outcome = listeners.sweep_portal(self.services, member_id, gathering=True)
                except JobBusy:
                    waiting = True
                    self._later(self._sweep, member_id, force=force, attempt=attempt)
                    return
            self._continue(member_id, outcome.job_id, outcome.status)
        finally:
            if not waiting:
                self.locks.unclaim(f"sweep:{member_id}")

    def _keep_alive_portal(self, member_id: str) -> None:
        """Refresh a portal's tokens if they were last rotated B24APP_KEEPALIVE_DAYS ago."""
        from b24app import listeners

        listeners.keep_alive(self.services, member_id, max_age=self._keepalive_age)

    # -- periodic ------------------------------------------------------------------------------

    @property
    def _keepalive_age(self) -> dt.timedelta:
        return dt.timedelta(days=self.settings.keepalive_days)

    def _sweep_due(self, last: dt.datetime | None, now: dt.datetime) -> bool:
        """Whether a portal last swept at `last` (None: never) is due for a sweep."""
        return last is None or now - last >= dt.timedelta(minutes=self.settings.sweep_minutes)

    def tick(self) -> None:
        """The periodic pass: recover stuck jobs, enqueue due sweeps and token keep-alives."""
        now = utc_now()
        self.recover()
        interval = self.settings.sweep_minutes * 60
        swept = self.services.portal_settings.swept()
        for found in self.services.installations.list_installations(status=inst.ACTIVE):
            member_id = found.member_id
            # A claim per interval keeps a long queue from filling up with the same sweep.
            due = self._sweep_due(swept.get(member_id), now)
            if due and self.locks.claim(f"sweep:{member_id}", interval):
                self._sweep(member_id)
            rotated = found.refreshed_at or found.installed_at
            if (
                rotated is not None
                and now - rotated >= self._keepalive_age
                and self.locks.claim(f"keep-alive:{member_id}", KEEPALIVE_CLAIM)
            ):
                self._keep_alive(member_id)

    def recover(self) -> list[tuple[str, int]]:
        """Enqueue the app jobs a crash or a lost queue entry left behind; (portal, job) pairs.

        Running jobs are simply offered again: the portal lock turns the offer away while their
        worker lives, the journal takes the job over once its process is gone or its lease has
        lapsed. A pending job is offered when no task for it waits in the queue and it has been
        untouched for PENDING_STALE (a worker killed between taking its task and starting the
        job); interrupted ones at once when their process died, else after INTERRUPTED_RETRY.
        An undo job is offered as the undo of its conversion job (`_undo_job`), which claims
        and continues it: its journal never sends a step twice (b24app.undo).
        """
        now = utc_now()
        rows = Journal.open_jobs(self.services.engine, kinds=(*APP_KINDS, UNDO_KIND))
        due: list[tuple[str, int]] = []
        undos: dict[tuple[str, int], Any] = {}
        queued = self._queued_jobs() if any(r.status == PENDING for r in rows) else set()
        for row in rows:
            touched = row.heartbeat_at or row.created_at
            if (
                row.status == RUNNING
                or (
                    row.status == PENDING
                    and now - touched >= PENDING_STALE
                    and (row.portal, row.id) not in queued
                )
                or (
                    row.status == INTERRUPTED
                    and (
                        (row.error or "").startswith(_ABANDONED_PREFIX)
                        or now - (row.finished_at or touched) >= INTERRUPTED_RETRY
                    )
                )
            ):
                due.append((row.portal, row.id))
                if row.kind == UNDO_KIND:
                    undos[(row.portal, row.id)] = row
        for member_id, job_id in due:
            undoing = undos.get((member_id, job_id))
            if undoing is not None:  # through the undo path, with the undo job's own --force
                source = int(undoing.policy.get("undo") or 0)
                force = bool(undoing.policy.get("force"))
                self._undo(member_id, source, force=force, attempt=-1)
            else:
                self._convert(member_id, job_id, attempt=-1)  # not rescheduled when busy
        if due:
            log.debug("recovery offered %d job(s) again", len(due))
        return due

    def _queued_jobs(self) -> set[tuple[str, int]]:
        """(portal, job) of every conversion task waiting in the queue or its schedule."""
        name = self._convert.task_class.__name__
        found = set()
        for task in [*self.huey.pending(), *self.huey.scheduled()]:
            if type(task).__name__ == name and len(task.args) >= 2:
                found.add((str(task.args[0]), int(task.args[1])))
        return found

    def task_names(self) -> list[str]:
        """The names of the registered tasks (for `b24app worker` and tests)."""
        return sorted(self.huey._registry._registry)
