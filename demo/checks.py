"""Checks of a sandbox portal's state after a conversion, read straight from the sandbox core.

They read through `sandbox.portal.Portal.dispatch` (no HTTP, no rate limit, not b24app's
client), so they judge b24app's work with a reader that shares none of its code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from b24app.crm.mapping import DEAL_TYPE_ID, LEAD_TYPE_ID, ORIGINATOR_ID, lead_id_of

# (method, params) -> (result, next): one REST call as the sandbox core answers it.
Query = Callable[[str, dict[str, Any]], Any]
PAGE = 50
ACTIVITY_FIELDS = ("ID", "OWNER_TYPE_ID", "OWNER_ID", "COMPLETED")


def core_query(sandbox: Any) -> Query:
    """A Query over a running `sandbox.Sandbox`'s core, as the portal admin (user 1)."""
    from sandbox.portal import CallContext

    def query(method: str, params: dict[str, Any]) -> Any:
        return sandbox.portal.dispatch(method, params, CallContext()).result

    return query


def rows(
    query: Query,
    method: str,
    *,
    filter: Mapping[str, Any] | None = None,
    select: Sequence[str] = ("*",),
    after_id: int = 0,
) -> Iterator[dict[str, Any]]:
    """Every row of a list method with ID > `after_id`, by ID keyset (`>ID`, `start=-1`)."""
    last = after_id
    while True:
        page = query(
            method,
            {
                "filter": {**(filter or {}), ">ID": last},
                "order": {"ID": "ASC"},
                "select": list(select),
                "start": -1,
            },
        )
        page = list(page or [])
        yield from page
        if len(page) < PAGE:
            return
        last = int(page[-1]["ID"])


def rows_by_id(
    query: Query, method: str, ids: Sequence[int], select: Sequence[str]
) -> Iterator[tuple[list[int], dict[int, dict[str, Any]]]]:
    """`ids` in chunks of 50, each with the rows found for it (`@ID`, `start=-1`)."""
    for start in range(0, len(ids), PAGE):
        chunk = list(ids[start : start + PAGE])
        found = query(method, {"filter": {"@ID": chunk}, "select": list(select), "start": -1})
        yield chunk, {int(row["ID"]): row for row in found or []}


@dataclass(frozen=True)
class Snapshot:
    """What the checks need to know before a conversion: active leads and their open activities."""

    active_leads: tuple[int, ...]
    open_activities: Mapping[int, tuple[int, ...]] = field(default_factory=dict)  # lead -> ids
    success_stage: str = "CONVERTED"
    # repeat leads (a contact or company already): a deal only, with their own clients
    # (leadconversionscheme.php:63-66), whatever the policy wants
    repeat: frozenset[int] = frozenset()


def stage_semantics(query: Query) -> dict[str, str]:
    """Lead stage id -> "P" / "S" / "F" (`crm.status.list`, ENTITY_ID=STATUS)."""
    found = {}
    for item in query("crm.status.list", {"filter": {"ENTITY_ID": "STATUS"}}) or []:
        semantics = item.get("SEMANTICS") or (item.get("EXTRA") or {}).get("SEMANTICS") or "P"
        word = str(semantics).upper()[:1]
        found[str(item["STATUS_ID"])] = {"S": "S", "F": "F"}.get(word, "P")
    return found


def leads_by_stage(query: Query) -> Counter[str]:
    """How many leads sit in each stage."""
    return Counter(
        str(lead["STATUS_ID"]) for lead in rows(query, "crm.lead.list", select=("ID", "STATUS_ID"))
    )


def snapshot(query: Query) -> Snapshot:
    """Active leads and their open activities, before converting."""
    semantics = stage_semantics(query)
    listed = [
        lead
        for lead in rows(
            query, "crm.lead.list", select=("ID", "STATUS_ID", "CONTACT_ID", "COMPANY_ID")
        )
        if semantics.get(str(lead["STATUS_ID"])) == "P"
    ]
    active = tuple(int(lead["ID"]) for lead in listed)
    repeat = frozenset(
        int(lead["ID"])
        for lead in listed
        if _link(lead.get("CONTACT_ID")) or _link(lead.get("COMPANY_ID"))
    )
    wanted = set(active)
    open_by_lead: dict[int, list[int]] = {}
    for activity in rows(
        query,
        "crm.activity.list",
        filter={"OWNER_TYPE_ID": LEAD_TYPE_ID, "COMPLETED": "N"},
        select=("ID", "OWNER_TYPE_ID", "OWNER_ID", "COMPLETED"),
    ):
        owner = int(activity["OWNER_ID"])
        if int(activity["OWNER_TYPE_ID"]) == LEAD_TYPE_ID and owner in wanted:
            open_by_lead.setdefault(owner, []).append(int(activity["ID"]))
    success = next((stage for stage, s in semantics.items() if s == "S"), "CONVERTED")
    return Snapshot(active, {k: tuple(v) for k, v in open_by_lead.items()}, success, repeat)


