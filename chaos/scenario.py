"""One chaos run: install, start the job, misbehave on schedule, wait for the end, judge.

The schedule follows the job's progress (leads converted, from the journal) so it lands in the
middle of the work whatever the machine's speed: SIGKILL the worker that owns the job at 15%,
35% and 55% (a fresh worker replaces it), and flip the CRM to Simple at 70%. Meanwhile the run
measures its longest stall (`chaos.progress`), optionally with busy loops eating the CPUs
(`chaos.load`). The run's files (worker logs, database, queue) are kept when it fails or stalls
too long, or always with `keep`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from b24app.config import Settings
from b24app.crm.policy import Policy
from b24app.jobs import Jobs
from b24app.store.crypto import Cipher
from b24app.store.db import make_engine, migrate
from b24app.store.journal import FINISHED, JobRow, Journal
from chaos.load import cpu_load
from chaos.processes import WebApp, Workers, free_port
from chaos.progress import Progress, Stall, portal_marks
from chaos.verdict import Before, capture, verify
from demo.checks import Check, Query, core_query

# About 10% of REST requests fail one way or another, and every token expires every 500.
FAULTS = "500:0.04,drop_after:0.03,drop_before:0.01,slow:0.02@1.5,expire:every=500"
# The quick run sends ~150 requests: tokens expire every 50 so it sees expiries too.
QUICK_FAULTS = FAULTS.replace("every=500", "every=50")
QUICK_LEADS = 1_000
# A stall this long fails the run's stall check: a job whose worker died must be running again
# within the bound docs/deploy.md states (2 minutes).
STALL_LIMIT = 120.0
# Progress is read from the portal this often (seconds); the journal at every poll.
PORTAL_POLL = 1.0
# A quiet spell this long is noted on the timeline (with the job's owner) while it lasts.
QUIET_NOTE = 30.0
CLIENT, ACTIVITIES = "both", "move"


@dataclass(frozen=True)
class Options:
    """What a chaos run does."""

    leads: int = 10_000
    seed: int = 1
    faults: str = FAULTS
    kill_at: tuple[float, ...] = (0.15, 0.35, 0.55)
    flip_at: float | None = 0.70
    workers: int = 2
    threads: int = 2
    slice_leads: int = 500
    database_url: str | None = None  # default: a SQLite file; postgresql: a scratch database
    queue_url: str | None = None  # default: the SqliteHuey file beside the database
    redis_url: str | None = None  # B24APP_REDIS_URL (default: the queue's when it is Redis)
    timeout: float = 1800.0
    keep: Path | None = None  # keep the run's files (worker logs, database, queue) here
    cpu_load: int = 0  # busy-loop processes running for the run's duration
    give_up_after: float = 600.0  # seconds without progress before the run is abandoned

    @classmethod
    def quick(cls, **changes: Any) -> Options:
        """The quick run (1,000 leads) that CI runs."""
        return cls(**{"leads": QUICK_LEADS, "faults": QUICK_FAULTS, **changes})

    def command(self) -> str:
        """The command that reproduces this run (database and queue URLs left out)."""
        quick = self.leads == QUICK_LEADS and self.faults == QUICK_FAULTS
        line = "python -m chaos " + ("--quick" if quick else f"--leads {self.leads}")
        line += f" --seed {self.seed}"
        if not quick and self.faults != FAULTS:
            line += f" --faults '{self.faults}'"
        if self.cpu_load:
            line += f" --cpu-load {self.cpu_load}"
        return line + (" --no-flip" if self.flip_at is None else "")


@dataclass
class Timeline:
    """What happened when, seconds from the job's start."""

    started: float = field(default_factory=time.monotonic)
    entries: list[tuple[float, str]] = field(default_factory=list)
    say: Callable[[str], None] = print

    def note(self, text: str) -> None:
        """Record (and print) one event."""
        at = time.monotonic() - self.started
        self.entries.append((at, text))
        self.say(f"  {at:7.1f} s  {text}")


