"""Bench: many portals at once - `b24app worker` processes converting every active lead of 50
sandbox portals (500 leads each, standard plan) on PostgreSQL + Redis, with 1, 2 and 4 workers.

Every portal has its own leaky bucket (2 requests/s after a burst of 50), so the best possible
total time is the largest single-portal floor: the slowest portal's (requests - burst) / rate.
The bench reports the total wall time (first job enqueued -> last job done) against that floor,
the sum of the per-portal floors divided by the workers (the floor if the workers were the
bottleneck and never idle), and the 503 QUERY_LIMIT_EXCEEDED answers received (goal 0).
Afterwards each portal is checked: every active lead converted, no duplicates by ORIGIN_ID.

Jobs are created and enqueued the way the app page does; each worker process runs one worker
thread (`b24app worker --workers 1`) taking tasks off the queue, converts in its portal lanes
(B24APP_LANES, one per portal with work: `b24app.lanes`) and converts B24APP_SLICE_LEADS leads
per turn. The sandboxes run as threads of this process, so on a 2-core machine the portals' own
CPU time shares the cores with the workers: the CPU column says how busy the cores were (the
workers' CPU seconds and this process's, the sandboxes', over the wall time), and the CPU floor
is the least wall time that CPU use allows here (a Python process uses one core at most): the
run is compared with the larger of the two floors too.

    python -m bench.scale                       # 50 portals x 500 leads, standard, 1/2/4 workers
    python -m bench.scale --quick               # 4 portals x 60 leads, fast plan, 1/2 workers
    python -m bench.scale --portals 10 --workers 2,4 --slice 100
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from b24app.config import PLANS, Settings
from b24app.crm.policy import Policy
from b24app.jobs import Jobs
from b24app.services import Services
from b24app.store import installations as inst
from b24app.store.db import migrate
from b24app.store.journal import DONE, FAILED, INTERRUPTED
from b24app.store.journal import jobs as job_rows
from bench.floors import Usage, ratio, time_floor, usage_between
from bench.table import figure

QUICK = {"portals": 4, "leads": 60, "plan": "fast", "workers": (1, 2)}
POSTGRES_URL = os.environ.get(
    "B24APP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("B24APP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class Options:
    """One bench run's settings."""

    portals: int = 50
    leads: int = 500
    plan: str = "standard"
    workers: tuple[int, ...] = (1, 2, 4)
    slice: int = 100
    timeout: float = 1800.0

    def command(self) -> str:
        """The command that reproduces this run."""
        return (
            f"python -m bench.scale --portals {self.portals} --leads {self.leads} "
            f"--plan {self.plan} --workers {','.join(map(str, self.workers))} "
            f"--slice {self.slice}"
        )


@dataclass(frozen=True)
class Outcome:
    """One run with `workers` worker processes."""

    workers: int
    seconds: float
    usages: tuple[Usage, ...]
    converted: int
    active: int
    duplicates: int
    unfinished: int
    plan: str = "standard"
    worker_cpu: float = 0.0  # CPU seconds of the worker processes
    portal_cpu: float = 0.0  # CPU seconds of this process (the sandboxes)

    @property
    def cpu(self) -> str:
        """CPU use over the run: worker and sandbox seconds, and the share of the cores."""
        cores = os.cpu_count() or 1
        busy = (self.worker_cpu + self.portal_cpu) / max(self.seconds, 1e-9) / cores
        per_lead = self.worker_cpu / max(self.converted, 1) * 1000
        return (
            f"workers {self.worker_cpu:.1f} s ({per_lead:.1f} ms per lead) + sandboxes "
            f"{self.portal_cpu:.0f} s CPU = {busy:.0%} of {cores} cores"
        )

    @property
    def cpu_floor(self) -> float:
        """The least wall time this run's CPU use allows on this machine: a Python process runs
        on one core at most (the workers share min(workers, cores) of them, the sandboxes are
        this one process), and all of it shares the cores. PostgreSQL and Redis are not counted.
        """
        cores = os.cpu_count() or 1
        return max(
            self.worker_cpu / min(self.workers, cores),
            self.portal_cpu,
            (self.worker_cpu + self.portal_cpu) / cores,
        )

    @property
    def floors(self) -> list[float]:
        """Each portal's leaky-bucket floor for the requests it received."""
        return [time_floor(usage.requests, self.plan) for usage in self.usages]

    @property
    def ok(self) -> bool:
        """Every active lead converted once, every job done."""
        return self.converted == self.active and not self.duplicates and not self.unfinished


