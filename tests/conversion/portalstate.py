"""What the sandbox portal holds, read straight from its core (no HTTP, no rate limit), and the
assertions every conversion scenario makes about it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from b24app.crm.mapping import DEFAULT_CONTACT_NAME as DEFAULT_NAME
from b24app.crm.mapping import ORIGINATOR_ID, origin_id
from b24app.crm.policy import Activities, Policy
from sandbox.portal import CallContext

ADMIN = CallContext()
LEAD, DEAL, CONTACT, COMPANY = 1, 2, 3, 4
KINDS = ("deal", "contact", "company")


def call(core: Any, method: str, params: Mapping[str, Any] | None = None) -> Any:
    """One method on the sandbox core, as the admin."""
    return core.dispatch(method, dict(params or {}), ADMIN).result


def rows(
    core: Any, method: str, flt: Mapping[str, Any] | None = None, select: list[str] | None = None
) -> list[dict[str, Any]]:
    """Every row of a legacy list method (keyset by ID)."""
    found: list[dict[str, Any]] = []
    last = 0
    while True:
        page = call(
            core,
            method,
            {
                "filter": {**(flt or {}), ">ID": last},
                "order": {"ID": "ASC"},
                "start": -1,
                "select": select or ["*"],
            },
        )
        found += page
        if len(page) < 50:
            return found
        last = int(page[-1]["ID"])


def created(core: Any, kind: str) -> dict[int, list[dict[str, Any]]]:
    """Entities b24app created, by the lead id in their ORIGIN_ID."""
    by_lead: dict[int, list[dict[str, Any]]] = {}
    for row in rows(core, f"crm.{kind}.list", {"ORIGINATOR_ID": ORIGINATOR_ID}):
        origin = str(row.get("ORIGIN_ID") or "")
        if origin.startswith("lead-"):
            by_lead.setdefault(int(origin.removeprefix("lead-")), []).append(row)
    return by_lead


@dataclass(frozen=True)
class Snapshot:
    """The leads before a conversion: rows, open activities and product-row counts per lead."""

    leads: dict[int, dict[str, Any]]
    open_activities: dict[int, set[int]]
    product_rows: dict[int, int]
    counts: dict[str, int]

    @property
    def active(self) -> list[int]:
        """Ids of the leads in work (semantics P)."""
        return [i for i, lead in self.leads.items() if lead["STATUS_SEMANTIC_ID"] == "P"]

    @property
    def closed(self) -> list[int]:
        """Ids of the leads that are not in work."""
        return [i for i, lead in self.leads.items() if lead["STATUS_SEMANTIC_ID"] != "P"]


def snapshot(core: Any) -> Snapshot:
    """The portal's leads as a conversion will find them."""
    leads = {int(r["ID"]): r for r in rows(core, "crm.lead.list", select=["*", "PHONE", "EMAIL"])}
    open_activities: dict[int, set[int]] = {}
    for activity in rows(core, "crm.activity.list", {"OWNER_TYPE_ID": LEAD, "COMPLETED": "N"}):
        if int(activity["OWNER_TYPE_ID"]) == LEAD:
            open_activities.setdefault(int(activity["OWNER_ID"]), set()).add(int(activity["ID"]))
    product_rows = {i: len(call(core, "crm.lead.productrows.get", {"id": i})) for i in leads}
    return Snapshot(leads, open_activities, product_rows, core.counts())


def duplicates(core: Any) -> dict[str, list[str]]:
    """ORIGIN_IDs carried by more than one deal, contact or company (should be none)."""
    found = {}
    for kind in KINDS:
        origins = Counter(
            str(r.get("ORIGIN_ID"))
            for r in rows(core, f"crm.{kind}.list", {"ORIGINATOR_ID": ORIGINATOR_ID})
        )
        found[kind] = sorted(origin for origin, n in origins.items() if n > 1)
    return {kind: dups for kind, dups in found.items() if dups}


