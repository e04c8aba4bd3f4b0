"""`python -m bench [--quick] [--only NAME ...]` (`make bench`): every bench in turn, one table.

A bench is a module of this package that defines
`rows(*, quick: bool = False) -> list[dict[str, str]]` (its default run, or a small fast-plan
one), each row made by `bench.table.figure`: what was measured, the figure, the floor, goal or
peer it is held against, the ratio, the verdict and the command that reproduces it. The rows of
all benches are printed as one table. Modules without `rows` (floors, peers, table, loadgen) are
helpers. Each bench also runs alone, often with a wider table: `python -m bench.<name> --help`.

    convert     conversion requests and wall time vs the platform floors; naive and
                fast-bitrix24 peers (2,000 leads, standard plan: about 10 minutes)
    events      /events under gunicorn at 200 requests/s, p50/p99 vs an empty Flask view
    list_leads  listing 100,000 leads vs the request floor and fast-bitrix24 get_all
    concurrent  two converts on one portal at once, per configuration: duplicates, exits
    customfields  conversion with 10 custom fields per entity vs the request floor and vs none;
                the file field's downloads apart (500 leads, fast plan: about a minute)
    memory      peak RSS of `b24app convert` on 100,000 leads vs the 300 MB goal (8 minutes)
    neighbour   converting 1,000 leads beside another app spending 40% of the portal's budget:
                failed leads, 503s, wall time vs the floor for the budget left (~3 minutes)
    undo        convert then undo, six policy variants: the portal's diff (goal empty), requests vs
                the undo's floor (goal 1.05x), 503s (~3 minutes)
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from collections.abc import Callable, Sequence

import bench
from bench.table import print_table

Rows = list[dict[str, str]]


def benches() -> dict[str, Callable[..., Rows]]:
    """Bench name -> a `rows(quick=...)` callable, in name order."""
    found: dict[str, Callable[..., Rows]] = {}
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        rows = getattr(module, "rows", None)
        if callable(rows):
            found[info.name] = rows
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benches and print one table; exit 1 if a bench raised."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small, fast-plan runs")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benches")
    args = parser.parse_args(argv)
    found = benches()
    if args.only:
        unknown = sorted(set(args.only) - set(found))
        if unknown:
            parser.error(f"unknown bench(es): {', '.join(unknown)} (known: {', '.join(found)})")
        found = {name: rows for name, rows in found.items() if name in args.only}
    collected: Rows = []
    failed = []
    for name, rows in found.items():
        tick = time.monotonic()
        print(f"bench {name} ...", file=sys.stderr, flush=True)
        try:
            got = rows(quick=args.quick)
        except Exception as exc:  # one broken bench must not hide the others' figures
            failed.append(name)
            got = [{"result": f"ERROR {type(exc).__name__}: {exc}"}]
        print(f"bench {name}: {time.monotonic() - tick:.0f} s", file=sys.stderr, flush=True)
        collected.extend(
            {"bench": name, **{k: v for k, v in row.items() if k != "bench"}} for row in got
        )
    print_table(collected, title="b24app benchmarks" + (" (quick)" if args.quick else ""))
    print(
        "reproduce: python -m bench"
        + (" --quick" if args.quick else "")
        + "   (one bench: python -m bench.<name> --help)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