@dataclass(frozen=True)
class Result:
    """A finished run: the checks, what happened, the portal's counters, the job."""

    checks: tuple[Check, ...]
    timeline: tuple[tuple[float, str], ...]
    stats: dict[str, Any]
    job: JobRow | None
    seconds: float
    kills: int
    flipped: bool
    before: Before
    stall: Stall = field(default_factory=Stall)
    files: Path | None = None  # the run's kept files (None: removed)

    @property
    def ok(self) -> bool:
        """Every check passed."""
        return all(check.ok for check in self.checks)


def _environment(options: Options, database_url: str, portal: Any, port: int) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("B24APP_", "B24_"))  # the run's settings only, never a .env's
    }
    env.update(
        {
            "B24APP_DATABASE_URL": database_url,
            "B24APP_SECRET_KEY": Cipher.generate_key(),
            "B24APP_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "B24_CLIENT_ID": portal.client_id,
            "B24_CLIENT_SECRET": portal.client_secret,
            "B24_OAUTH_SERVER": portal.oauth_server,
            "B24APP_PLAN": "fast",
            "B24APP_SLICE_LEADS": str(options.slice_leads),
            "B24APP_LOG_LEVEL": "INFO",
        }
    )
    if options.queue_url:
        env["B24APP_QUEUE_URL"] = options.queue_url
        if options.queue_url.startswith("redis"):
            env["B24APP_REDIS_URL"] = options.queue_url
    if options.redis_url:
        env["B24APP_REDIS_URL"] = options.redis_url
    return env


@contextlib.contextmanager
def _database(url: str | None, directory: Path) -> Iterator[str]:
    """The run's app database: a SQLite file in `directory`, or a scratch PostgreSQL database
    created on the server of `url` (connecting to the database `url` names) and dropped after."""
    if url is None or not url.startswith("postgres"):
        yield url or f"sqlite:///{directory / 'app.db'}"
        return
    import psycopg

    plain = "postgresql://" + url.split("://", 1)[1]  # psycopg's own spelling
    name = f"b24app_chaos_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield plain.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _clear_redis(url: str | None) -> None:
    """Forget what an earlier run left in the run's Redis: b24app's locks, claims and limits."""
    if not url or not url.startswith(("redis://", "rediss://", "unix://")):
        return
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        for key in client.scan_iter(match="b24app:*", count=500):
            client.delete(key)
    finally:
        client.close()


def _workdir(keep: Path | None) -> contextlib.AbstractContextManager[str]:
    """Where the run's files go: `keep` (left for reading afterwards), else a temp dir."""
    if keep is None:
        return tempfile.TemporaryDirectory(prefix="b24app-chaos-")
    keep.mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(str(keep))


def _owner_pid(job: JobRow | None) -> int | None:
    owner = (job.owner or "") if job else ""
    pid = owner.split("@", 1)[0]
    return int(pid) if pid.isdigit() else None


def run(options: Options, *, say: Callable[[str], None] = print) -> Result:
    """Run the scenario end to end and judge the portal."""
    if options.keep is not None:
        options.keep.mkdir(parents=True, exist_ok=True)
        files = options.keep
    else:
        files = Path(tempfile.mkdtemp(prefix="b24app-chaos-"))
    result: Result | None = None
    try:
        with cpu_load(options.cpu_load), _database(options.database_url, files) as database_url:
            result = _run(options, files, database_url, say)
    finally:
        if options.keep is None and result is not None and result.ok:
            shutil.rmtree(files, ignore_errors=True)
    assert result is not None
    if options.keep is None and not result.ok:
        say(f"the run's files (worker logs, database, queue) are kept in {files}")
    return replace(result, files=None if options.keep is None and result.ok else files)