def _id(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def assert_converted(
    core: Any,
    before: Snapshot,
    policy: Policy,
    *,
    success: str = "CONVERTED",
    raced: bool = False,
) -> None:
    """Every active lead of `before` converted exactly once as the policy says; others untouched.

    `raced`: runs converted the same leads without a shared lock and settled.
    """
    assert not duplicates(core)
    leads = {int(r["ID"]): r for r in rows(core, "crm.lead.list")}
    made = {kind: created(core, kind) for kind in KINDS}
    for lead_id in before.closed:
        old, new = before.leads[lead_id], leads[lead_id]
        assert (new["STATUS_ID"], new["DATE_MODIFY"]) == (old["STATUS_ID"], old["DATE_MODIFY"])
        assert all(lead_id not in made[kind] for kind in KINDS), lead_id
    for lead_id in before.active:
        _assert_lead(core, before, policy, lead_id, leads[lead_id], made, success, raced)


def _assert_lead(
    core: Any,
    before: Snapshot,
    policy: Policy,
    lead_id: int,
    after: Mapping[str, Any],
    made: Mapping[str, Mapping[int, list[dict[str, Any]]]],
    success: str,
    raced: bool = False,
) -> None:
    lead = before.leads[lead_id]
    assert after["STATUS_ID"] == success, (lead_id, after["STATUS_ID"])
    deals = made["deal"].get(lead_id, [])
    assert len(deals) == 1, (lead_id, deals)
    deal = call(core, "crm.deal.get", {"id": deals[0]["ID"]})
    assert int(deal["CATEGORY_ID"]) == policy.pipeline
    assert deal["TITLE"] == lead["TITLE"]
    assert float(deal["OPPORTUNITY"]) == float(lead["OPPORTUNITY"])
    assert (deal["CURRENCY_ID"], deal["SOURCE_ID"], deal["ASSIGNED_BY_ID"]) == (
        lead["CURRENCY_ID"],
        lead["SOURCE_ID"],
        lead["ASSIGNED_BY_ID"],
    )
    assert _id(deal["LEAD_ID"]) == lead_id, (lead_id, deal["LEAD_ID"])
    clients = {}
    is_repeat = bool(_id(lead.get("CONTACT_ID")) or _id(lead.get("COMPANY_ID")))
    for kind, wanted in (
        ("contact", policy.client.wants_contact),
        ("company", policy.client.wants_company),
    ):
        repeat = _id(lead.get(f"{kind.upper()}_ID"))
        mine = made[kind].get(lead_id, [])
        if is_repeat:  # a deal only, with the lead's own clients (leadconversionscheme.php:63-66)
            assert not mine, (lead_id, kind, "a repeat lead's client is reused, not re-created")
            if repeat:
                clients[kind] = repeat
        elif wanted:
            assert len(mine) == 1, (lead_id, kind, mine)
            clients[kind] = int(mine[0]["ID"])
        else:
            assert not mine, (lead_id, kind)
        assert _id(deal[f"{kind.upper()}_ID"]) == clients.get(kind), (lead_id, kind, deal)
        assert _id(after[f"{kind.upper()}_ID"]) == clients.get(kind), (lead_id, kind)
    own = {DEAL: int(deal["ID"])}
    if lead_id in made["contact"]:
        own[CONTACT] = clients["contact"]
        contact = call(core, "crm.contact.get", {"id": clients["contact"]})
        assert _id(contact["LEAD_ID"]) == lead_id
        named = any(lead.get(n) for n in ("NAME", "SECOND_NAME", "LAST_NAME"))
        assert (contact["NAME"] or None) == ((lead["NAME"] or None) if named else DEFAULT_NAME)
        assert (contact["LAST_NAME"] or None) == (lead["LAST_NAME"] or None)
        assert _id(contact["COMPANY_ID"]) == clients.get("company")
        phones = [p["VALUE"] for p in lead.get("PHONE") or []]
        assert [p["VALUE"] for p in contact.get("PHONE") or []] == phones
    if lead_id in made["company"]:
        own[COMPANY] = clients["company"]
        company = call(core, "crm.company.get", {"id": clients["company"]})
        assert _id(company["LEAD_ID"]) == lead_id
        assert company["TITLE"] == (lead["COMPANY_TITLE"] or lead["TITLE"])
    deal_id = int(deal["ID"])
    for activity_id in before.open_activities.get(lead_id, ()):
        activity = call(core, "crm.activity.get", {"id": activity_id})
        bound = {
            (b["entityTypeId"], b["entityId"])
            for b in call(core, "crm.activity.binding.list", {"activityId": activity_id})
        }
        targets = set(own.items())  # bound to every entity the conversion made
        if policy.activities is Activities.MOVE:
            assert bound == targets and activity["COMPLETED"] == "N", (activity_id, bound)
        else:
            assert bound == targets | {(LEAD, lead_id)}, (activity_id, bound)
            assert activity["COMPLETED"] == "Y", activity_id
    assert (
        len(call(core, "crm.deal.productrows.get", {"id": deal_id})) == before.product_rows[lead_id]
    )
    assert deal["ORIGIN_ID"] == origin_id(lead_id)
