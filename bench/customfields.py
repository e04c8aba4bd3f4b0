"""Bench: converting leads with custom fields - requests against the platform floor.

A sandbox portal is seeded (`--leads`, client both, activities move), then lead, deal, contact
and company each get 10 custom fields with the same labels (string, integer, double, boolean,
date, money, url, enumeration, employee, multiple string), and every lead a value in each.
b24app converts every active lead; the sandbox counts HTTP requests and executed calls, and the
floor is ceil(writes/50) + ceil(reads/50) (bench/floors.py). Goal: within 1.05x of the floor,
and no more requests than the same conversion without custom fields (the definitions ride in
the facts batch, the values in the add commands).

Files are measured apart: a run whose tenth field is a file field (one file per lead, paired on
every target) - each file is one download request (not batchable), the upload rides in the add
commands; its floor counts one request per download.

    python -m bench.customfields                 # 500 leads, fast plan
    python -m bench.customfields --leads 60
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b24app.config import Settings
from b24app.crm.policy import Policy
from bench.floors import Usage, ratio, usage_between
from bench.table import figure, print_table

GOAL = 1.05
FIELDS = (
    ("Note", "string", "N"),
    ("Employees", "integer", "N"),
    ("Rate", "double", "N"),
    ("Newsletter", "boolean", "N"),
    ("First contact", "date", "N"),
    ("Budget", "money", "N"),
    ("Website", "url", "N"),
    ("Interest", "enumeration", "N"),
    ("Manager", "employee", "N"),
    ("Tags", "string", "Y"),
)
WITH_FILE = (*FIELDS[:9], ("Brief", "file", "N"))
TARGETS = ("deal", "contact", "company")


@dataclass(frozen=True)
class Run:
    """One measured conversion."""

    name: str
    usage: Usage
    converted: int
    failed: int
    downloads: int = 0

    @property
    def floor(self) -> int:
        """The request floor, one request per file download added."""
        return self.usage.request_floor + self.downloads


def _call(core: Any, method: str, params: dict[str, Any]) -> Any:
    from sandbox.portal import CallContext

    return core.dispatch(method, params, CallContext()).result


def _define(core: Any, fields: Sequence[tuple[str, str, str]]) -> list[dict[str, Any]]:
    for entity in ("lead", *TARGETS):
        for n, (label, kind, multiple) in enumerate(fields):
            params: dict[str, Any] = {
                "FIELD_NAME": f"B{entity[:2].upper()}{n}",
                "USER_TYPE_ID": kind,
                "MULTIPLE": multiple,
                "EDIT_FORM_LABEL": {"en": label},
            }
            if kind == "enumeration":
                params["LIST"] = [{"VALUE": v} for v in ("Hardware", "Software", "Services")]
            _call(core, f"crm.{entity}.userfield.add", {"fields": params})
    return list(_call(core, "crm.lead.userfield.list", {"filter": {"LANG": "en"}}))


def _value(field: dict[str, Any], n: int) -> Any:
    kind = field["USER_TYPE_ID"]
    if kind == "enumeration":
        return field["LIST"][n % 3]["ID"]
    if kind == "file":
        return {"fileData": [f"brief-{n}.txt", base64.b64encode(b"brief %d\n" % n).decode()]}
    value = {
        "string": f"note {n}",
        "integer": str(n),
        "double": f"{n / 7:.2f}",
        "boolean": "1" if n % 2 else "0",
        "date": "2024-05-01",
        "money": f"{n}|USD",
        "url": f"https://s{n}.example",
        "employee": "1",
    }[kind]
    return [value, f"{value}-2"] if field["MULTIPLE"] == "Y" else value


def measure(name: str, leads: int, seed: int, fields: Sequence[tuple[str, str, str]]) -> Run:
    """Seed, add the fields and their values, convert with b24app; the usage."""
    from b24app.crm import conversion
    from b24app.portals import open_portal
    from b24app.store.journal import Journal
    from sandbox import Sandbox

    with Sandbox(seed_leads=leads, seed=seed, plan="fast") as sandbox:
        core = sandbox.portal
        defined = _define(core, fields) if fields else []
        ids = [int(r["ID"]) for r in _call(core, "crm.lead.list", {"select": ["ID"]}) or []]
        start = 0
        while defined and len(ids) == 50 * (start + 1):  # every page of leads
            start += 1
            page = _call(core, "crm.lead.list", {"select": ["ID"], "start": 50 * start})
            ids += [int(r["ID"]) for r in page or []]
        for lead_id in ids if defined else ():
            values = {f["FIELD_NAME"]: _value(f, lead_id) for f in defined}
            _call(core, "crm.lead.update", {"id": lead_id, "fields": values})
        with tempfile.TemporaryDirectory(prefix="b24app-bench-uf-") as tmp:
            settings = Settings.from_env(
                {
                    "B24_WEBHOOK_URL": sandbox.webhook_url,
                    "B24APP_PLAN": "fast",
                    "B24APP_DATABASE_URL": f"sqlite:///{Path(tmp) / 'j.db'}",
                }
            )
            target = open_portal(settings)
            journal = Journal.open(settings.database_url, portal=target.key)
            before = sandbox.stats()
            report = conversion.convert(
                target.client,
                journal,
                Policy.from_dict({"client": "both", "activities": "move"}),
            )
            usage = usage_between(before, sandbox.stats())
    files = any(kind == "file" for _, kind, _ in fields)
    downloads = sum(1 for lead in report.leads if lead.status == "converted") if files else 0
    return Run(name, usage, report.converted, report.failed, downloads)


def run(leads: int, seed: int) -> list[Run]:
    """Without custom fields, with 10 per entity, with 10 of which one is a file field."""
    return [
        measure("no custom fields", leads, seed, ()),
        measure("10 custom fields per entity", leads, seed, FIELDS),
        measure("10 custom fields, one a file", leads, seed, WITH_FILE),
    ]


def _command(leads: int, seed: int) -> str:
    return f"python -m bench.customfields --leads {leads} --seed {seed}"


def figures(runs: Sequence[Run], leads: int, seed: int) -> list[dict[str, str]]:
    """The summary rows: requests vs floor per run, and the files' extra requests."""
    rows = []
    plain = runs[0]
    for item in runs:
        within = item.usage.requests <= GOAL * item.floor and item.failed == 0
        rows.append(
            figure(
                what=f"convert {item.converted} leads, {item.name}: requests",
                measured=f"{item.usage.requests} ({item.usage.writes} writes, "
                f"{item.usage.reads} reads"
                + (f", {item.downloads} file downloads)" if item.downloads else ")"),
                versus=f"floor {item.floor}",
                ratio=ratio(item.usage.requests, item.floor),
                result=("ok" if within else "over") + f" (goal {GOAL:.2f}x)",
                reproduce=_command(leads, seed),
            )
        )
    with_files = runs[-1]
    extra = with_files.usage.requests - runs[1].usage.requests
    rows.append(
        figure(
            what="file field: extra requests (one download per file; uploads ride in the adds)",
            measured=f"+{extra} for {with_files.downloads} files",
            versus=f"{with_files.downloads} downloads",
            ratio=ratio(extra, with_files.downloads),
            result="ok" if extra <= with_files.downloads else "over",
            reproduce=_command(leads, seed),
        )
    )
    rows.append(
        figure(
            what="custom fields vs none: extra requests",
            measured=f"{runs[1].usage.requests - plain.usage.requests:+d}",
            versus=f"{plain.usage.requests} without",
            ratio=ratio(runs[1].usage.requests, plain.usage.requests),
            result="ok" if runs[1].usage.requests <= plain.usage.requests else "over",
            reproduce=_command(leads, seed),
        )
    )
    return rows


def rows(*, quick: bool = False) -> list[dict[str, str]]:
    """`python -m bench` rows (quick: 60 leads)."""
    leads = 60 if quick else 500
    return figures(run(leads, 1), leads, 1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run and print; exit 1 when a run is over its goal."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.customfields",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--leads", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    found = figures(run(args.leads, args.seed), args.leads, args.seed)
    print_table(found, title="Custom fields: requests vs the floor")
    return 1 if any(row["result"].startswith("over") for row in found) else 0


if __name__ == "__main__":
    sys.exit(main())
