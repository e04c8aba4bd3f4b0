"""Bench: converting every active lead - b24app against the platform floor and two peers.

Each contender gets a fresh sandbox portal seeded identically (same lead count and seed) and
converts every active lead with client `both` and activities `move`. Measured from the sandbox's
own counters: HTTP requests against the floor ceil(writes/50) + ceil(reads/50), wall time against
the leaky bucket's (requests - burst) / rate, and 503 QUERY_LIMIT_EXCEEDED answers (goal 0).
Afterwards the portal is checked (every lead converted once, no duplicates by ORIGIN_ID, clients
and activities as the policy says); a contender that fails a check is marked broken.

Peers (bench/peers.py): a naive script, and fast-bitrix24 passes with a whole pass per call()
(its parallel batches) or 50 items per call(). The naive peer needs one request per call at
2/s (hours for 2,000 leads on the standard plan), so it converts the first `--naive-leads`
active leads and its figures are scaled up linearly, which the table says.

    python -m bench.convert                        # 2,000 leads, standard plan (minutes)
    python -m bench.convert --quick                # 60 leads, fast plan (seconds)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from b24app.config import PLANS, Settings
from b24app.crm.policy import Policy
from bench.floors import Usage, ratio, time_floor, usage_between
from bench.table import figure
from demo.checks import Check, Snapshot, core_query, snapshot, verify

CLIENT, ACTIVITIES = "both", "move"
QUICK = {"leads": 60, "plan": "fast", "naive_leads": 20}


@dataclass(frozen=True)
class Options:
    """One bench run's settings."""

    leads: int = 2000
    plan: str = "standard"
    seed: int = 1
    naive_leads: int = 60
    contenders: tuple[str, ...] = ("b24app", "naive", "fast-bitrix24", "fast-bitrix24-chunked")

    def command(self) -> str:
        """The command that reproduces this run."""
        return (
            f"python -m bench.convert --leads {self.leads} --plan {self.plan} "
            f"--seed {self.seed} --naive-leads {self.naive_leads} "
            f"--contenders {','.join(self.contenders)}"
        )


@dataclass(frozen=True)
class Outcome:
    """One contender's run: cost, correctness, and how much it was scaled."""

    name: str
    usage: Usage
    seconds: float
    converted: int
    checks: tuple[Check, ...]
    errors: tuple[str, ...] = ()
    scale: float = 1.0
    measured_leads: int = 0

    @property
    def ok(self) -> bool:
        """Every check passed and nothing failed."""
        return not self.errors and all(check.ok for check in self.checks)


def policy() -> Policy:
    """The bench policy: client both, activities move, pipeline 0."""
    return Policy.from_dict({"client": CLIENT, "activities": ACTIVITIES, "pipeline": 0})


Runner = Callable[[Any, Options, Snapshot], tuple[int, tuple[str, ...]]]


def measure(name: str, options: Options, runner: Runner, *, limit: int | None = None) -> Outcome:
    """Run one contender on a fresh sandbox and check the portal afterwards."""
    from sandbox import Sandbox

    with Sandbox(seed_leads=options.leads, seed=options.seed, plan=options.plan) as portal:
        query = core_query(portal)
        before = snapshot(query)
        everyone = len(before.active_leads)
        if limit is not None and limit < everyone:
            chosen = before.active_leads[:limit]
            before = replace(
                before,
                active_leads=chosen,
                open_activities={
                    lead: acts for lead, acts in before.open_activities.items() if lead in chosen
                },
            )
        stats = portal.stats()
        tick = time.monotonic()
        converted, errors = runner(portal, options, before)
        seconds = time.monotonic() - tick
        usage = usage_between(stats, portal.stats())
        checks = tuple(verify(query, before, client=CLIENT, activities=ACTIVITIES))
    measured = len(before.active_leads)
    return Outcome(
        name,
        usage,
        seconds,
        converted,
        checks,
        errors,
        scale=everyone / measured if measured else 1.0,
        measured_leads=measured,
    )


