"""Undo round trip: snapshot a sandbox portal, convert, undo, snapshot again, compare.

For each policy variant (client both / contact / company x activities complete / move, the
sandbox's custom fields on, "create missing custom fields" on), a fresh seeded sandbox portal is
snapshotted straight from its core (every row of every table: leads, deals, contacts, companies,
activities with their bindings and owner, timeline comments with their bindings, product rows,
requisites, addresses, links, multifields, custom field values, and the custom field definitions
with their list options - so a field the conversion created and the undo left is a difference),
converted by `b24app.crm.conversion.convert`, undone by
`b24app.undo.undo`, and snapshotted again. The two snapshots must be identical except for

* the ids of the records the conversion created and the undo deleted (they are simply gone, and
  the portal's id counters moved on), and
* modification stamps: `MODIFY_TIMESTAMPS` (when, and by whom, a row was last modified or moved).

`EXPLAINED` lists a difference the sandbox shows and Bitrix24 does not, with the reason. Every
other difference is printed; the goal is none.

Requests are held against the undo's floor: its read, `ceil(listing commands / 50)`, then its
writes, which cannot share a request with the read they are planned from, 49 to a request (each
write batch keeps a slot for the CRM-mode check): `ceil(write commands / 49)`, and for each
phase k (activities, deletions, the lead, LEAD_ID back: each waits for the one before) no fewer
than `ceil(steps of phases <= k / 49)` plus the phases still to go after the last of them; the
created custom fields' probe waits for the deletions, and their deletions for the probe
(`undo_floor`). A listing that needs a second page costs a command and, in
the worst case, a request of its own: counted against b24app, not added to the floor.

    python -m bench.undo                   # 6 variants, 120 seeded leads each, standard plan
    python -m bench.undo --leads 40 --plan fast --variant both/move
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from b24app.config import PLANS, RateLimit
from b24app.crm.conversion import convert
from b24app.crm.policy import Policy
from b24app.rest import PortalClient, RetryPolicy
from b24app.store.journal import Journal
from b24app.undo import WRITE_SLOTS, UndoReport, undo
from bench.table import figure, print_table

VARIANTS = tuple(
    f"{client}/{activities}"
    for client in ("both", "contact", "company")
    for activities in ("complete", "move")
)
# When, and by whom, a row was last modified: an undo writes the row, so these move on.
MODIFY_TIMESTAMPS = frozenset(
    {
        "DATE_MODIFY",
        "MODIFY_BY_ID",
        "MOVED_TIME",
        "MOVED_BY_ID",
        "LAST_UPDATED",
        "EDITOR_ID",
        "LAST_ACTIVITY_TIME",
        "LAST_ACTIVITY_BY",
    }
)
# Differences the sandbox shows that Bitrix24 does not, by table.field.
EXPLAINED = {
    "lead.IS_RETURN_CUSTOMER": (
        "the sandbox marks a lead given CONTACT_ID through REST a repeat lead on any update "
        "(docs/parity.md, 'The lead'); Bitrix24's CCrmLead::Update syncs IS_RETURN_CUSTOMER only "
        "off the success stage and for a lead never CONVERTED (crm/classes/general/crm_lead.php, "
        "Update, region 'Synchronize CustomerType'), so neither the conversion's closing update "
        "nor the undo's changes it there"
    ),
}
MAX_COMMANDS = 50


def portal_snapshot(sandbox: Any) -> dict[str, dict[int, dict[str, Any]]]:
    """Every row of every table of a sandbox portal's core, JSON-normalised, by table and id."""
    store = sandbox.portal._store
    with sandbox.portal.lock:
        return {
            kind: {
                int(row_id): json.loads(json.dumps(row, default=str, sort_keys=True))
                for row_id, row in table.rows.items()
            }
            for kind, table in store.tables.items()
        }


@dataclass
class Diff:
    """The differences between two snapshots: unexplained lines, explained counts by field."""

    lines: list[str] = field(default_factory=list)
    explained: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)


