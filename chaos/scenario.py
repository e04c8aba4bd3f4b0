"""One chaos run: install, start the job, misbehave on schedule, wait for the end, judge.

The schedule follows the job's progress (leads converted, from the journal) so it lands in the
middle of the work whatever the machine's speed: SIGKILL the worker that owns the job at 15%,
35% and 55% (a fresh worker replaces it), and flip the CRM to Simple at 70%.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from b24app.config import Settings
from b24app.crm.policy import Policy
from b24app.jobs import Jobs
from b24app.store.crypto import Cipher
from b24app.store.db import make_engine, migrate
from b24app.store.journal import FINISHED, JobRow, Journal
from chaos.processes import WebApp, Workers, free_port
from chaos.verdict import Before, capture, verify
from demo.checks import Check, core_query

# About 10% of REST requests fail one way or another, and every token expires every 500.
FAULTS = "500:0.04,drop_after:0.03,drop_before:0.01,slow:0.02@1.5,expire:every=500"
# The quick run sends ~150 requests: tokens expire every 50 so it sees expiries too.
QUICK_FAULTS = FAULTS.replace("every=500", "every=50")
QUICK_LEADS = 1_000
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
    database_url: str | None = None  # default: a SQLite file in the run's directory
    queue_url: str | None = None  # default: the SqliteHuey file beside the database
    timeout: float = 1800.0

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

    @property
    def ok(self) -> bool:
        """Every check passed."""
        return all(check.ok for check in self.checks)


def _environment(options: Options, tmp: Path, portal: Any, port: int) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("B24APP_", "B24_"))  # the run's settings only, never a .env's
    }
    env.update(
        {
            "B24APP_DATABASE_URL": options.database_url or f"sqlite:///{tmp / 'app.db'}",
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
    return env


def _owner_pid(job: JobRow | None) -> int | None:
    owner = (job.owner or "") if job else ""
    pid = owner.split("@", 1)[0]
    return int(pid) if pid.isdigit() else None


def run(options: Options, *, say: Callable[[str], None] = print) -> Result:
    """Run the scenario end to end and judge the portal."""
    from sandbox import Sandbox

    policy = Policy.from_dict({"client": CLIENT, "activities": ACTIVITIES, "pipeline": 0})
    with (
        tempfile.TemporaryDirectory(prefix="b24app-chaos-") as tmp_name,
        Sandbox(seed_leads=options.leads, seed=options.seed, plan="fast") as portal,
    ):
        tmp = Path(tmp_name)
        port = free_port()
        env = _environment(options, tmp, portal, port)
        settings = Settings.from_env(env)
        migrate(settings.database_url)  # once, before several processes open the database
        query = core_query(portal)
        web = WebApp(env, tmp, port)
        workers = Workers(env, tmp, threads=options.threads)
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
                f"{type(jobs.huey.storage).__name__})"
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
            job, kills, flipped = _drive(
                options, journal, job.id, workers, portal, timeline, len(before.active)
            )
            portal.set_faults(None)
        finally:
            workers.stop_all()
            web.stop()
        seconds = time.monotonic() - timeline.started
        portal.wait_events(timeout=30)
        checks = [
            _job_check(job, seconds, options),
            _plan_check(options, kills, flipped),
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
            kills=kills,
            flipped=flipped,
            before=before,
        )


def _drive(
    options: Options,
    journal: Journal,
    job_id: int,
    workers: Workers,
    portal: Any,
    timeline: Timeline,
    active: int,
) -> tuple[JobRow | None, int, bool]:
    """Watch the job; kill workers and flip the mode on schedule; return at its end."""
    kills_due = sorted(options.kill_at)
    kills = 0
    flipped = False
    last_status = ""
    job = journal.job(job_id)
    deadline = time.monotonic() + options.timeout
    while time.monotonic() < deadline:
        job = journal.job(job_id)
        if job is None:
            raise RuntimeError(f"job {job_id} vanished from the journal")
        if job.status != last_status:
            timeline.note(f"job {job_id} {job.status} ({job.converted} converted)")
            last_status = job.status
        if job.status in FINISHED:
            return job, kills, flipped
        for pid, code in workers.died():
            timeline.note(f"worker {pid} exited by itself (code {code}); replaced")
            workers.spawn()
        progress = job.converted / active if active else 1.0
        if kills_due and progress >= kills_due[0]:
            kills_due.pop(0)
            victim = _owner_pid(job)
            if victim not in workers.running:
                victim = next(iter(workers.running))
            owned = "the job's worker" if victim == _owner_pid(job) else "a worker"
            workers.kill(victim)
            kills += 1
            replacement = workers.spawn()
            timeline.note(
                f"kill -9 {owned} {victim} at {job.converted} converted; "
                f"worker {replacement} started"
            )
        if options.flip_at is not None and not flipped and progress >= options.flip_at:
            flipped = True
            timeline.note(f"admin switches the CRM to Simple at {job.converted} converted ...")
            summary = portal.set_mode("simple")
            timeline.note(f"... Simple: the platform converted {summary['converted']} leads itself")
        time.sleep(0.05)
    timeline.note(f"gave up waiting after {options.timeout:g} s")
    return job, kills, flipped


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
