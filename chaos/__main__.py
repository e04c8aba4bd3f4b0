"""`python -m chaos [--quick] [--leads N] [--database-url URL] [--queue-url URL]`: see the package
doc. Prints the timeline and a verdict table; exit 0 when every check passed, 1 otherwise."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

from rich.console import Console
from rich.table import Table

from chaos import neighbour
from chaos.scenario import FAULTS, QUICK_LEADS, Options, Result, run


def verdict_table(result: Result, options: Options) -> Table:
    """One row per check, then the run's figures."""
    table = Table(title=f"Chaos verdict: {options.leads:,} leads", title_justify="left")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for check in result.checks:
        table.add_row(check.name, "[green]PASS[/]" if check.ok else "[red]FAIL[/]", check.detail)
    stats = result.stats
    faults = ", ".join(f"{k} {v}" for k, v in sorted(stats.get("faults", {}).items())) or "none"
    statuses = stats.get("statuses", {})
    table.add_row(
        "faults injected",
        "",
        f"{faults} over {stats.get('http_requests', 0)} REST requests "
        f"(answers: {', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))})",
    )
    table.add_row(
        "tokens",
        "",
        f"{stats.get('tokens_expired', 0)} expired, {stats.get('refreshes', 0)} refreshes",
    )
    table.add_row(
        "limits",
        "",
        f"{stats.get('query_limit_exceeded', 0)} x 503 QUERY_LIMIT_EXCEEDED, "
        f"{stats.get('operation_time_limit', 0)} x 429",
    )
    return table


def parse(argv: Sequence[str] | None) -> Options:
    """Options from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description=sys.modules["chaos"].__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_LEADS:,} leads")
    parser.add_argument("--leads", type=int, default=None, help="seeded leads (default 10,000)")
    parser.add_argument("--seed", type=int, default=1, help="data and fault seed")
    parser.add_argument(
        "--faults",
        default=None,
        help=f"sandbox fault spec (default {FAULTS}; --quick: tokens expire every 50)",
    )
    parser.add_argument("--workers", type=int, default=2, help="b24app worker processes")
    parser.add_argument(
        "--database-url", default=None, help="app database (default: SQLite in a temp dir)"
    )
    parser.add_argument("--queue-url", default=None, help="redis://... (default: the SQLite queue)")
    parser.add_argument("--no-flip", action="store_true", help="no mode switch mid-run")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait")
    parser.add_argument("--neighbour", type=float, metavar="FRACTION", help=neighbour.HELP)
    args = parser.parse_args(argv)
    base = Options.quick() if args.quick else Options()
    leads = args.leads if args.leads is not None else base.leads
    if leads < 100 or args.workers < 1:
        parser.error("--leads must be at least 100 and --workers at least 1")
    return replace(
        base,
        leads=leads,
        seed=args.seed,
        faults=args.faults or base.faults,
        workers=args.workers,
        database_url=args.database_url,
        queue_url=args.queue_url,
        flip_at=None if args.no_flip else Options().flip_at,
        timeout=args.timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario, print the verdict; 0 when every check passed."""
    options = parse(argv)
    console = Console(highlight=False, width=160)
    started = time.monotonic()
    console.print(f"chaos: {options.leads:,} leads, seed {options.seed}", markup=False)

    def say(text: str) -> None:
        console.print(text, markup=False)

    with neighbour.beside_every_sandbox(neighbour.option(argv), seed=options.seed, say=say):
        result = run(options, say=say)
    console.print(verdict_table(result, options))
    verdict = "PASSED" if result.ok else "FAILED"
    console.print(
        f"chaos {verdict} in {time.monotonic() - started:.0f} s; reproduce: {options.command()}",
        markup=False,
    )
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
