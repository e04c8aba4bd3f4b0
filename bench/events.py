"""Bench: the events endpoint under gunicorn at 200 requests/s on loopback.

The app (`handlers:create_app()`) runs under gunicorn in a child process on a loopback port,
with a SQLite database and the default SqliteHuey queue file beside it (or `--queue-url
redis://...`). A sandbox portal installs it the Market way (the installer POST to `/install`,
tokens proven at the sandbox's OAuth server, events bound). The load generator
(`bench.loadgen`, paced and open-loop) then POSTs ONCRMLEADUPDATE deliveries built from the
documented body (fixtures/events) with the portal's real member_id and application_token, at a
fixed rate, and measures the time to answer of each from its due time.

The floor is the same server, the same rate and the same bodies against an empty Flask view
(`bench.events:floor_app()`): HTTP, gunicorn and Flask alone. Every delivery must be answered
200 and enqueue exactly one job; no worker runs, so the queue's length counts them.

    python -m bench.events                      # 200/s for 10 s, median of 3 runs
    python -m bench.events --seconds 2 --runs 1 # the quick run
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import requests

from bench.floors import ratio
from bench.loadgen import Load, paced
from bench.table import figure, print_table

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "fixtures" / "events" / "ONCRMLEADUPDATE.form"
RATE, SECONDS, RUNS = 200.0, 10.0, 3
QUICK = {"seconds": 2.0, "runs": 1}
WORKERS, THREADS = 2, 4
LEADS = 500  # distinct lead ids the deliveries name


@dataclass(frozen=True)
class Options:
    """One bench run's settings."""

    rate: float = RATE
    seconds: float = SECONDS
    runs: int = RUNS
    workers: int = WORKERS
    threads: int = THREADS
    queue_url: str | None = None

    def command(self) -> str:
        """The command that reproduces this run."""
        line = (
            f"python -m bench.events --rate {self.rate:g} --seconds {self.seconds:g} "
            f"--runs {self.runs}"
        )
        if (self.workers, self.threads) != (WORKERS, THREADS):
            line += f" --workers {self.workers} --threads {self.threads}"
        return line + (" --queue-url redis://..." if self.queue_url else "")


@dataclass(frozen=True)
class Measured:
    """Medians over the runs of one endpoint: p50/p99 (ms), non-200s, achieved rate."""

    p50_ms: float
    p99_ms: float
    sent: int
    not_ok: int
    rate: float
    statuses: dict[str, int]


def floor_app() -> Any:
    """An empty Flask view at POST /events: the floor the real endpoint is held against."""
    from flask import Flask, jsonify, request

    app = Flask("floor")

    @app.post("/events")
    def events() -> Any:
        """Read the body and answer like the real view does on success."""
        request.get_data(cache=False)
        return jsonify(status="ok", action="enqueued")

    return app


