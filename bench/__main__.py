"""`python -m bench [--quick] [--only NAME ...]` (`make bench`): every bench in turn, one table.

A bench is a module of this package that defines
`rows(*, quick: bool = False) -> list[dict[str, str]]` (its default run, or a small fast-plan
one); the rows of all benches are printed as one table whose columns are the union of their keys.
A module without `rows` but with a known adapter below (list_leads) is run through the adapter;
other modules (floors, peers, table) are helpers. Each bench also runs alone:
`python -m bench.<name> --help`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType

import bench
from bench.floors import ratio
from bench.table import print_table

Rows = list[dict[str, str]]


def _list_leads_rows(module: ModuleType, *, quick: bool) -> Rows:
    """bench/list_leads.py through its public functions (it prints its own table alone)."""
    leads, plan = (2_000, "fast") if quick else (20_000, "standard")
    runs = [
        module.measure("b24app", leads, plan, 1, module.b24app_listing(plan)),
        module.measure("fast-bitrix24 get_all", leads, plan, 1, module.fast_bitrix24_listing(plan)),
    ]
    floor = module.floor(leads)
    base = runs[0]
    return [
        {
            "contender": run.name,
            "leads": f"{leads} ({plan})",
            "requests": str(run.requests),
            "req floor": str(floor),
            "req/floor": ratio(run.requests, floor),
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


ADAPTERS: dict[str, Callable[..., Rows]] = {"list_leads": _list_leads_rows}


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
        elif info.name in ADAPTERS:
            adapter = ADAPTERS[info.name]
            found[info.name] = lambda *, quick=False, m=module, a=adapter: a(m, quick=quick)
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