def _install(store: inst.InstallationStore, sandbox: Any) -> str:
    grant = sandbox.install_app()
    store.save_installation(
        inst.Installation(
            member_id=grant["member_id"],
            domain=grant["domain"],
            client_endpoint=grant["client_endpoint"],
            server_endpoint=grant["server_endpoint"],
            access_token=grant["access_token"],
            refresh_token=grant["refresh_token"],
            application_token=grant["application_token"],
            expires_at=grant["expires"],
            scope=grant["scope"],
        )
    )
    return str(grant["member_id"])


def run_once(options: Options, workers: int) -> Outcome:
    """Fresh portals, database and queue; `workers` worker processes; every portal's job. CPU
    is counted from the first job enqueued to the last job done (not the workers' start-up)."""
    outcome, own = _run_once(options, workers)
    return replace(outcome, portal_cpu=own)


def _run_once(options: Options, workers: int) -> tuple[Outcome, float]:
    import resource

    from sandbox import Sandbox
    from tests.conversion.portalstate import created, duplicates, snapshot
    from tests.integration.cluster import (
        CLIENT_ID,
        CLIENT_SECRET,
        OAuthRouter,
        app_env,
        postgres_database,
        redis_database,
        start_worker,
        wait_for,
    )

    with ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="b24app-scale-")))
        sandboxes = [
            stack.enter_context(
                Sandbox(
                    seed=100 + i,
                    seed_leads=options.leads,
                    plan=options.plan,
                    client_id=CLIENT_ID,
                    client_secret=CLIENT_SECRET,
                )
            )
            for i in range(options.portals)
        ]
        router = stack.enter_context(OAuthRouter(sandboxes))
        database = stack.enter_context(postgres_database(POSTGRES_URL))
        queue = stack.enter_context(redis_database(REDIS_URL))
        env = app_env(
            database_url=database,
            redis_url=queue,
            oauth_url=router.url,
            public_url="http://127.0.0.1:9",
            plan=options.plan,
            B24APP_SLICE_LEADS=str(options.slice),
            B24APP_LOG_LEVEL="WARNING",
        )
        migrate(database)
        settings = Settings.from_env(env)
        services = Services(settings)
        members = [_install(services.installations, sandbox) for sandbox in sandboxes]
        before = [snapshot(sandbox.portal) for sandbox in sandboxes]
        stats = [sandbox.stats() for sandbox in sandboxes]
        children = [
            start_worker(env, f"worker{i}", logs, threads=1, tick=5.0) for i in range(workers)
        ]
        for child in children:
            stack.callback(child.stop)
        pids = [child.pid for child in children]
        workers_before = _cpu_seconds(pids)
        jobs = Jobs(settings)
        own = resource.getrusage(resource.RUSAGE_SELF)
        tick = time.monotonic()
        started = {}
        for member_id in members:
            job = services.journal(member_id).create_job(kind="app", policy=Policy().to_dict())
            jobs.run_job(member_id, job.id)
            started[member_id] = job.id

        ids = list(started.values())

        def finished() -> bool:
            # one query for every job, ten times a second: this process also runs the portals,
            # and a query per job every 50 ms (as before) took their CPU
            with services.engine.connect() as conn:
                query = select(job_rows.c.status).where(job_rows.c.id.in_(ids))
                statuses = conn.execute(query).scalars()
                ended = sum(1 for status in statuses if status in (DONE, FAILED, INTERRUPTED))
            return ended == len(ids)

        wait_for(finished, timeout=options.timeout, what="every portal's job", every=0.1)
        seconds = time.monotonic() - tick
        worker_cpu = _cpu_seconds(pids) - workers_before
        mine = resource.getrusage(resource.RUSAGE_SELF)
        own_cpu = mine.ru_utime + mine.ru_stime - own.ru_utime - own.ru_stime
        usages = tuple(
            usage_between(old, sandbox.stats())
            for old, sandbox in zip(stats, sandboxes, strict=True)
        )
        converted = sum(len(created(sandbox.portal, "deal")) for sandbox in sandboxes)
        doubles = sum(
            len(dups) for sandbox in sandboxes for dups in duplicates(sandbox.portal).values()
        )
        rows = [services.journal(m).job(j) for m, j in started.items()]
        unfinished = sum(1 for row in rows if row is None or row.status != DONE)
    outcome = Outcome(
        workers=workers,
        seconds=seconds,
        usages=usages,
        converted=converted,
        active=sum(len(b.active) for b in before),
        duplicates=doubles,
        unfinished=unfinished,
        plan=options.plan,
    )
    return replace(outcome, worker_cpu=worker_cpu), own_cpu


