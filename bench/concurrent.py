"""Bench: two `b24app convert` runs on one portal at once, in every way they can be configured.

Each configuration gets a fresh sandbox portal (the same seed) and two CLI processes started
together (client both, activities move), each with its own working directory and temp directory
(its "machine"); what they share is what the configuration shares: nothing, one machine, one
SQLite journal, a Redis, a PostgreSQL journal and a Redis. With `--kill`, the first run is
killed -9 once the portal has answered a few dozen of its requests and is run again after the
other ended, as a person would. Afterwards the portal itself is counted: leads with more than one
deal, b24app clients no deal uses, active leads left unconverted, 503 answers; and the runs'
exit codes and wall time (against the leaky-bucket floor of one conversion's requests).

    python -m bench.concurrent                       # 1,000 leads, standard plan (minutes)
    python -m bench.concurrent --quick               # 100 leads, fast plan (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from b24app.crm.mapping import ORIGINATOR_ID
from bench.floors import ratio, time_floor
from bench.table import figure, print_table
from demo.checks import core_query
from demo.checks import rows as all_rows

CLI = ("-c", "from b24app.cli import main; main()")
FLAGS = ("--client", "both", "--activities", "move", "--json")
CONFIGS = ("nothing", "machine", "journal", "redis", "postgres+redis")
WHAT = {
    "nothing": "two machines, own SQLite journals, no Redis (they settle)",
    "machine": "one machine, own SQLite journals, no Redis",
    "journal": "one shared SQLite journal",
    "redis": "two machines, own SQLite journals, shared Redis",
    "postgres+redis": "two machines, PostgreSQL journal + Redis",
}
POSTGRES = os.environ.get("B24APP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("B24APP_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


@dataclass(frozen=True)
class Options:
    """One bench run's settings."""

    leads: int = 1000
    plan: str = "standard"
    seed: int = 5
    configs: tuple[str, ...] = CONFIGS
    kill: bool = False

    def command(self) -> str:
        """The command that reproduces this run."""
        return (
            f"python -m bench.concurrent --leads {self.leads} --plan {self.plan} "
            f"--seed {self.seed} --configs {','.join(self.configs)}"
            + (" --kill" if self.kill else "")
        )


@dataclass
class Race:
    """What one configuration's two runs left behind."""

    config: str
    codes: list[int] = field(default_factory=list)
    seconds: float = 0.0
    requests: int = 0
    active: int = 0
    two_deals: int = 0
    unused_clients: int = 0
    unconverted: int = 0
    busy_503: int = 0
    waited: int = 0
    settled: int = 0

    @property
    def ok(self) -> bool:
        """Every lead converted once, nothing left over, both runs exit 0."""
        return (
            self.codes == [0, 0]
            and self.two_deals == 0
            and self.unused_clients == 0
            and self.unconverted == 0
        )


