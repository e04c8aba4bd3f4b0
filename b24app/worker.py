"""`b24app worker`: a Huey consumer running the app's background tasks (see `b24app.jobs`).

Run one or more per machine; every worker shares the queue (B24APP_QUEUE_URL), the database
(B24APP_DATABASE_URL) and, through Redis (B24APP_REDIS_URL), each portal's rate limit and lock.
The periodic tick (stuck-job recovery, due sweeps, token keep-alive) may run in every worker - its
work is idempotent and locked per portal - but one per deployment is enough (`--no-periodic` on
the others saves a few queries a minute).

The worker threads (`--workers`) take tasks off the queue; conversions run in the process's
portal lanes (`--lanes`, B24APP_LANES; `b24app.lanes`), one per portal with work, so one process
converts for many portals at once, each at its own rate limit. On SIGINT the lanes finish the
slice in hand before the process exits.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
from typing import Any

import click

from b24app.config import Settings

DEFAULT_TICK = 60.0
# How often the worker reads the queue's schedule (seconds; Huey's own least is 1).
SCHEDULE_INTERVAL = 0.25


def run_worker(
    settings: Settings, *, workers: int, periodic: bool, tick: float, lanes: int | None = None
) -> None:
    """Build the app's tasks and consume the queue until SIGINT (graceful) or SIGTERM."""
    from huey.consumer import Consumer

    from b24app.jobs import Jobs
    from b24app.rest.redact import install_log_redaction
    from b24app.services import Services

    class _Consumer(Consumer):
        """Huey's consumer, with the periodic check every `tick` seconds instead of 60."""

        def _create_scheduler(self) -> Any:
            scheduler = super()._create_scheduler()
            scheduler.periodic_task_seconds = tick
            # Huey reads its schedule once a second at most; a coalescing window's end
            # (b24app.turns) then starts up to a second late. Four times a second instead.
            scheduler.interval = SCHEDULE_INTERVAL
            return scheduler

    install_log_redaction()
    # `kill -USR1 PID` writes every thread's stack to the log: what a stuck worker is waiting on.
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    settings.require("B24_CLIENT_ID", "B24_CLIENT_SECRET", "B24APP_SECRET_KEY")
    lanes = settings.lanes if lanes is None else lanes
    # A worker may be killed at any moment: its token refreshes run in a child that outlives it.
    jobs = Jobs(settings, lanes=lanes, services=Services(settings, detached_refresh=True))
    jobs.services.installations  # noqa: B018 - open (and migrate) the database now, not in a task
    consumer = _Consumer(
        jobs.huey,
        workers=workers,
        periodic=periodic,
        worker_type="thread",
        check_worker_health=True,
        backoff=1.15,
        max_delay=2.0,
    )
    click.echo(
        f"b24app worker: {workers} thread(s), {lanes} portal lane(s), periodic "
        f"{f'every {tick:g}s' if periodic else 'off'}, queue {type(jobs.huey.storage).__name__}",
        err=True,
    )
    consumer.run()
    jobs.lanes.close()  # the slices in hand finish, their jobs queued again; then exit


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)


@click.command()
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=256),
    default=None,
    help="Worker threads in this process (default B24APP_WORKERS).",
)
@click.option(
    "--lanes",
    type=click.IntRange(min=1, max=1024),
    default=None,
    help="Portals this process converts at once (default B24APP_LANES).",
)
@click.option(
    "--periodic/--no-periodic",
    default=True,
    show_default=True,
    help="Run the periodic tick: stuck-job recovery, due sweeps, token keep-alive.",
)
@click.option(
    "--tick",
    type=click.FloatRange(min=0.5, max=3600),
    default=DEFAULT_TICK,
    show_default=True,
    help="Seconds between periodic ticks.",
)
def worker(workers: int | None, lanes: int | None, periodic: bool, tick: float) -> None:
    """Run background jobs: conversions, event-triggered conversions, sweeps, keep-alives."""
    settings = Settings.from_env()
    _configure_logging(settings.log_level)
    run_worker(
        settings, workers=workers or settings.workers, periodic=periodic, tick=tick, lanes=lanes
    )