def compare(
    before: Mapping[str, Mapping[int, Mapping[str, Any]]],
    after: Mapping[str, Mapping[int, Mapping[str, Any]]],
) -> Diff:
    """What differs between two snapshots, but for modification stamps (counted as ignored)."""
    diff = Diff()
    for kind in sorted(set(before) | set(after)):
        old, new = before.get(kind, {}), after.get(kind, {})
        for row_id in sorted(set(new) - set(old)):
            diff.lines.append(f"{kind} #{row_id}: left behind {_short(new[row_id])}")
        for row_id in sorted(set(old) - set(new)):
            diff.lines.append(f"{kind} #{row_id}: gone (it existed before the conversion)")
        for row_id in sorted(set(old) & set(new)):
            a, b = old[row_id], new[row_id]
            for name in sorted(set(a) | set(b)):
                if a.get(name) == b.get(name):
                    continue
                path = f"{kind}.{name}"
                if name in MODIFY_TIMESTAMPS:
                    diff.ignored[path] = diff.ignored.get(path, 0) + 1
                elif path in EXPLAINED:
                    diff.explained[path] = diff.explained.get(path, 0) + 1
                else:
                    diff.lines.append(
                        f"{kind} #{row_id}.{name}: {a.get(name)!r} -> {b.get(name)!r}"
                    )
    return diff


def _short(row: Mapping[str, Any]) -> str:
    text = json.dumps(row, sort_keys=True, default=str)
    return text if len(text) < 160 else text[:157] + "..."


class Counting:
    """A portal client that counts the commands it sends, reads and writes apart."""

    def __init__(self, client: PortalClient) -> None:
        self.client = client
        self.reads = 0
        self.writes = 0
        self.probes = 0  # the created fields' probe: reads riding in write batches
        self.field_writes = 0  # their deletions

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    @property
    def requests_made(self) -> int:
        """Requests the wrapped client made."""
        return self.client.requests_made

    def batch(self, commands: Sequence[Any], **kwargs: Any) -> Any:
        """Count, then send."""
        for command in commands:
            if command.method == "crm.settings.mode.get":
                continue  # the mode check has its kept slot in every write batch: not a step
            if command.method.endswith(".userfield.delete"):
                self.field_writes += 1
            elif command.key.startswith("F") and command.method.endswith(".list"):
                self.probes += 1
            elif command.method.endswith(".list"):
                self.reads += 1
            else:
                self.writes += 1
        return self.client.batch(commands, **kwargs)


@dataclass
class Trip:
    """One variant's round trip."""

    variant: str
    leads: int
    converted: int
    report: UndoReport
    diff: Diff
    requests: int
    floor: int
    reads: int
    writes: int
    refused: int
    probes: int = 0
    field_writes: int = 0


def undo_floor(
    report: UndoReport, reads: int, writes: int, *, probes: int = 0, field_writes: int = 0
) -> int:
    """The fewest requests an undo with these commands can take (see the module doc).

    The read, then the writes, `WRITE_SLOTS` (49) per request - every write batch keeps a slot
    for the mode check: at least ceil((writes + probes + field writes) / 49), and for every
    phase k, the steps of phases <= k need ceil(n / 49) requests and the last of them belongs to
    a lead with at least `later` phases still to go, each a request of its own. The created
    fields' probe needs every deletion (phases <= 2) answered first, and their deletions need
    the probe's answer: after the deletions, at least one request for the probe and one more
    for them, and room for the probe, those deletions and the steps of phases > 2.
    """
    reverting = [lead.phases for lead in report.leads if lead.phases]
    bound = math.ceil((writes + probes + field_writes) / WRITE_SLOTS)
    if probes:  # after the last deletion: the probe, then the fields' deletions
        upto = sum(n for lead in reverting for phase, n in lead.items() if phase <= 2)
        later = sum(n for lead in reverting for phase, n in lead.items() if phase > 2)
        chain = max((len([p for p in lead if p <= 2]) for lead in reverting), default=0)
        deleted = max(math.ceil(upto / WRITE_SLOTS), chain)
        after = max(
            2 if field_writes else 1, math.ceil((probes + field_writes + later) / WRITE_SLOTS)
        )
        bound = max(bound, deleted + after)
    for k in sorted({phase for phases in reverting for phase in phases}):
        upto = sum(n for phases in reverting for phase, n in phases.items() if phase <= k)
        later = min(
            len([phase for phase in phases if phase > k])
            for phases in reverting
            if any(phase <= k for phase in phases)
        )
        bound = max(bound, math.ceil(upto / WRITE_SLOTS) + later)
    return math.ceil(reads / MAX_COMMANDS) + bound


