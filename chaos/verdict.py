"""The verdict on a chaos run, read from the portal's own records (never through b24app).

Before the run `capture` notes every lead's stage, the open activities of the active ones and the
highest deal/contact/company id. Afterwards `verify` attributes every entity created since then
to a lead: b24app's carry `ORIGINATOR_ID=b24app` and `ORIGIN_ID`, the platform's (the mode
switch's converter) carry `LEAD_ID`. A lead with two deals, two contacts or two companies is a
duplicate whoever made them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from b24app.crm.mapping import DEAL_TYPE_ID, LEAD_TYPE_ID, ORIGINATOR_ID, lead_id_of
from demo.checks import ACTIVITY_FIELDS, Check, Query, rows, rows_by_id, stage_semantics

ENTITIES = (
    ("deal", "crm.deal.list"),
    ("contact", "crm.contact.list"),
    ("company", "crm.company.list"),
)
_LINKS = {
    "contact": ("CONTACT_ID",),
    "company": ("COMPANY_ID",),
    "both": ("CONTACT_ID", "COMPANY_ID"),
}


@dataclass(frozen=True)
class Before:
    """The portal before the run."""

    stages: Mapping[int, str]  # every lead -> its stage
    active: tuple[int, ...]  # leads in progress
    open_activities: Mapping[int, tuple[int, ...]]  # active lead -> its open activity ids
    max_ids: Mapping[str, int]  # "deal" | "contact" | "company" -> highest id
    success_stage: str
    # repeat leads: a deal only, with their own clients (leadconversionscheme.php:63-66)
    repeat: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Made:
    """One entity created during the run and the lead it came from."""

    kind: str
    id: int
    lead_id: int
    by: str  # "b24app" | "platform"
    row: Mapping[str, Any]


def _max_id(query: Query, method: str) -> int:
    found = query(method, {"order": {"ID": "DESC"}, "select": ["ID"], "start": -1}) or []
    return int(found[0]["ID"]) if found else 0


def capture(query: Query) -> Before:
    """The portal's state the verdict needs, before the run."""
    semantics = stage_semantics(query)
    listed = list(
        rows(query, "crm.lead.list", select=("ID", "STATUS_ID", "CONTACT_ID", "COMPANY_ID"))
    )
    stages = {int(lead["ID"]): str(lead["STATUS_ID"]) for lead in listed}
    repeat = frozenset(
        int(lead["ID"])
        for lead in listed
        if _link(lead.get("CONTACT_ID")) or _link(lead.get("COMPANY_ID"))
    )
    active = tuple(lead for lead, stage in stages.items() if semantics.get(stage) == "P")
    wanted = set(active)
    open_by_lead: dict[int, list[int]] = defaultdict(list)
    for activity in rows(
        query,
        "crm.activity.list",
        filter={"OWNER_TYPE_ID": LEAD_TYPE_ID, "COMPLETED": "N"},
        select=ACTIVITY_FIELDS,
    ):
        owner = int(activity["OWNER_ID"])
        if int(activity["OWNER_TYPE_ID"]) == LEAD_TYPE_ID and owner in wanted:
            open_by_lead[owner].append(int(activity["ID"]))
    success = next((stage for stage, s in semantics.items() if s == "S"), "CONVERTED")
    return Before(
        stages=stages,
        active=active,
        open_activities={lead: tuple(ids) for lead, ids in open_by_lead.items()},
        max_ids={kind: _max_id(query, method) for kind, method in ENTITIES},
        success_stage=success,
        repeat=repeat,
    )


def made_since(query: Query, before: Before) -> list[Made]:
    """Every deal, contact and company created since `before`, with its lead and maker."""
    found = []
    for kind, method in ENTITIES:
        select = ["ID", "ORIGINATOR_ID", "ORIGIN_ID", "LEAD_ID"]
        if kind == "deal":
            select += ["CONTACT_ID", "COMPANY_ID"]
        for row in rows(query, method, select=select, after_id=before.max_ids[kind]):
            ours = (
                lead_id_of(row.get("ORIGIN_ID"))
                if row.get("ORIGINATOR_ID") == ORIGINATOR_ID
                else None
            )
            if ours is not None:
                found.append(Made(kind, int(row["ID"]), ours, "b24app", row))
            elif str(row.get("LEAD_ID") or "0").isdigit() and int(row.get("LEAD_ID") or 0) > 0:
                found.append(Made(kind, int(row["ID"]), int(row["LEAD_ID"]), "platform", row))
            else:
                found.append(Made(kind, int(row["ID"]), 0, "unknown", row))
    return found


def _link(value: Any) -> bool:
    try:
        return int(value or 0) > 0
    except (TypeError, ValueError):
        return False


def _sample(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in sorted(ids)[:10])
    return shown + (f" ... (+{len(ids) - 10})" if len(ids) > 10 else "")