def event_bodies(member_id: str, application_token: str, *, count: int = LEADS) -> list[bytes]:
    """ONCRMLEADUPDATE bodies as Bitrix24 sends them, for this portal, one per lead id."""
    pairs = parse_qsl(FIXTURE.read_text(encoding="utf-8"), keep_blank_values=True)
    bodies = []
    for lead_id in range(1, count + 1):
        replaced = {
            "data[FIELDS][ID]": str(lead_id),
            "auth[member_id]": member_id,
            "auth[application_token]": application_token,
            "ts": str(int(time.time())),
        }
        bodies.append(urlencode([(k, replaced.get(k, v)) for k, v in pairs]).encode())
    return bodies


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """`gunicorn APP` in a child process on a loopback port; a context manager."""

    def __init__(self, app: str, *, env: dict[str, str], options: Options, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(options.workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(options.threads),
            "--log-level",
            "warning",
            app,
        ]
        self._env = {**env, "PYTHONPATH": str(ROOT)}
        self._log = log
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> Gunicorn:
        out = self._log.open("a", encoding="utf-8")
        self._process = subprocess.Popen(
            self._argv, env=self._env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self._log.read_text()[-800:]}")
            try:
                requests.get(f"{self.url}/healthz", timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("gunicorn did not answer within 60 s")

    def __exit__(self, *exc: object) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def summarize(loads: Sequence[Load]) -> Measured:
    """Medians of each run's p50, p99 and rate; non-200s summed over the runs."""
    statuses: dict[str, int] = {}
    for load in loads:
        for status, count in load.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    return Measured(
        p50_ms=statistics.median(load.percentile(0.50) for load in loads) * 1000,
        p99_ms=statistics.median(load.percentile(0.99) for load in loads) * 1000,
        sent=sum(load.sent for load in loads),
        not_ok=sum(load.not_ok for load in loads),
        rate=statistics.median(load.rate for load in loads),
        statuses=statuses,
    )


def app_env(tmp: Path, portal: Any, options: Options, public_url: str) -> dict[str, str]:
    """The environment of the app's gunicorn: SQLite in `tmp`, the sandbox's OAuth client."""
    from b24app.store.crypto import Cipher

    env = {
        **os.environ,
        "B24APP_DATABASE_URL": f"sqlite:///{tmp / 'app.db'}",
        "B24APP_SECRET_KEY": Cipher.generate_key(),
        "B24APP_PUBLIC_URL": public_url,
        "B24_CLIENT_ID": portal.client_id,
        "B24_CLIENT_SECRET": portal.client_secret,
        "B24_OAUTH_SERVER": portal.oauth_server,
        "B24APP_PLAN": "fast",
        "B24APP_LOG_LEVEL": "WARNING",
    }
    env.pop("B24APP_QUEUE_URL", None)
    if options.queue_url:
        env["B24APP_QUEUE_URL"] = options.queue_url
    return env


def queued(env: dict[str, str]) -> int:
    """How many tasks wait in the app's queue."""
    from b24app.config import Settings
    from b24app.jobs import make_huey

    return make_huey(Settings.from_env(env)).pending_count()


def flush_queue(env: dict[str, str]) -> None:
    """Empty the app's queue (a Redis queue outlives the run)."""
    from b24app.config import Settings
    from b24app.jobs import make_huey

    make_huey(Settings.from_env(env)).flush()


def run(options: Options) -> tuple[Measured, Measured, int]:
    """(the events endpoint, the floor, tasks enqueued) over `options.runs` paced runs each."""
    from b24app.store.db import migrate
    from sandbox import Sandbox

    with tempfile.TemporaryDirectory(prefix="b24app-events-") as tmp_name:
        tmp = Path(tmp_name)
        log = tmp / "gunicorn.log"
        with Sandbox(plan="fast", seed_leads=10) as portal:
            app = Gunicorn("handlers:create_app()", env={}, options=options, log=log)
            env = app_env(tmp, portal, options, app.url)
            app._env = {**env, "PYTHONPATH": str(ROOT)}
            # Deploy step: workers that all migrate a fresh SQLite file at once collide.
            migrate(env["B24APP_DATABASE_URL"])
            if options.queue_url:
                flush_queue(env)
            with app:
                grant = portal.install_app(app_url=f"{app.url}/install")
                if grant.get("install_status") != 200:
                    raise RuntimeError(f"the install failed: {grant.get('install_status')}")
                bodies = event_bodies(grant["member_id"], grant["application_token"])
                before = queued(env)
                loads = [
                    paced(f"{app.url}/events", bodies, rate=options.rate, seconds=options.seconds)
                    for _ in range(options.runs)
                ]
                enqueued = queued(env) - before
            if options.queue_url:
                flush_queue(env)
            with Gunicorn("bench.events:floor_app()", env=env, options=options, log=log) as floor:
                floors = [
                    paced(f"{floor.url}/events", bodies, rate=options.rate, seconds=options.seconds)
                    for _ in range(options.runs)
                ]
    return summarize(loads), summarize(floors), enqueued


def rows_of(app: Measured, floor: Measured, enqueued: int, options: Options) -> list[dict]:
    """The bench's summary row."""
    queue = "Redis" if options.queue_url else "SQLite"
    problems = []
    if app.not_ok:
        problems.append(f"{app.not_ok} non-200 ({app.statuses})")
    if enqueued != app.sent:
        problems.append(f"{enqueued} jobs enqueued for {app.sent} deliveries")
    verdict = (
        f"ok: {app.sent} answered 200, {enqueued} jobs enqueued, {app.rate:.0f} req/s"
        if not problems
        else "BROKEN: " + "; ".join(problems)
    )
    runs = f"median of {options.runs} runs" if options.runs > 1 else "1 run"
    return [
        figure(
            what=(
                f"events endpoint, {options.rate:g} req/s x {options.seconds:g} s on loopback "
                f"(gunicorn {options.workers}x{options.threads} gthread, {queue} queue; {runs}): "
                "time to answer p50 / p99"
            ),
            measured=f"{app.p50_ms:.1f} / {app.p99_ms:.1f} ms",
            versus=f"empty Flask view, same server: {floor.p50_ms:.1f} / {floor.p99_ms:.1f} ms",
            ratio=f"p99 {ratio(app.p99_ms, floor.p99_ms)}",
            result=verdict,
            reproduce=options.command(),
        )
    ]


def rows(*, quick: bool = False, **overrides: Any) -> list[dict[str, str]]:
    """The bench's rows for `python -m bench` (quick: 2 s, one run)."""
    options = Options(**{**(QUICK if quick else {}), **overrides})
    return rows_of(*run(options), options)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench and print its row; exit 1 when any delivery was not answered 200."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.events",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=RATE, help="requests per second")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="length of one run")
    parser.add_argument("--runs", type=int, default=RUNS, help="runs (medians are reported)")
    parser.add_argument("--workers", type=int, default=WORKERS, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=THREADS, help="threads per worker")
    parser.add_argument(
        "--queue-url",
        default=None,
        help="redis://host:6379/15, a database of its own: the bench empties the app's queue "
        "(default: the SQLite queue file)",
    )
    args = parser.parse_args(argv)
    if min(args.rate, args.seconds, args.runs, args.workers, args.threads) <= 0:
        parser.error("--rate, --seconds, --runs, --workers and --threads must be positive")
    options = Options(
        rate=args.rate,
        seconds=args.seconds,
        runs=args.runs,
        workers=args.workers,
        threads=args.threads,
        queue_url=args.queue_url,
    )
    found = rows_of(*run(options), options)
    print_table(found, title="Events endpoint under load")
    return 0 if found[0]["result"].startswith("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