def round_trip(
    variant: str, *, leads: int = 120, plan: str = "standard", seed: int = 7, db: str | None = None
) -> Trip:
    """Seed a sandbox, snapshot, convert with `variant`, undo, snapshot, compare."""
    from sandbox import Sandbox

    client_name, activities = variant.split("/")
    policy = Policy.from_json(
        json.dumps({"client": client_name, "activities": activities, "create_fields": True})
    )
    with tempfile.TemporaryDirectory() as tmp:
        url = db or f"sqlite:///{Path(tmp) / 'app.db'}"
        with Sandbox(seed_leads=leads, seed=seed, plan=plan, custom_fields=True) as sandbox:
            before = portal_snapshot(sandbox)
            client = PortalClient.from_webhook(
                sandbox.webhook_url,
                rate=RateLimit(*PLANS[plan]),
                retry=RetryPolicy(base=0.05, cap=0.5),
                timeout=30.0,
            )
            journal = Journal.open(url, portal="bench-undo")
            converted = convert(client, journal, policy)
            refused_before = sandbox.counters.snapshot()["query_limit_exceeded"]
            counting = Counting(client)
            first = client.requests_made
            report = undo(counting, journal, converted.job_id)  # type: ignore[arg-type]
            requests = client.requests_made - first
            refused = sandbox.counters.snapshot()["query_limit_exceeded"] - refused_before
            after = portal_snapshot(sandbox)
    return Trip(
        variant=variant,
        leads=leads,
        converted=converted.converted,
        report=report,
        diff=compare(before, after),
        requests=requests,
        floor=undo_floor(
            report,
            counting.reads,
            counting.writes,
            probes=counting.probes,
            field_writes=counting.field_writes,
        ),
        reads=counting.reads,
        writes=counting.writes,
        refused=refused,
        probes=counting.probes,
        field_writes=counting.field_writes,
    )


def rows(*, quick: bool = False) -> list[dict[str, str]]:
    """One summary row per variant (quick: 2 variants, 40 leads, fast plan)."""
    variants = ("both/complete", "company/move") if quick else VARIANTS
    found = []
    for variant in variants:
        trip = round_trip(variant, leads=40 if quick else 120, plan="fast" if quick else "standard")
        ratio = trip.requests / trip.floor if trip.floor else 1.0
        ok = not trip.diff.lines and ratio <= 1.05 and trip.refused == 0
        found.append(
            figure(
                what=f"undo round trip {variant}: unexplained differences; requests",
                measured=f"{len(trip.diff.lines)} diff; {trip.requests} req; {trip.refused} x 503",
                versus=f"0 diff; floor {trip.floor} req",
                ratio=f"{ratio:.2f}x",
                result="ok" if ok else "MISSED",
                reproduce=f"python -m bench.undo --variant {variant}",
            )
        )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the round trips, print each diff and the requests against the floor."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.undo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--leads", type=int, default=120, help="seeded leads (default 120)")
    parser.add_argument("--plan", default="standard", choices=sorted(PLANS))
    parser.add_argument("--variant", action="append", choices=VARIANTS, help="repeatable")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    table = []
    missed = False
    for variant in args.variant or VARIANTS:
        trip = round_trip(variant, leads=args.leads, plan=args.plan, seed=args.seed)
        counts = trip.report.to_dict()["counts"]
        ratio = trip.requests / trip.floor if trip.floor else 1.0
        print(f"== {variant}: {trip.converted} converted; undo {counts}; diff:")
        for line in trip.diff.lines or ["(empty)"]:
            print(f"   {line}")
        for path, count in sorted(trip.diff.explained.items()):
            print(f"   explained: {path} on {count} row(s): {EXPLAINED[path]}")
        ignored = ", ".join(f"{p} x{n}" for p, n in sorted(trip.diff.ignored.items()))
        print(f"   modification stamps: {ignored or 'none'}")
        fields = trip.report.fields
        removed = sum(1 for f in fields if f.status == "removed")
        print(
            f"   custom fields the conversion created: {len(fields)}, removed {removed}; "
            f"probe {trip.probes} command(s), {trip.field_writes} deletion(s)"
        )
        missed |= removed != len(fields)
        missed |= bool(trip.diff.lines) or ratio > 1.05 or trip.refused > 0
        table.append(
            {
                "variant": variant,
                "converted": str(trip.converted),
                "reverted": str(counts["reverted"]),
                "kept/failed": f"{counts['kept']}/{counts['failed']}",
                "diff": str(len(trip.diff.lines)),
                "reads / writes": f"{trip.reads} / {trip.writes}",
                "fields removed": f"{removed}/{len(fields)}",
                "requests": str(trip.requests),
                "floor": str(trip.floor),
                "ratio": f"{ratio:.2f}x",
                "503s": str(trip.refused),
            }
        )
    print_table(table, title=f"Undo round trips ({args.leads} leads, {args.plan} plan)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