def _cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds these processes used so far (Linux /proc: utime, stime)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def run(options: Options) -> list[Outcome]:
    """One run per worker count."""
    return [run_once(options, workers) for workers in options.workers]


def rows_of(outcomes: Sequence[Outcome], options: Options) -> list[dict[str, str]]:
    """The bench's own wide table."""
    found = []
    for outcome in outcomes:
        largest = max(outcome.floors)
        summed = sum(outcome.floors) / outcome.workers
        found.append(
            {
                "workers": str(outcome.workers),
                "portals x leads": f"{options.portals} x {options.leads} ({options.plan})",
                "active converted": f"{outcome.converted}/{outcome.active}",
                "requests": str(sum(u.requests for u in outcome.usages)),
                "total s": f"{outcome.seconds:.1f}",
                "largest portal floor s": f"{largest:.1f}",
                "total/largest": ratio(outcome.seconds, largest),
                "CPU floor s": f"{outcome.cpu_floor:.1f}",
                "total/max(floors)": ratio(outcome.seconds, max(largest, outcome.cpu_floor)),
                "sum of floors / workers s": f"{summed:.1f}",
                "CPU": outcome.cpu,
                "503s": str(sum(u.rejected_503 for u in outcome.usages)),
                "result": "ok" if outcome.ok else _why(outcome),
            }
        )
    return found


def _why(outcome: Outcome) -> str:
    return (
        f"BROKEN: {outcome.converted}/{outcome.active} converted, "
        f"{outcome.duplicates} duplicates, {outcome.unfinished} jobs not done"
    )


def figures(outcomes: Sequence[Outcome], options: Options) -> list[dict[str, str]]:
    """Summary rows for `python -m bench`: each worker count against the largest portal floor."""
    found = []
    for outcome in outcomes:
        largest = max(outcome.floors)
        found.append(
            figure(
                what=(
                    f"{options.portals} portals x {options.leads} leads ({options.plan} plan), "
                    f"{outcome.workers} worker(s): total time, 503s"
                ),
                measured=(
                    f"{outcome.seconds:.1f} s, {sum(u.rejected_503 for u in outcome.usages)} x 503"
                    f" ({outcome.cpu})"
                ),
                versus=(
                    f"largest single-portal floor {largest:.1f} s, goal "
                    f"{'<= 1.3x, ' if outcome.workers == 1 else ''}0 x 503; the CPU used allows "
                    f"{outcome.cpu_floor:.1f} s on {os.cpu_count() or 1} cores "
                    f"({ratio(outcome.seconds, max(largest, outcome.cpu_floor))} of the larger)"
                ),
                ratio=ratio(outcome.seconds, largest),
                result="ok" if outcome.ok else _why(outcome),
                reproduce=options.command(),
            )
        )
    return found


def rows(*, quick: bool = False) -> list[dict[str, str]]:
    """The bench's rows for `python -m bench` (its default run, or the quick one)."""
    options = Options(**QUICK) if quick else Options()
    return figures(run(options), options)


def parse(argv: Sequence[str] | None) -> Options:
    """Options from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--portals", type=int, default=None, help="sandbox portals (default 50)")
    parser.add_argument("--leads", type=int, default=None, help="leads per portal (default 500)")
    parser.add_argument("--plan", choices=sorted(PLANS), default=None, help="default standard")
    parser.add_argument("--workers", default=None, help="worker counts to run (default 1,2,4)")
    parser.add_argument("--slice", type=int, default=None, help="leads per turn (default 100)")
    parser.add_argument("--quick", action="store_true", help="4 portals x 60 leads, fast plan")
    args = parser.parse_args(argv)
    base = Options(**QUICK) if args.quick else Options()
    try:
        workers = (
            tuple(int(w) for w in args.workers.split(",") if w.strip())
            if args.workers
            else base.workers
        )
    except ValueError:
        parser.error(f"--workers takes counts like 1,2,4 (got {args.workers})")
    if not workers or min(workers) < 1:
        parser.error("--workers needs positive counts")
    return replace(
        base,
        portals=args.portals or base.portals,
        leads=args.leads or base.leads,
        plan=args.plan or base.plan,
        workers=workers,
        slice=args.slice or base.slice,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench and print its table; exit 1 when a run is broken."""
    from bench.table import print_table

    options = parse(argv)
    outcomes = run(options)
    print_table(rows_of(outcomes, options), title="Scale-out: portals converted by workers")
    print(f"reproduce: {options.command()}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
