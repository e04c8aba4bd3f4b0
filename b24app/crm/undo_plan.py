"""Planning the undo of a conversion job: per lead, revert / keep (why) / fail, and the steps.

Pure: the journal's record of what each lead's conversion did (the converted `LeadState`: its
plan, with what the lead was before - `LeadPlan.before` - and the ids it created) plus one read
of the portal as it is now (`read_listings`, parsed into `PortalNow`) in; a `LeadUndo` per lead
out. `b24app.undo` runs the steps.

What the conversion did, and how each part is taken back (docs/native-conversion.md):

* Created deal, contact, company (`LeadState.created`): deleted. Deleting an entity takes its
  product rows, its requisites and requisite links, its activity and timeline bindings with it
  (CCrmDeal/CCrmContact/CCrmCompany::Delete; the sandbox models it in sandbox/crm/entities.py
  `remove`). Reused clients (the repeat lead's own, a matched one) are never deleted, nor a
  created client another deal, lead or contact now uses (checked in the read).
* Activities: bound to the deal and the created clients with `crm.activity.binding.add`, which
  moves the activity's owner (`crm/lib/controller/activity/binding.php:262-281`). Under `move`
  the open ones were also unbound from the lead: they are bound back to the lead *before* the
  deal is deleted - an activity whose every binding is deleted is deleted with it
  (`crm_activity.php:3300-3356`). Under `complete` the open ones were completed: they get
  COMPLETED=N again.
* Timeline comments: bound to the deal and the created clients; the bindings go with them. A
  created client that is kept (used elsewhere, `--force`) is unbound explicitly.
* Requisites made for a client that is not deleted (a repeat lead's company): deleted.
* The lead: STATUS_ID, CONTACT_ID, COMPANY_ID back to what they were, *after* everything else.
  A lead leaving the success stage makes Bitrix24 clear LEAD_ID on every deal, contact and company
  that names it (`crm_lead.php:2794-2813`): had the lead gone first, a deal that is kept would
  lose its link for nothing, and a failed deletion would leave an open lead with a live deal.
  Reused clients that carried LEAD_ID = the lead before the conversion (the conversion never set
  it on them) lose it in that cascade, so they get it back last (`crm.item.update leadId`,
  `crm/lib/Service/Factory/Deal.php:415-421`).

Phases, per lead: 1 activities moved off the lead bound back to it (before their other bindings
go); 2 deletions, reopening, unbinding from clients that stay; 3 the lead; 4 LEAD_ID back on
reused clients. A phase starts when the previous one is done; every step is
idempotent (an "already bound" / "not found" answer counts as done), so a lost answer, a kill or
a second worker only re-sends.

Changed since the conversion - the lead moved off the success stage, the deal moved on or was
edited after the lead closed (its DATE_MODIFY is later than the lead's, which the conversion's
closing call wrote last), new activities or changed product rows on the deal, a created client
edited or used elsewhere - keeps the lead as it is (`kept`, with each change) unless `force`.
`force` never deletes a client used elsewhere: it is unbound from the lead's activities and
comments and left.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from b24app import messages as msg
from b24app.crm import mapping
from b24app.crm.planner import COMPANY, CONTACT, DEAL, PlanError, requisite_key
from b24app.crm.policy import Activities
from b24app.crm.reader import Listing
from b24app.crm.scheduler import LeadState
from b24app.rest.command import Command
from b24app.vocabulary import MAX_BATCH

REVERT, KEEP, FAIL = "revert", "keep", "fail"
REBIND, DELETE, LEAD, RELINK = 1, 2, 3, 4
GROUP = 50  # leads per read listing (ids in one IN filter)
_TYPE_ID = {
    DEAL: mapping.DEAL_TYPE_ID,
    CONTACT: mapping.CONTACT_TYPE_ID,
    COMPANY: mapping.COMPANY_TYPE_ID,
}
_DELETE = {DEAL: "crm.deal.delete", CONTACT: "crm.contact.delete", COMPANY: "crm.company.delete"}
# Answers meaning the step's effect is there already (lower-cased codes or texts).
# binding.php: ACTIVITY_IS_ALREADY_BOUND, BINDING_NOT_FOUND; legacy deletes: "Not found"
# (restservice.php:1310-1322); crm.requisite.delete: "The Requisite with ID 'N' is not found".
_GONE = ("not found", "not_found", "is not found")
_ALREADY = {
    "crm.activity.binding.add": ("activity_is_already_bound", *_GONE),
    "crm.activity.binding.delete": ("binding_not_found", *_GONE),
    "crm.activity.update": _GONE,
    "crm.timeline.bindings.unbind": _GONE,
    "crm.deal.delete": _GONE,
    "crm.contact.delete": _GONE,
    "crm.company.delete": _GONE,
    "crm.requisite.delete": _GONE,
}


def _item(entity: str, entity_id: Any) -> str:
    """An entity and its id as the messages name it: "deal 12"."""
    return f"{entity} {entity_id}"


@dataclass(frozen=True)
class UndoStep:
    """One REST call of an undo; `phase` orders a lead's steps (see the module doc)."""

    id: str
    phase: int
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"id": self.id, "phase": self.phase, "method": self.method, "params": self.params}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UndoStep:
        """Read back `to_dict()`."""
        return cls(str(data["id"]), int(data["phase"]), str(data["method"]), data["params"])

    def already_done(self, code: str, description: str) -> bool:
        """Whether an error answer means the step's effect is there already."""
        text = f"{code} {description}".lower()
        return any(marker in text for marker in _ALREADY.get(self.method, ()))


