"""`python -m chaos [--quick] [--leads N] [--repeat N] [--cpu-load K] [--database-url URL]
[--queue-url URL] [--redis-url URL] [--keep DIR]`: see the package doc. Prints each run's timeline,
verdict table and longest stall (with `--repeat`, a line per run and a summary line); exit 0 when
every check of every run passed, 1 otherwise."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

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


def build_parser() -> argparse.ArgumentParser:
    """The command line; other chaos modes add their arguments here."""
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
        "--database-url",
        default=None,
        help="app database (default: SQLite in the run's directory; postgresql://.../DB: each "
        "run creates a scratch database on that server, connecting through DB, and drops it)",
    )
    parser.add_argument("--queue-url", default=None, help="redis://... (default: the SQLite queue)")
    parser.add_argument(
        "--redis-url",
        default=None,
        help="B24APP_REDIS_URL: shared limits and locks (default: the queue's when it is Redis)",
    )
    parser.add_argument("--no-flip", action="store_true", help="no mode switch mid-run")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait")
    parser.add_argument("--repeat", type=int, default=1, help="runs, one after another")
    parser.add_argument(
        "--cpu-load", type=int, default=0, help="busy-loop processes during each run"
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep each run's files (worker logs, database, queue) under this directory "
        "(default: kept only for a failed run)",
    )
    parser.add_argument("--neighbour", type=float, metavar="FRACTION", help=neighbour.HELP)
    return parser


def options_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Options:
    """The run's options from parsed arguments (usage errors through `parser`)."""
    base = Options.quick() if args.quick else Options()
    leads = args.leads if args.leads is not None else base.leads
    if leads < 100 or args.workers < 1:
        parser.error("--leads must be at least 100 and --workers at least 1")
    if args.repeat < 1 or args.cpu_load < 0:
        parser.error("--repeat must be at least 1 and --cpu-load at least 0")
    return replace(
        base,
        leads=leads,
        seed=args.seed,
        faults=args.faults or base.faults,
        workers=args.workers,
        database_url=args.database_url,
        queue_url=args.queue_url,
        redis_url=args.redis_url,
        flip_at=None if args.no_flip else Options().flip_at,
        timeout=args.timeout,
        cpu_load=args.cpu_load,
        keep=args.keep,
    )


def parse(argv: Sequence[str] | None) -> Options:
    """Options from the command line."""
    parser = build_parser()
    return options_from(parser.parse_args(argv), parser)


def run_once(options: Options, console: Console, *, share: float | None = None) -> Result:
    """One run with its timeline and verdict table printed; `share`: a noisy neighbour's."""
    started = time.monotonic()
    console.print(f"chaos: {options.leads:,} leads, seed {options.seed}", markup=False)

    def say(text: str) -> None:
        console.print(text, markup=False)

    with neighbour.beside_every_sandbox(share, seed=options.seed, say=say):
        result = run(options, say=say)
    console.print(verdict_table(result, options))
    verdict = "PASSED" if result.ok else "FAILED"
    console.print(
        f"chaos {verdict} in {time.monotonic() - started:.0f} s, longest stall {result.stall}; "
        f"reproduce: {options.command()}",
        markup=False,
    )
    return result


def run_series(
    options: Options, repeat: int, console: Console, *, share: float | None = None
) -> list[Result]:
    """`repeat` runs, one line each, then the summary line."""
    results: list[Result] = []
    for number in range(1, repeat + 1):
        keep = options.keep / f"run-{number:02d}" if options.keep is not None else None
        result = run_once(replace(options, keep=keep), console, share=share)
        results.append(result)
        console.print(
            f"run {number}/{repeat}: {'PASSED' if result.ok else 'FAILED'} in "
            f"{result.seconds:.0f} s, longest stall {result.stall}"
            + (f"; files in {result.files}" if result.files is not None else ""),
            markup=False,
        )
    console.print(summary(results, options), markup=False)
    return results


def summary(results: Sequence[Result], options: Options) -> str:
    """The series in one line: passes, the worst stall, the conditions."""
    worst = max(range(len(results)), key=lambda i: results[i].stall.seconds)
    passed = sum(result.ok for result in results)
    return (
        f"chaos summary: {passed}/{len(results)} passed; worst stall "
        f"{results[worst].stall.seconds:.1f} s (run {worst + 1}); "
        f"{options.leads:,} leads, seed {options.seed}, cpu load {options.cpu_load}, "
        f"{'postgresql' if (options.database_url or '').startswith('postgres') else 'sqlite'} "
        f"database, {'redis' if options.queue_url else 'sqlite'} queue"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario (`--repeat` times), print the verdicts; 0 when every run passed."""
    parser = build_parser()
    args = parser.parse_args(argv)
    options = options_from(args, parser)
    console = Console(highlight=False, width=160)
    if args.neighbour is not None and not 0 < args.neighbour < 1:
        parser.error("--neighbour takes a fraction between 0 and 1 (e.g. 0.4)")
    if args.repeat == 1:
        return 0 if run_once(options, console, share=args.neighbour).ok else 1
    results = run_series(options, args.repeat, console, share=args.neighbour)
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
