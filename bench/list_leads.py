"""Listing leads: b24app's keyset client against fast-bitrix24's `get_all`, side by side.

Each client lists every lead of its own fresh sandbox portal (same seed, same data, the standard
plan's limits). The sandbox counts HTTP requests; the floor is the fewest requests that can
return N rows at 2,500 rows per request without COUNT (N // 2500 + 1: the last one proves the
end). With `--runs N` each client lists its portal N times (the median time is reported).
Run: `python -m bench.list_leads --leads 100000 --runs 3`.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from b24app.config import PLANS, RateLimit
from b24app.rest import PortalClient
from bench.floors import ratio
from bench.table import figure, print_table
from sandbox import Sandbox

ROWS_PER_REQUEST = 2_500


@dataclass(frozen=True)
class Run:
    """One client's listing: how many rows, HTTP requests, 503s and seconds it took."""

    name: str
    rows: int
    ids: frozenset[str]
    requests: int
    rejected: int
    seconds: float


def measure(
    name: str,
    leads: int,
    plan: str,
    seed: int,
    list_all: Callable[[str], list[dict]],
    *,
    runs: int = 1,
) -> Run:
    """List every lead of a fresh sandbox with `list_all(webhook_url)`, `runs` times (the
    median time; requests and 503s of the first run). Listing changes nothing, so the runs
    share the portal; each waits until the leaky bucket has drained again."""
    rate, _ = PLANS[plan]
    times: list[float] = []
    with Sandbox(seed_leads=leads, seed=seed, plan=plan) as portal:
        for attempt in range(runs):
            before = portal.stats()
            started = time.perf_counter()
            rows = list_all(portal.webhook_url)
            times.append(time.perf_counter() - started)
            after = portal.stats()
            if attempt == 0:
                first, first_rows = (before, after), rows
            if attempt + 1 < runs:
                time.sleep((after["http_requests"] - before["http_requests"]) / rate)
    before, after = first
    return Run(
        name=name,
        rows=len(first_rows),
        ids=frozenset(str(r["ID"]) for r in first_rows),
        requests=after["http_requests"] - before["http_requests"],
        rejected=after["query_limit_exceeded"] - before["query_limit_exceeded"],
        seconds=statistics.median(times),
    )


def b24app_listing(plan: str) -> Callable[[str], list[dict]]:
    """b24app: keyset pages chained 50 per batch, `start=-1`."""

    def list_all(webhook_url: str) -> list[dict]:
        """Every lead through b24app."""
        with PortalClient.from_webhook(webhook_url, rate=RateLimit(*PLANS[plan])) as client:
            return list(client.iterate("crm.lead.list"))

    return list_all


def fast_bitrix24_listing(plan: str) -> Callable[[str], list[dict]]:
    """fast-bitrix24 1.8.14: `get_all` (a COUNT, then offset pages in parallel batches)."""

    def list_all(webhook_url: str) -> list[dict]:
        """Every lead through fast-bitrix24."""
        from fast_bitrix24 import Bitrix

        logging.getLogger("fast_bitrix24").setLevel(logging.WARNING)
        per_second, burst = PLANS[plan]
        bitrix = Bitrix(
            webhook_url, verbose=False, requests_per_second=per_second, request_pool_size=burst
        )
        return list(bitrix.get_all("crm.lead.list"))

    return list_all


def floor(leads: int) -> int:
    """The fewest requests that can list `leads` rows without COUNT."""
    return leads // ROWS_PER_REQUEST + 1


def run_both(leads: int, plan: str, seed: int, runs: int) -> list[Run]:
    """b24app's listing, then fast-bitrix24's, each on its own portal."""
    return [
        measure("b24app", leads, plan, seed, b24app_listing(plan), runs=runs),
        measure("fast-bitrix24 get_all", leads, plan, seed, fast_bitrix24_listing(plan), runs=runs),
    ]


def _verdict(run: Run, base: Run, leads: int) -> str:
    if run.rows == leads and run.ids == base.ids:
        return "ok"
    return f"BROKEN: {run.rows} rows of {leads}"


def detail_rows(runs: list[Run], leads: int, plan: str) -> list[dict[str, str]]:
    """Both listings side by side (the table `python -m bench.list_leads` prints)."""
    base = runs[0]
    return [
        {
            "contender": run.name,
            "leads": f"{leads} ({plan})",
            "requests": str(run.requests),
            "req floor": str(floor(leads)),
            "req/floor": ratio(run.requests, floor(leads)),
            "req vs b24app": ratio(run.requests, base.requests),
            "time s": f"{run.seconds:.1f}",
            "time vs b24app": ratio(run.seconds, base.seconds),
            "503s": str(run.rejected),
            "result": _verdict(run, base, leads),
        }
        for run in runs
    ]


def command(leads: int, plan: str, runs: int) -> str:
    """The command that reproduces a run."""
    return f"python -m bench.list_leads --leads {leads} --plan {plan} --runs {runs}"


def rows(
    *,
    quick: bool = False,
    leads: int | None = None,
    plan: str | None = None,
    seed: int = 1,
    runs: int | None = None,
) -> list[dict[str, str]]:
    """Summary rows for `python -m bench`: b24app against the request floor, fast-bitrix24
    against b24app (default 100,000 leads, standard plan, median of 3; `quick`: 2,000, fast)."""
    leads = leads if leads is not None else (2_000 if quick else 100_000)
    plan = plan or ("fast" if quick else "standard")
    runs = runs or (1 if quick else 3)
    base, peer = run_both(leads, plan, seed, runs)
    what = f"list {leads:,} leads ({plan} plan{f', median of {runs} runs' if runs > 1 else ''})"
    return [
        figure(
            what=f"{what}: b24app requests, time",
            measured=f"{base.requests} requests, {base.seconds:.1f} s, {base.rejected} x 503",
            versus=f"floor {floor(leads)} requests ({ROWS_PER_REQUEST} rows each, no COUNT)",
            ratio=ratio(base.requests, floor(leads)),
            result=_verdict(base, base, leads),
            reproduce=command(leads, plan, runs),
        ),
        figure(
            what=f"{what}: peer {peer.name}",
            measured=f"{peer.requests} requests, {peer.seconds:.1f} s, {peer.rejected} x 503",
            versus=f"b24app: {base.requests} requests, {base.seconds:.1f} s",
            ratio=(
                f"req {ratio(peer.requests, base.requests)}, "
                f"time {ratio(peer.seconds, base.seconds)}"
            ),
            result=_verdict(peer, base, leads),
            reproduce=command(leads, plan, runs),
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    """Run both listings and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.list_leads", description=__doc__)
    parser.add_argument("--leads", type=int, default=100_000, help="leads in the portal")
    parser.add_argument(
        "--plan",
        default="standard",
        choices=sorted(PLANS),
        help="the sandbox plan (and the clients' rate limit)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1, help="listings per client (median time)")
    args = parser.parse_args(argv)
    if args.leads < 0 or args.runs < 1:
        parser.error("--leads must be >= 0 and --runs >= 1")
    print_table(
        detail_rows(run_both(args.leads, args.plan, args.seed, args.runs), args.leads, args.plan),
        title=f"crm.lead.list, {args.leads} leads, {args.plan} plan "
        f"(floor: {ROWS_PER_REQUEST} rows per request, no COUNT)",
    )


if __name__ == "__main__":
    main()