@dataclass(frozen=True)
class LeadUndo:
    """One lead's undo: `verdict` revert | keep | fail, why (`reasons`), notes, and the steps."""

    lead_id: int
    verdict: str
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    steps: tuple[UndoStep, ...] = ()
    deletes: Mapping[str, int] = field(default_factory=dict)  # entity -> id, for the preview
    stage: str = ""  # the stage the lead goes back to

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the journal keeps it while the undo runs)."""
        return {
            "lead_id": self.lead_id,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "steps": [s.to_dict() for s in self.steps],
            "deletes": dict(self.deletes),
            "stage": self.stage,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LeadUndo:
        """Read back `to_dict()`."""
        return cls(
            lead_id=int(data["lead_id"]),
            verdict=str(data["verdict"]),
            reasons=tuple(data.get("reasons") or ()),
            notes=tuple(data.get("notes") or ()),
            steps=tuple(UndoStep.from_dict(s) for s in data.get("steps") or ()),
            deletes={str(k): int(v) for k, v in (data.get("deletes") or {}).items()},
            stage=str(data.get("stage") or ""),
        )


# -- the read -------------------------------------------------------------------------------


def _entity_ids(states: Iterable[LeadState]) -> dict[str, list[int]]:
    """Every deal, contact and company the conversion created or reused, by entity."""
    found: dict[str, set[int]] = {DEAL: set(), CONTACT: set(), COMPANY: set()}
    for state in states:
        for name, entity_id in state.ids.items():
            if name in found and entity_id:
                found[name].add(int(entity_id))
    return {name: sorted(ids) for name, ids in found.items()}


def read_listings(states: Sequence[LeadState]) -> list[Listing]:
    """The one read an undo plans from: the leads, their deals and clients, what is bound to
    the deals, and who else uses the created clients; ids in groups of GROUP per listing."""
    listings: list[Listing] = []
    lead_ids = sorted(s.lead_id for s in states)
    created: dict[str, set[int]] = {CONTACT: set(), COMPANY: set()}
    for state in states:
        for name, entity_id in state.created.items():
            if name in created:
                created[name].add(entity_id)
    ids = _entity_ids(states)

    def grouped(prefix: str, method: str, values: Sequence[int], make: Any, select: Any) -> None:
        for start in range(0, len(values), GROUP):
            chunk = list(values[start : start + GROUP])
            listings.append(Listing(f"{prefix}{start}", method, make(chunk), select, pages=1))

    lead_select = ("ID", "STATUS_ID", "CONTACT_ID", "COMPANY_ID", "DATE_MODIFY")
    grouped("l", "crm.lead.list", lead_ids, lambda c: {"@ID": c}, lead_select)
    deal_select = ("ID", "STAGE_ID", "IS_NEW", "DATE_MODIFY", "LEAD_ID", "CONTACT_ID", "COMPANY_ID")
    grouped("d", "crm.deal.list", ids[DEAL], lambda c: {"@ID": c}, deal_select)
    client_select = ("ID", "DATE_MODIFY", "LEAD_ID", "COMPANY_ID")
    grouped("c", "crm.contact.list", ids[CONTACT], lambda c: {"@ID": c}, client_select)
    grouped(
        "co",
        "crm.company.list",
        ids[COMPANY],
        lambda c: {"@ID": c},
        ("ID", "DATE_MODIFY", "LEAD_ID"),
    )
    grouped(
        "a",
        "crm.activity.list",
        ids[DEAL],
        lambda c: {"BINDINGS": [{"OWNER_TYPE_ID": mapping.DEAL_TYPE_ID, "OWNER_ID": i} for i in c]},
        ("ID", "OWNER_ID", "OWNER_TYPE_ID"),
    )
    grouped(
        "p",
        "crm.item.productrow.list",
        ids[DEAL],
        lambda c: {"=ownerType": "D", "=ownerId": c},
        None,
    )
    contacts, companies = sorted(created[CONTACT]), sorted(created[COMPANY])
    grouped("uc", "crm.deal.list", contacts, lambda c: {"@CONTACT_ID": c}, ("ID", "CONTACT_ID"))
    grouped("uk", "crm.deal.list", companies, lambda c: {"@COMPANY_ID": c}, ("ID", "COMPANY_ID"))
    grouped("lc", "crm.lead.list", contacts, lambda c: {"@CONTACT_ID": c}, ("ID", "CONTACT_ID"))
    grouped("lk", "crm.lead.list", companies, lambda c: {"@COMPANY_ID": c}, ("ID", "COMPANY_ID"))
    grouped("ck", "crm.contact.list", companies, lambda c: {"@COMPANY_ID": c}, ("ID", "COMPANY_ID"))
    return listings


@dataclass(frozen=True)
class PortalNow:
    """The portal as the undo's read found it (rows by id; who uses each created client)."""

    leads: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    deals: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    contacts: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    companies: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    activities: Mapping[int, frozenset[int]] = field(default_factory=dict)  # deal -> owned by it
    product_rows: Mapping[int, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    users: Mapping[tuple[str, int], frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> PortalNow:
        """Parse what `read_listings` brought (rows by listing name)."""

        def by_id(prefix: str) -> dict[int, Mapping[str, Any]]:
            return {
                int(row["ID"]): row
                for name, found in rows.items()
                if _prefix(name) == prefix
                for row in found
                if mapping.link_id(row.get("ID"))
            }

        activities: dict[int, set[int]] = {}
        for row in by_id("a").values():
            if mapping.link_id(row.get("OWNER_TYPE_ID")) == mapping.DEAL_TYPE_ID:
                owner = mapping.link_id(row.get("OWNER_ID"))
                if owner:
                    activities.setdefault(owner, set()).add(int(row["ID"]))
        product_rows: dict[int, list[Mapping[str, Any]]] = {}
        for name, found in rows.items():
            if _prefix(name) == "p":
                for row in found:
                    owner = mapping.link_id(row.get("ownerId"))
                    if owner:
                        product_rows.setdefault(owner, []).append(row)
        users: dict[tuple[str, int], set[str]] = {}
        for prefix, entity, column, user in (
            ("uc", CONTACT, "CONTACT_ID", DEAL),
            ("uk", COMPANY, "COMPANY_ID", DEAL),
            ("lc", CONTACT, "CONTACT_ID", "lead"),
            ("lk", COMPANY, "COMPANY_ID", "lead"),
            ("ck", COMPANY, "COMPANY_ID", CONTACT),
        ):
            for row_id, row in by_id(prefix).items():
                used = mapping.link_id(row.get(column))
                if used:
                    users.setdefault((entity, used), set()).add(_item(user, row_id))
        return cls(
            leads=by_id("l"),
            deals=by_id("d"),
            contacts=by_id("c"),
            companies=by_id("co"),
            activities={k: frozenset(v) for k, v in activities.items()},
            product_rows={k: tuple(v) for k, v in product_rows.items()},
            users={k: frozenset(v) for k, v in users.items()},
        )

    def row(self, name: str, entity_id: int) -> Mapping[str, Any] | None:
        """The current row of a deal, contact or company (None: it does not exist)."""
        table = {DEAL: self.deals, CONTACT: self.contacts, COMPANY: self.companies}[name]
        return table.get(entity_id)


def _prefix(name: str) -> str:
    return name.rstrip("0123456789")


# -- planning -------------------------------------------------------------------------------


def _when(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None


def _later(row: Mapping[str, Any], than: dt.datetime | None) -> bool:
    when = _when(row.get("DATE_MODIFY"))
    return when is not None and than is not None and when > than


def _rows_key(rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, float]]:
    """Product rows compared by product and quantity (names and prices are reformatted)."""
    found = []
    for row in rows:
        product = row.get("productId", row.get("PRODUCT_ID"))
        quantity = row.get("quantity", row.get("QUANTITY", 1))
        try:
            found.append((str(int(product or 0)), float(quantity or 0)))
        except (TypeError, ValueError):
            found.append((str(product), 0.0))
    return sorted(found)


def plan_undo(
    lead_id: int, record: Mapping[str, Any] | None, now: PortalNow, *, force: bool = False
) -> LeadUndo:
    """The undo of one converted lead from its conversion record and the portal as read."""
    if record is None:
        return LeadUndo(lead_id, FAIL, (msg.UNDO_NO_RECORD,))
    try:
        state = LeadState.from_dict(record)
    except PlanError as exc:
        return LeadUndo(lead_id, FAIL, (msg.UNDO_UNREADABLE.format(error=exc),))
    plan = state.plan
    before = plan.before
    if not before or not before.get("STATUS_ID"):
        return LeadUndo(lead_id, FAIL, (msg.UNDO_NO_BEFORE,))
    lead = now.leads.get(lead_id)
    if lead is None:
        return LeadUndo(lead_id, KEEP, (msg.UNDO_LEAD_GONE,))
    closed_at = _when(lead.get("DATE_MODIFY"))
    created = state.created
    changes: list[str] = []
    notes: list[str] = []
    if str(lead.get("STATUS_ID") or "") != plan.success_stage:
        changes.append(msg.UNDO_LEAD_MOVED.format(stage=lead.get("STATUS_ID") or "?"))
    known_activities = set(plan.activities) | set(plan.closed)
    deal_id = created.get(DEAL)
    if deal_id:
        deal = now.deals.get(deal_id)
        if deal is None:
            notes.append(msg.UNDO_GONE_ALREADY.format(item=_item(DEAL, deal_id)))
        else:
            if str(deal.get("IS_NEW") or "Y") == "N":
                changes.append(
                    msg.UNDO_DEAL_MOVED.format(
                        item=_item(DEAL, deal_id), stage=deal.get("STAGE_ID")
                    )
                )
            elif _later(deal, closed_at):
                changes.append(msg.UNDO_EDITED.format(item=_item(DEAL, deal_id)))
            new = sorted(now.activities.get(deal_id, frozenset()) - known_activities)
            if new:
                changes.append(
                    msg.UNDO_NEW_ACTIVITIES.format(
                        item=_item(DEAL, deal_id), ids=", ".join(map(str, new))
                    )
                )
            rows = now.product_rows.get(deal_id, ())
            if _rows_key(rows) != _rows_key(plan.product_rows):
                changes.append(
                    msg.UNDO_ROWS_CHANGED.format(
                        item=_item(DEAL, deal_id), now=len(rows), then=len(plan.product_rows)
                    )
                )
    protected: dict[str, int] = {}
    used_by: dict[str, str] = {}
    for name in (CONTACT, COMPANY):
        entity_id = created.get(name)
        if not entity_id:
            continue
        row = now.row(name, entity_id)
        if row is None:
            notes.append(msg.UNDO_GONE_ALREADY.format(item=_item(name, entity_id)))
            continue
        if _later(row, closed_at):
            changes.append(msg.UNDO_EDITED.format(item=_item(name, entity_id)))
        mine = {_item("lead", lead_id), _item(DEAL, deal_id), _item(CONTACT, created.get(CONTACT))}
        users = sorted(now.users.get((name, entity_id), frozenset()) - mine)
        if users:
            changes.append(
                msg.UNDO_USED.format(item=_item(name, entity_id), users=", ".join(users))
            )
            protected[name] = entity_id
            used_by[name] = ", ".join(users)
    if changes and not force:
        return LeadUndo(lead_id, KEEP, tuple(changes), tuple(notes))
    if changes:
        notes[:0] = [msg.UNDO_FORCED, *changes]
    for name, entity_id in protected.items():
        notes.append(msg.UNDO_KEPT_CLIENT.format(item=_item(name, entity_id), users=used_by[name]))
    steps: list[UndoStep] = []
    # 1: activities back to the lead as they were; comments off clients that stay.
    if plan.activity_mode is Activities.MOVE:
        for activity in plan.activities:
            steps.append(
                UndoStep(
                    f"b{activity}",
                    REBIND,
                    "crm.activity.binding.add",
                    {
                        "activityId": activity,
                        "entityTypeId": mapping.LEAD_TYPE_ID,
                        "entityId": lead_id,
                    },
                )
            )
    else:
        # Reopening needs no order: the activity kept its lead binding (phase 2, with deletions).
        for activity in plan.activities:
            steps.append(
                UndoStep(
                    f"a{activity}",
                    DELETE,
                    "crm.activity.update",
                    {"id": activity, "fields": {"COMPLETED": "N"}},
                )
            )
    for name, entity_id in protected.items():
        for activity in sorted(known_activities):
            steps.append(
                UndoStep(
                    f"u{name[:2]}{activity}",
                    DELETE,
                    "crm.activity.binding.delete",
                    {"activityId": activity, "entityTypeId": _TYPE_ID[name], "entityId": entity_id},
                )
            )
        for comment in plan.comments:
            steps.append(
                UndoStep(
                    f"t{name[:2]}{comment}",
                    DELETE,
                    "crm.timeline.bindings.unbind",
                    {"fields": {"OWNER_ID": comment, "ENTITY_ID": entity_id, "ENTITY_TYPE": name}},
                )
            )
    # 2: what the conversion created goes; requisites it gave clients that stay go too.
    deletes: dict[str, int] = {}
    for name in (DEAL, CONTACT, COMPANY):
        entity_id = created.get(name)
        if entity_id and name not in protected and now.row(name, entity_id) is not None:
            deletes[name] = entity_id
            steps.append(UndoStep(f"x{name}", DELETE, _DELETE[name], {"id": entity_id}))
    for name in (CONTACT, COMPANY):
        requisite = state.progress.ids.get(requisite_key(name))
        if requisite and name not in deletes:
            steps.append(UndoStep(f"r{name}", DELETE, "crm.requisite.delete", {"id": requisite}))
    # 3: the lead as it was (Bitrix24 then clears LEAD_ID on what still names it).
    fields: dict[str, Any] = {"STATUS_ID": before["STATUS_ID"]}
    for column in ("CONTACT_ID", "COMPANY_ID"):
        was = mapping.link_id(before.get(column))
        if mapping.link_id(lead.get(column)) != was:
            fields[column] = was or 0
    steps.append(UndoStep("lead", LEAD, "crm.lead.update", {"id": lead_id, "fields": fields}))
    # 4: reused clients that named the lead before name it again.
    for name in (CONTACT, COMPANY):
        entity_id = state.ids.get(name)
        if not entity_id or name in created:
            continue
        row = now.row(name, entity_id)
        if row is not None and mapping.link_id(row.get("LEAD_ID")) == lead_id:
            steps.append(
                UndoStep(
                    f"l{name}",
                    RELINK,
                    "crm.item.update",
                    {
                        "entityTypeId": _TYPE_ID[name],
                        "id": entity_id,
                        "fields": {"leadId": lead_id},
                    },
                )
            )
    return LeadUndo(
        lead_id,
        REVERT,
        (),
        tuple(notes),
        tuple(steps),
        deletes,
        str(before["STATUS_ID"]),
    )


# -- running --------------------------------------------------------------------------------


@dataclass(frozen=True)
class UndoProgress:
    """Where one lead's undo stands: steps done, sent (outcome not known), transient tries."""

    plan: LeadUndo
    done: frozenset[str] = frozenset()
    sent: frozenset[str] = frozenset()
    tries: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def status(self) -> str:
        """pending | reverting | reverted | kept | failed (the undo journal's status)."""
        if self.plan.verdict == KEEP:
            return "kept"
        if self.plan.verdict == FAIL or self.error is not None:
            return "failed"
        if all(step.id in self.done for step in self.plan.steps):
            return "reverted"
        return "reverting" if (self.done or self.sent) else "pending"

    @property
    def phases_left(self) -> int:
        """How many phases of steps are not done yet."""
        return len({s.phase for s in self.plan.steps if s.id not in self.done})

    def ready(self) -> list[UndoStep]:
        """The steps that may go now: the undone ones of the lowest phase left."""
        if self.status not in ("pending", "reverting"):
            return []
        left = [s for s in self.plan.steps if s.id not in self.done]
        if not left:
            return []
        phase = min(s.phase for s in left)
        return [s for s in left if s.phase == phase]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "plan": self.plan.to_dict(),
            "done": sorted(self.done),
            "sent": sorted(self.sent),
            "tries": dict(self.tries),
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UndoProgress:
        """Read back `to_dict()`."""
        return cls(
            LeadUndo.from_dict(data["plan"]),
            frozenset(data.get("done") or ()),
            frozenset(data.get("sent") or ()),
            {str(k): int(v) for k, v in (data.get("tries") or {}).items()},
            data.get("error"),
        )


def command_key(lead_id: int, step: UndoStep) -> str:
    """The batch key of a step: `U<lead>_<step>`."""
    return f"U{lead_id}_{step.id}"


def next_batch(
    progress: Iterable[UndoProgress], *, size: int = MAX_BATCH
) -> list[tuple[int, UndoStep, Command]]:
    """Up to `size` ready steps, leads with the most phases left first: the longest chains
    start early, so the last batches are not left with one lead's tail each."""
    picked: list[tuple[int, UndoStep, Command]] = []
    ordered = sorted(progress, key=lambda p: (-p.phases_left, p.plan.lead_id))
    for item in ordered:
        for step in item.ready():
            if len(picked) >= size:
                return picked
            picked.append(
                (
                    item.plan.lead_id,
                    step,
                    Command(command_key(item.plan.lead_id, step), step.method, step.params),
                )
            )
    return picked