def _run(options: Options, tmp: Path, database_url: str, say: Callable[[str], None]) -> Result:
    from sandbox import Sandbox

    policy = Policy.from_dict({"client": CLIENT, "activities": ACTIVITIES, "pipeline": 0})
    with Sandbox(seed_leads=options.leads, seed=options.seed, plan="fast") as portal:
        port = free_port()
        env = _environment(options, database_url, portal, port)
        settings = Settings.from_env(env)
        migrate(settings.database_url)  # once, before several processes open the database
        query = core_query(portal)
        web = WebApp(env, tmp, port)
        workers = Workers(env, tmp, threads=options.threads)
        _clear_redis(settings.redis_url)
        jobs = Jobs(settings)
        if options.queue_url:
            jobs.huey.flush()
        try:
            web.start()
            grant = portal.install_app(app_url=f"{web.url}/install")
            if grant.get("install_status") != 200:
                raise RuntimeError(f"the app did not install: {grant.get('install_status')}")
            member_id = grant["member_id"]
            before = capture(query)
            say(
                f"portal: {len(before.stages)} leads, {len(before.active)} in progress, "
                f"{sum(len(a) for a in before.open_activities.values())} open activities; "
                f"app installed ({settings.database_url.split(':', 1)[0]}, "
                f"{type(jobs.huey.storage).__name__}"
                + (f", {options.cpu_load} busy loop(s)" if options.cpu_load else "")
                + ")"
            )
            journal = Journal(make_engine(settings.database_url), portal=member_id)
            timeline = Timeline(say=say)
            for _ in range(options.workers):
                workers.spawn()
            portal.set_faults(options.faults)
            timeline.note(f"faults on: {options.faults}")
            job = journal.create_job(kind="app", policy=policy.to_dict())
            jobs.run_job(member_id, job.id)
            timeline.note(f"job {job.id} enqueued ({options.workers} workers)")
            watch = _Watch(options, journal, job.id, workers, portal, query, timeline)
            job = watch.drive(len(before.active))
            portal.set_faults(None)
        finally:
            workers.stop_all()
            web.stop()
        seconds = time.monotonic() - timeline.started
        portal.wait_events(timeout=30)
        checks = [
            _job_check(job, seconds, options),
            _plan_check(options, watch.kills, watch.flipped),
            _stall_check(watch.stall),
            *verify(query, before, client=CLIENT, activities=ACTIVITIES),
        ]
        if not all(check.ok for check in checks):
            say(workers.log_tail())
        return Result(
            checks=tuple(checks),
            timeline=tuple(timeline.entries),
            stats=portal.stats(),
            job=job,
            seconds=seconds,
            kills=watch.kills,
            flipped=watch.flipped,
            before=before,
            stall=watch.stall,
        )