@contextmanager
def _postgres() -> Iterator[str]:
    import psycopg

    name = f"b24app_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _envs(config: str, webhook: str, plan: str, tmp: Path, database: str) -> list[dict[str, str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("B24_", "B24APP_"))}
    machine = tmp / "machine"
    machine.mkdir(exist_ok=True)
    envs = []
    for name in ("one", "two"):
        home = tmp / name
        home.mkdir(exist_ok=True)
        env = {
            **base,
            "B24_WEBHOOK_URL": webhook,
            "B24APP_PLAN": plan,
            "TMPDIR": str(home if config in ("nothing", "redis", "postgres+redis") else machine),
            "B24APP_DATABASE_URL": f"sqlite:///{home / 'b24app.db'}",
        }
        if config == "journal":
            env["B24APP_DATABASE_URL"] = f"sqlite:///{tmp / 'shared.db'}"
        if config in ("redis", "postgres+redis"):
            env["B24APP_REDIS_URL"] = REDIS
        if config == "postgres+redis":
            env["B24APP_DATABASE_URL"] = database
        envs.append(env)
    return envs


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *CLI, "convert", *FLAGS],
        env=env,
        cwd=env["TMPDIR"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def race(config: str, options: Options) -> Race:
    """Run the two conversions of `config` on a fresh portal and count what they left."""
    from sandbox.server import Sandbox

    found = Race(config)
    with (
        tempfile.TemporaryDirectory(prefix="b24app-race-") as tmp,
        Sandbox(
            plan=options.plan, seed_leads=options.leads, seed=options.seed, webhook_code="race1"
        ) as portal,
        _postgres() if config == "postgres+redis" else _nothing() as database,
    ):
        query = core_query(portal)
        active = {
            int(r["ID"])
            for r in all_rows(query, "crm.lead.list", select=("ID", "STATUS_SEMANTIC_ID"))
            if r.get("STATUS_SEMANTIC_ID") == "P"
        }
        found.active = len(active)
        envs = _envs(config, portal.webhook_url, options.plan, Path(tmp), database)
        start = time.monotonic()
        runs = [_start(env) for env in envs]
        if options.kill:
            deadline = time.monotonic() + 120
            while portal.stats()["http_requests"] < 30 and time.monotonic() < deadline:
                time.sleep(0.05)
            runs[0].send_signal(signal.SIGKILL)
        answers = [run.communicate() for run in runs]
        if options.kill:
            runs[0] = _start(envs[0])
            answers[0] = runs[0].communicate()
        found.seconds = time.monotonic() - start
        found.codes = [run.returncode for run in runs]
        settled: set[int] = set()
        for out, err in answers:
            found.waited += "waiting for it to finish" in err
            if out.strip().startswith("{"):
                settled |= {
                    int(lead["lead_id"])
                    for lead in json.loads(out)["leads"]
                    if "another b24app run" in (lead.get("error") or "")
                }
        found.settled = len(settled)
        _count(query, active, found)
        stats = portal.stats()
        found.requests = stats["http_requests"]
        found.busy_503 = stats["query_limit_exceeded"]
    return found


@contextmanager
def _nothing() -> Iterator[str]:
    yield ""


def _count(query: Any, active: set[int], found: Race) -> None:
    mine = {"ORIGINATOR_ID": ORIGINATOR_ID}
    deals = list(all_rows(query, "crm.deal.list", filter=mine))
    per_lead = Counter(str(d.get("ORIGIN_ID")) for d in deals)
    found.two_deals = sum(1 for n in per_lead.values() if n > 1)
    used = {
        (kind, int(d.get(f"{kind.upper()}_ID") or 0))
        for d in deals
        for kind in ("contact", "company")
    }
    for kind in ("contact", "company"):
        made = all_rows(query, f"crm.{kind}.list", filter=mine, select=("ID",))
        found.unused_clients += sum(1 for r in made if (kind, int(r["ID"])) not in used)
    leads = all_rows(query, "crm.lead.list", select=("ID", "STATUS_ID"))
    stages = {int(r["ID"]): r["STATUS_ID"] for r in leads}
    found.unconverted = sum(1 for i in active if stages.get(i) != "CONVERTED")


def rows(*, quick: bool = False, options: Options | None = None) -> list[dict[str, str]]:
    """Summary rows for `python -m bench`: one per configuration."""
    options = options or (Options(leads=100, plan="fast") if quick else Options())
    out = []
    for config in options.configs:
        found = race(config, options)
        floor = time_floor(
            found.requests // 2 if config == "nothing" else found.requests, options.plan
        )
        out.append(
            figure(
                what=f"two converts at once, {options.leads:,} leads ({options.plan} plan)"
                + (", one killed -9 and rerun" if options.kill else "")
                + f": {WHAT[config]}",
                measured=(
                    f"{found.two_deals} leads with 2 deals, {found.unused_clients} unused clients, "
                    f"{found.unconverted}/{found.active} unconverted; exits {found.codes}; "
                    f"{found.seconds:.0f} s, {found.requests} requests, {found.busy_503} x 503; "
                    f"waited {found.waited}, settled {found.settled} leads"
                ),
                versus="goal 0 / 0 / 0, exits [0, 0]; time vs one conversion's bucket floor",
                ratio=ratio(found.seconds, floor),
                result="ok" if found.ok else "FAILED",
                reproduce=options.command(),
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the configurations and print their table; exit 1 when one failed."""
    parser = argparse.ArgumentParser(prog="python -m bench.concurrent", description=__doc__)
    parser.add_argument("--leads", type=int, default=Options.leads)
    parser.add_argument("--plan", default=Options.plan, choices=("standard", "enterprise", "fast"))
    parser.add_argument("--seed", type=int, default=Options.seed)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=", ".join(CONFIGS))
    parser.add_argument("--kill", action="store_true", help="kill -9 the first run, then rerun it")
    parser.add_argument("--quick", action="store_true", help="100 leads, fast plan")
    args = parser.parse_args(argv)
    configs = tuple(c for c in args.configs.split(",") if c)
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)} (known: {', '.join(CONFIGS)})")
    if args.quick:
        options = Options(leads=100, plan="fast", configs=configs, kill=args.kill)
    else:
        options = Options(args.leads, args.plan, args.seed, configs, args.kill)
    table = rows(options=options)
    print_table(table, title="two b24app runs on one portal at once")
    print(f"reproduce: {options.command()}")
    return 0 if all(row["result"] == "ok" for row in table) else 1


if __name__ == "__main__":
    sys.exit(main())
