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


def table(runs: list[Run], leads: int) -> str:
    """The runs as a small text table, ratios against the first run and the floor."""
    base = runs[0]
    lines = [
        f"{'client':<16} {'rows':>7} {'requests':>8} {'503s':>5} {'seconds':>8} "
        f"{'req/floor':>9} {'req ratio':>9} {'time ratio':>10}"
    ]
    for run in runs:
        lines.append(
            f"{run.name:<16} {run.rows:>7} {run.requests:>8} {run.rejected:>5} "
            f"{run.seconds:>8.2f} {run.requests / floor(leads):>9.2f} "
            f"{run.requests / base.requests:>9.2f} {run.seconds / base.seconds:>10.2f}"
        )
    lines.append(
        f"floor: {floor(leads)} requests for {leads} leads "
        f"({ROWS_PER_REQUEST} rows per request, no COUNT)"
    )
    return "\n".join(lines)


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
    runs = [
        measure("b24app", args.leads, args.plan, args.seed, b24app_listing(args.plan)),
        measure(
            "fast-bitrix24", args.leads, args.plan, args.seed, fast_bitrix24_listing(args.plan)
        ),
    ]
    print(f"crm.lead.list, {args.leads} leads, {args.plan} plan")
    print(table(runs, args.leads))
    if runs[0].ids != runs[1].ids:
        print(
            f"WARNING: the clients returned different rows "
            f"({len(runs[0].ids ^ runs[1].ids)} differ)"
        )


if __name__ == "__main__":
    main()