def run_b24app(portal: Any, options: Options, before: Snapshot) -> tuple[int, tuple[str, ...]]:
    """b24app's conversion service through its webhook client and a journal in a temp file."""
    from b24app.crm import conversion
    from b24app.portals import open_portal
    from b24app.store.journal import Journal

    with tempfile.TemporaryDirectory(prefix="b24app-bench-") as tmp:
        settings = Settings.from_env(
            {
                "B24_WEBHOOK_URL": portal.webhook_url,
                "B24APP_PLAN": options.plan,
                "B24APP_DATABASE_URL": f"sqlite:///{Path(tmp) / 'j.db'}",
            }
        )
        target = open_portal(settings)
        journal = Journal.open(settings.database_url, portal=target.key)
        report = conversion.convert(target.client, journal, policy())
    errors = tuple(
        f"lead {lead.lead_id}: {lead.error}" for lead in report.leads if lead.status == "failed"
    )
    return report.converted, errors


def run_naive(portal: Any, options: Options, before: Snapshot) -> tuple[int, tuple[str, ...]]:
    """One plain HTTP call per REST call, 1/rate seconds apart."""
    from bench.peers import naive_convert

    rate, _ = PLANS[options.plan]
    result = naive_convert(
        portal.webhook_url, rate=rate, policy=policy(), limit=len(before.active_leads)
    )
    return result.converted, tuple(result.errors)


def run_fast_bitrix24(
    portal: Any, options: Options, before: Snapshot, *, chunked: bool = False
) -> tuple[int, tuple[str, ...]]:
    """fast-bitrix24, pass by pass, each pass in one call() (or in calls of 50 items)."""
    from bench.peers import fast_bitrix24_convert

    rate, burst = PLANS[options.plan]
    result = fast_bitrix24_convert(
        portal.webhook_url, rate=rate, burst=burst, policy=policy(), chunked=chunked
    )
    return result.converted, tuple(result.errors)


def run_fast_bitrix24_chunked(
    portal: Any, options: Options, before: Snapshot
) -> tuple[int, tuple[str, ...]]:
    """fast-bitrix24, pass by pass, call() fed 50 items at a time."""
    return run_fast_bitrix24(portal, options, before, chunked=True)


CONTENDERS: dict[str, tuple[str, Runner]] = {
    "b24app": ("b24app", run_b24app),
    "naive": ("naive (requests, 1 call each)", run_naive),
    "fast-bitrix24": ("fast-bitrix24 passes (whole pass per call)", run_fast_bitrix24),
    "fast-bitrix24-chunked": (
        "fast-bitrix24 passes (50 items per call)",
        run_fast_bitrix24_chunked,
    ),
}


def run(options: Options) -> list[Outcome]:
    """The chosen contenders, one after the other (ratios are against the first)."""
    return [
        measure(
            CONTENDERS[key][0],
            options,
            CONTENDERS[key][1],
            limit=options.naive_leads if key == "naive" else None,
        )
        for key in options.contenders
    ]


def rows_of(outcomes: Sequence[Outcome], options: Options) -> list[dict[str, str]]:
    """The table rows: figures (scaled where needed) and ratios against b24app."""
    base = outcomes[0]
    versus = base.name.split(" ")[0]
    found = []
    for outcome in outcomes:
        requests = outcome.usage.requests * outcome.scale
        seconds = outcome.seconds * outcome.scale
        floor_requests = outcome.usage.request_floor * outcome.scale
        floor_seconds = time_floor(round(requests), options.plan)
        scaled = (
            f" (measured on {outcome.measured_leads} leads, x{outcome.scale:.1f})"
            if outcome.scale != 1.0
            else ""
        )
        found.append(
            {
                "contender": outcome.name + scaled,
                "leads": f"{options.leads} ({options.plan})",
                "requests": f"{requests:.0f}",
                "req floor": f"{floor_requests:.0f}",
                "req/floor": ratio(requests, floor_requests),
                f"req vs {versus}": ratio(requests, base.usage.requests * base.scale),
                "time s": f"{seconds:.1f}",
                "time floor s": f"{floor_seconds:.1f}",
                "time/floor": ratio(seconds, floor_seconds),
                f"time vs {versus}": ratio(seconds, base.seconds * base.scale),
                "503s": f"{outcome.usage.rejected_503 * outcome.scale:.0f}",
                "result": "ok" if outcome.ok else "BROKEN: " + _why(outcome),
            }
        )
    return found


