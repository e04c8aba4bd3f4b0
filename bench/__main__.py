"""`python -m bench [--quick] [--only NAME ...]` (`make bench`): every bench in turn, one table.

A bench is a module of this package that defines
`rows(*, quick: bool = False) -> list[dict[str, str]]` (its default run, or a small fast-plan
one); the rows of all benches are printed as one table whose columns are the union of their keys.
Modules without `rows` (floors, peers, table) are helpers. Each bench also runs alone:
`python -m bench.<name> --help`.
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