def verify(
    query: Query,
    before: Before,
    *,
    client: str,
    activities: str,
    platform_completes: bool = True,
) -> list[Check]:
    """The chaos checks: nothing lost, nothing duplicated, activities by the rule, nothing else
    touched. `client`/`activities` are b24app's policy; `platform_completes` the admin's choice
    when switching modes (Bitrix24 completes the lead's activities unless told not to)."""
    stages = {
        int(lead["ID"]): str(lead["STATUS_ID"])
        for lead in rows(query, "crm.lead.list", select=("ID", "STATUS_ID"))
    }
    made = made_since(query, before)
    active = set(before.active)
    per_lead: dict[str, Counter[int]] = {kind: Counter() for kind, _ in ENTITIES}
    deal_of: dict[int, Made] = {}
    for item in made:
        per_lead[item.kind][item.lead_id] += 1
        if item.kind == "deal":
            deal_of.setdefault(item.lead_id, item)
    checks: list[Check] = []

    lost = [
        lead
        for lead in before.active
        if stages.get(lead) != before.success_stage or lead not in deal_of
    ]
    by = Counter(deal_of[lead].by for lead in before.active if lead in deal_of)
    checks.append(
        Check(
            "0 leads lost",
            not lost,
            f"{len(before.active) - len(lost)}/{len(before.active)} active leads converted, "
            "each with a deal "
            f"(b24app {by['b24app']}, platform after the switch {by['platform']})"
            + (f"; lost: {_sample(lost)}" if lost else ""),
        )
    )
    for kind, _ in ENTITIES:
        twice = [lead for lead, n in per_lead[kind].items() if n > 1]
        checks.append(
            Check(
                f"0 {kind} duplicates",
                not twice,
                f"{sum(per_lead[kind].values())} {kind}(s) made for {len(per_lead[kind])} leads"
                + (f"; leads with two or more: {_sample(twice)}" if twice else ""),
            )
        )

    stray = [m.id for m in made if m.lead_id not in active]
    moved = [
        lead
        for lead, stage in before.stages.items()
        if lead not in active and stages.get(lead) != stage
    ]
    checks.append(
        Check(
            "nothing else touched",
            not stray and not moved,
            f"{len(before.stages) - len(active)} leads not in progress kept their stage, "
            "no entity without an active lead"
            if not stray and not moved
            else f"entities for other leads: {_sample(stray)}; leads moved: {_sample(moved)}",
        )
    )

    wanted = _LINKS[client]
    lacking = [
        lead
        for lead, deal in deal_of.items()
        if deal.by == "b24app"
        and (
            not any(_link(deal.row.get(name)) for name in ("CONTACT_ID", "COMPANY_ID"))
            if lead in before.repeat  # its own clients, whatever the policy wants
            else any(not _link(deal.row.get(name)) for name in wanted)
        )
    ]
    checks.append(
        Check(
            f"b24app's deals carry their {client} client(s)",
            not lacking,
            f"{' and '.join(wanted)} on every deal b24app made"
            if not lacking
            else f"leads whose deal lacks a client: {_sample(lacking)}",
        )
    )
    checks.append(_dangling(query, made))
    checks.append(_activities(query, before, deal_of, activities, platform_completes))
    return checks


def _dangling(query: Query, made: Sequence[Made]) -> Check:
    """Every client a new deal names still exists (a clean-up must not remove a used client)."""
    existing = {
        name: {int(row["ID"]) for row in rows(query, method, select=("ID",))}
        for name, method in (("CONTACT_ID", "crm.contact.list"), ("COMPANY_ID", "crm.company.list"))
    }
    dangling = [
        item.id
        for item in made
        if item.kind == "deal"
        for name, ids in existing.items()
        if _link(item.row.get(name)) and int(item.row[name]) not in ids
    ]
    deals = sum(1 for item in made if item.kind == "deal")
    return Check(
        "no deal names a deleted client",
        not dangling,
        f"the clients of all {deals} new deals exist"
        if not dangling
        else f"deals whose contact or company is gone: {_sample(dangling)}",
    )


def _activities(
    query: Query,
    before: Before,
    deal_of: Mapping[int, Made],
    activities: str,
    platform_completes: bool,
) -> Check:
    """Each open activity of an active lead, as its converter's rule says."""
    owner_of = {a: lead for lead, acts in before.open_activities.items() for a in acts}
    ids = sorted(owner_of)
    wrong: list[int] = []
    for chunk, found in rows_by_id(query, "crm.activity.list", ids, ACTIVITY_FIELDS):
        for activity_id in chunk:
            row = found.get(activity_id)
            deal = deal_of.get(owner_of[activity_id])
            if row is None or deal is None:
                wrong.append(activity_id)
                continue
            move = activities == "move" if deal.by == "b24app" else not platform_completes
            on_deal = int(row["OWNER_TYPE_ID"]) == DEAL_TYPE_ID and int(row["OWNER_ID"]) == deal.id
            if (move and (not on_deal or row["COMPLETED"] != "N")) or (
                not move and row["COMPLETED"] != "Y"
            ):
                wrong.append(activity_id)
    rule = f"b24app's: {activities}; the platform's: {'complete' if platform_completes else 'move'}"
    return Check(
        "every open activity as the policy says",
        not wrong,
        f"{len(ids) - len(wrong)}/{len(ids)} as the rule says ({rule})"
        + (f"; wrong: {_sample(wrong)}" if wrong else ""),
    )