class _Watch:
    """Watches the job to its end: kills workers and flips the mode on schedule, measures
    progress (the portal's records and the job's lead counts) and the longest stall."""

    def __init__(
        self,
        options: Options,
        journal: Journal,
        job_id: int,
        workers: Workers,
        portal: Any,
        query: Query,
        timeline: Timeline,
    ) -> None:
        self.options = options
        self.journal = journal
        self.job_id = job_id
        self.workers = workers
        self.portal = portal
        self.query = query
        self.timeline = timeline
        self.kills = 0
        self.flipped = False
        self.progress = Progress()
        self.stall = Stall()
        self._marks: tuple[int, ...] = ()
        self._polled = float("-inf")
        self._noted_quiet = False

    def drive(self, active: int) -> JobRow | None:
        """Watch until the job finishes (or the run gives up); the job as it ended."""
        options, timeline = self.options, self.timeline
        kills_due = sorted(options.kill_at)
        last_status = ""
        job = self.journal.job(self.job_id)
        deadline = time.monotonic() + options.timeout
        while time.monotonic() < deadline:
            job = self.journal.job(self.job_id)
            if job is None:
                raise RuntimeError(f"job {self.job_id} vanished from the journal")
            if job.status != last_status:
                timeline.note(f"job {job.id} {job.status} ({job.converted} converted)")
                last_status = job.status
            if job.status in FINISHED:
                self.stall = self.progress.end(self._now())
                return job
            if self._stalled(job):
                break
            for pid, code in self.workers.died():
                timeline.note(f"worker {pid} exited by itself (code {code}); replaced")
                self.workers.spawn()
            progress = job.converted / active if active else 1.0
            if kills_due and progress >= kills_due[0]:
                kills_due.pop(0)
                self._kill(job)
            if options.flip_at is not None and not self.flipped and progress >= options.flip_at:
                self.flipped = True
                timeline.note(f"admin switches the CRM to Simple at {job.converted} converted ...")
                summary = self.portal.set_mode("simple")
                timeline.note(
                    f"... Simple: the platform converted {summary['converted']} leads itself"
                )
            time.sleep(0.05)
        else:
            timeline.note(f"gave up waiting after {options.timeout:g} s")
        self.stall = self.progress.end(self._now())
        return job

    def _now(self) -> float:
        return time.monotonic() - self.timeline.started

    def _stalled(self, job: JobRow) -> bool:
        """Observe the run's progress; True when it has been still for `give_up_after`."""
        now = self._now()
        if now - self._polled >= PORTAL_POLL:
            self._polled = now
            self._marks = portal_marks(self.query)
        moved = self.progress.observe(
            now, (self._marks, job.converted, job.failed, job.skipped, job.status)
        )
        quiet = self.progress.quiet()
        if moved and self._noted_quiet:
            self._noted_quiet = False
            self.timeline.note(f"progress again ({self.progress.longest})")
        elif not moved and quiet >= QUIET_NOTE and not self._noted_quiet:
            self._noted_quiet = True
            beat = f"{job.heartbeat_at:%H:%M:%S}" if job.heartbeat_at else "none"
            self.timeline.note(
                f"no progress for {quiet:.0f} s: job {job.id} {job.status}, "
                f"owner {job.owner}, heartbeat {beat}; worker stacks written to their logs"
            )
            self.workers.dump_stacks()
        if quiet >= self.options.give_up_after:
            self.timeline.note(f"gave up: no progress for {quiet:.0f} s")
            return True
        return False

    def _kill(self, job: JobRow) -> None:
        victim = _owner_pid(job)
        if victim not in self.workers.running:
            victim = next(iter(self.workers.running))
        owned = "the job's worker" if victim == _owner_pid(job) else "a worker"
        self.workers.kill(victim)
        self.kills += 1
        replacement = self.workers.spawn()
        self.timeline.note(
            f"kill -9 {owned} {victim} at {job.converted} converted; worker {replacement} started"
        )


def _job_check(job: JobRow | None, seconds: float, options: Options) -> Check:
    if job is None:
        return Check("the job finished", False, "no job")
    detail = (
        f"job {job.id} {job.status} in {seconds:.0f} s: {job.converted} converted, "
        f"{job.failed} failed, {job.skipped} skipped, {job.requests} requests"
    )
    if job.error:
        detail += f"; error: {job.error}"
    return Check("the job finished", job.status == "done", detail)


def _stall_check(stall: Stall) -> Check:
    return Check(
        "no stall over 2 minutes",
        stall.seconds < STALL_LIMIT,
        f"longest time without progress: {stall}",
    )


def _plan_check(options: Options, kills: int, flipped: bool) -> Check:
    wanted_flip = options.flip_at is not None
    ok = kills == len(options.kill_at) and flipped == wanted_flip
    return Check(
        "the chaos happened as planned",
        ok,
        f"{kills}/{len(options.kill_at)} workers killed with SIGKILL, "
        f"mode flipped: {'yes' if flipped else 'no'}"
        + ("" if ok else " (the job ended before the schedule; use more leads)"),
    )