def _why(outcome: Outcome) -> str:
    reasons = list(outcome.errors[:2])
    reasons += [f"{c.name} ({c.detail})" for c in outcome.checks if not c.ok]
    return "; ".join(reasons)[:240]


def figures(outcomes: Sequence[Outcome], options: Options) -> list[dict[str, str]]:
    """Summary rows for `python -m bench`: the first contender against the platform floors
    (requests, wall time), then each peer against it."""
    base = outcomes[0]
    leads = f"{options.leads:,} leads ({options.plan} plan, client {CLIENT}, {ACTIVITIES})"
    requests = base.usage.requests
    active = base.measured_leads or 1
    time_floor_s = time_floor(requests, options.plan)
    verdict = "ok" if base.ok else "BROKEN: " + _why(base)
    found = [
        figure(
            what=f"convert {leads}: {base.name} HTTP requests",
            measured=f"{requests} ({requests / active:.3f} per active lead)",
            versus=f"floor {base.usage.request_floor} (ceil(writes/50) + ceil(reads/50))",
            ratio=ratio(requests, base.usage.request_floor),
            result=verdict,
            reproduce=options.command(),
        ),
        figure(
            what=f"convert {leads}: {base.name} wall time, 503s received",
            measured=f"{base.seconds:.1f} s, {base.usage.rejected_503} x 503",
            versus=f"leaky-bucket floor {time_floor_s:.1f} s, goal 0 x 503",
            ratio=ratio(base.seconds, time_floor_s),
            result=verdict,
            reproduce=options.command(),
        ),
    ]
    for peer in outcomes[1:]:
        scaled = (
            f" (measured on {peer.measured_leads} leads, x{peer.scale:.1f})"
            if peer.scale != 1.0
            else ""
        )
        peer_requests = peer.usage.requests * peer.scale
        peer_seconds = peer.seconds * peer.scale
        found.append(
            figure(
                what=f"convert {leads}: peer {peer.name}{scaled}",
                measured=(
                    f"{peer_requests:.0f} requests, {peer_seconds:.1f} s, "
                    f"{peer.usage.rejected_503 * peer.scale:.0f} x 503"
                ),
                versus=f"{base.name}: {requests} requests, {base.seconds:.1f} s",
                ratio=(
                    f"req {ratio(peer_requests, requests)}, "
                    f"time {ratio(peer_seconds, base.seconds)}"
                ),
                result="ok" if peer.ok else "BROKEN: " + _why(peer),
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
        prog="python -m bench.convert",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--leads", type=int, default=None, help="seeded leads (default 2000)")
    parser.add_argument(
        "--plan",
        choices=sorted(PLANS),
        default=None,
        help="sandbox plan and client rate limit (default standard)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--naive-leads",
        type=int,
        default=None,
        help="active leads the naive peer converts before scaling (default 60)",
    )
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated, first is the baseline ({', '.join(CONTENDERS)})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="60 leads on the fast plan, 20 for the naive peer"
    )
    args = parser.parse_args(argv)
    contenders = tuple(word.strip() for word in args.contenders.split(",") if word.strip())
    unknown = [word for word in contenders if word not in CONTENDERS]
    if unknown or not contenders:
        parser.error(f"--contenders: choose from {', '.join(CONTENDERS)} (got {args.contenders})")
    base = Options(**QUICK) if args.quick else Options()
    return replace(
        base,
        seed=args.seed,
        contenders=contenders,
        leads=args.leads if args.leads is not None else base.leads,
        plan=args.plan or base.plan,
        naive_leads=args.naive_leads if args.naive_leads is not None else base.naive_leads,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench and print its table; exit 1 when b24app's own run is broken."""
    from bench.table import print_table

    options = parse(argv)
    outcomes = run(options)
    print_table(rows_of(outcomes, options), title="Lead conversion: client both, activities move")
    print(f"reproduce: {options.command()}")
    return 0 if all(o.ok for o in outcomes if o.name == "b24app") else 1


if __name__ == "__main__":
    sys.exit(main())