@dataclass(frozen=True)
class Check:
    """One verified property of the portal."""

    name: str
    ok: bool
    detail: str


def _origin_counts(query: Query, method: str) -> Counter[int]:
    counts: Counter[int] = Counter()
    for row in rows(
        query,
        method,
        filter={"ORIGINATOR_ID": ORIGINATOR_ID},
        select=("ID", "ORIGINATOR_ID", "ORIGIN_ID"),
    ):
        lead_id = lead_id_of(row.get("ORIGIN_ID"))
        if lead_id is not None:
            counts[lead_id] += 1
    return counts


def verify(query: Query, before: Snapshot, *, client: str, activities: str) -> list[Check]:
    """Check every lead active `before` is converted once, as `client`/`activities` say."""
    checks: list[Check] = []
    stages = {
        int(lead["ID"]): str(lead["STATUS_ID"])
        for lead in rows(query, "crm.lead.list", select=("ID", "STATUS_ID"))
    }
    open_left = [lead for lead in before.active_leads if stages.get(lead) != before.success_stage]
    checks.append(
        Check(
            "every active lead converted",
            not open_left,
            f"{len(before.active_leads) - len(open_left)}/{len(before.active_leads)}"
            f" leads in {before.success_stage}"
            + (f"; not converted: {open_left[:10]}" if open_left else ""),
        )
    )

    deals = {
        int(d["ID"]): d
        for d in rows(
            query,
            "crm.deal.list",
            filter={"ORIGINATOR_ID": ORIGINATOR_ID},
            select=("ID", "ORIGIN_ID", "CONTACT_ID", "COMPANY_ID"),
        )
    }
    deal_of: dict[int, int] = {}
    for deal_id, deal in deals.items():
        lead_id = lead_id_of(deal.get("ORIGIN_ID"))
        if lead_id is not None:
            deal_of.setdefault(lead_id, deal_id)
    missing = [lead for lead in before.active_leads if lead not in deal_of]
    checks.append(
        Check(
            "one deal per converted lead",
            not missing,
            f"{len(deal_of)} deals with ORIGIN_ID"
            + (f"; leads without a deal: {missing[:10]}" if missing else ""),
        )
    )

    for method, entity in (
        ("crm.deal.list", "deals"),
        ("crm.contact.list", "contacts"),
        ("crm.company.list", "companies"),
    ):
        duplicated = sorted(k for k, n in _origin_counts(query, method).items() if n > 1)
        checks.append(
            Check(
                f"no duplicate {entity} by ORIGIN_ID",
                not duplicated,
                f"duplicated leads: {duplicated[:10]}" if duplicated else "none",
            )
        )

    wanted = {
        "contact": ("CONTACT_ID",),
        "company": ("COMPANY_ID",),
        "both": ("CONTACT_ID", "COMPANY_ID"),
    }[client]
    lacking = [
        deal_id
        for lead, deal_id in deal_of.items()
        if lead in set(before.active_leads)
        and (
            any(not _link(deals[deal_id].get(name)) for name in wanted)
            if lead not in before.repeat
            else not any(_link(deals[deal_id].get(n)) for n in ("CONTACT_ID", "COMPANY_ID"))
        )
    ]
    checks.append(
        Check(
            f"deals carry their {client} client(s)",
            not lacking,
            f"deals without {' and '.join(wanted)}: {lacking[:10]}"
            if lacking
            else f"{' and '.join(wanted)} set on every deal",
        )
    )

    checks.append(_activities_check(query, before, deal_of, activities))
    return checks


def _activities_check(
    query: Query, before: Snapshot, deal_of: Mapping[int, int], activities: str
) -> Check:
    ids = [a for acts in before.open_activities.values() for a in acts]
    owner_of = {a: lead for lead, acts in before.open_activities.items() for a in acts}
    wrong: list[int] = []
    for chunk, found in rows_by_id(query, "crm.activity.list", ids, ACTIVITY_FIELDS):
        for activity_id in chunk:
            row = found.get(activity_id)
            if row is None:
                wrong.append(activity_id)
            elif activities == "move":
                on_deal = int(row["OWNER_TYPE_ID"]) == DEAL_TYPE_ID and int(
                    row["OWNER_ID"]
                ) == deal_of.get(owner_of[activity_id])
                if not on_deal or row["COMPLETED"] != "N":
                    wrong.append(activity_id)
            elif row["COMPLETED"] != "Y":
                wrong.append(activity_id)
    expected = "open and bound to the lead's deal" if activities == "move" else "completed"
    return Check(
        f"open activities {activities}d",
        not wrong,
        f"{len(ids) - len(wrong)}/{len(ids)} {expected}"
        + (f"; wrong: {wrong[:10]}" if wrong else ""),
    )


def _link(value: Any) -> bool:
    try:
        return int(value or 0) > 0
    except (TypeError, ValueError):
        return False
