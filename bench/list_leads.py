"""Listing leads: b24app's keyset client against fast-bitrix24's `get_all`, side by side.

Each client lists every lead of its own fresh sandbox portal (same seed, same data, the standard
plan's limits). The sandbox counts HTTP requests; the floor is the fewest requests that can
return N rows at 2,500 rows per request without COUNT (N // 2500 + 1: the last one proves the
end). Run: `python -m bench.list_leads --leads 20000`.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from b24app.config import PLANS, RateLimit
from b24app.rest import PortalClient
from bench.floors import ratio
from bench.table import print_table
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
    name: str, leads: int, plan: str, seed: int, list_all: Callable[[str], list[dict]]
) -> Run:
    """List every lead of a fresh sandbox with `list_all(webhook_url)`."""
    with Sandbox(seed_leads=leads, seed=seed, plan=plan) as portal:
        started = time.perf_counter()
        rows = list_all(portal.webhook_url)
        seconds = time.perf_counter() - started
        stats = portal.stats()
    return Run(
        name=name,
        rows=len(rows),
        ids=frozenset(str(r["ID"]) for r in rows),
        requests=stats["http_requests"],
        rejected=stats["query_limit_exceeded"],
        seconds=seconds,
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


def rows(
    *, quick: bool = False, leads: int | None = None, plan: str | None = None, seed: int = 1
) -> list[dict[str, str]]:
    """Both listings side by side: the bench's rows (`quick`: 2,000 leads on the fast plan)."""
    leads = leads if leads is not None else (2_000 if quick else 20_000)
    plan = plan or ("fast" if quick else "standard")
    runs = [
        measure("b24app", leads, plan, seed, b24app_listing(plan)),
        measure("fast-bitrix24 get_all", leads, plan, seed, fast_bitrix24_listing(plan)),
    ]
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
            "result": "ok"
            if run.rows == leads and run.ids == base.ids
            else f"BROKEN: {run.rows} rows of {leads}",
        }
        for run in runs
    ]


def main(argv: list[str] | None = None) -> None:
    """Run both listings and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.list_leads", description=__doc__)
    parser.add_argument("--leads", type=int, default=20_000, help="leads in the portal")
    parser.add_argument(
        "--plan",
        default="standard",
        choices=sorted(PLANS),
        help="the sandbox plan (and the clients' rate limit)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.leads < 0:
        parser.error("--leads must be >= 0")
    print_table(
        rows(leads=args.leads, plan=args.plan, seed=args.seed),
        title=f"crm.lead.list, {args.leads} leads, {args.plan} plan "
        f"(floor: {ROWS_PER_REQUEST} rows per request, no COUNT)",
    )


if __name__ == "__main__":
    main()
