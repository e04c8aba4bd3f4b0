"""Leads Bitrix24 converted itself while b24app was converting them: Bitrix24's conversion stays,
b24app's duplicate goes.

When an admin switches the CRM from Classic to Simple, Bitrix24 converts every lead still in work
on its own - deal, contact and/or company, each carrying `LEAD_ID`, the lead's activities completed
or moved to the deal as the admin chose (https://helpdesk.bitrix24.com/open/17627868/,
https://helpdesk.bitrix24.pl/open/17645664/). A person converting a lead in the UI does the same.
REST can neither prevent it nor read the admin's choices, so a lead b24app was converting at that
moment may end with two deals (two contacts, two companies). `reconcile` finds out, for a set of
lead states the conversion holds, which leads Bitrix24 converted ("taken") and undoes b24app's
part of those:

1. Read, a few requests for hundreds of leads (keyset listings sharing batches): the leads, the
   deals with `LEAD_ID` among them, and the deals/contacts/companies carrying b24app's
   `ORIGIN_ID` for them (what b24app created, whatever the journal recorded - an answer may have
   been lost). A lead is taken when it is closed as a success and a deal with its `LEAD_ID`
   exists that b24app did not create (`ORIGINATOR_ID` is not b24app's): Bitrix24's deal (the
   newest, if an earlier conversion left one too). A lead still in work is never taken.
2. For taken leads with something of b24app's to undo: the activities involved (the lead's, and
   any bound to b24app's deal) and their bindings (`crm.activity.binding.list`); who else uses
   b24app's contact/company (deals and contacts of other leads: a matched client is never
   deleted).
3. Activities end as Bitrix24's converter leaves them. Its "close activities" choice is not
   readable, so it is inferred from the activities themselves: one bound to Bitrix24's deal means
   "move"; one of the lead's, completed and still on the lead, that b24app did not complete means
   "complete"; no evidence: Bitrix24's default, complete. Then (a) each activity is bound where it
   belongs (the lead and completed / Bitrix24's deal and as it was) and the lead's
   `CONTACT_ID`/`COMPANY_ID` are pointed back at Bitrix24's clients if b24app's closing call
   overwrote them; (b) once that worked, the lead's binding is dropped (move) and b24app's deal
   deleted - Bitrix24 deletes an activity bound only to a deleted deal, hence the order; (c) then
   b24app's contact and company, unless another deal or contact uses them.

Every step is idempotent and decided from what the portal holds now, not from the journal, so a
kill -9 anywhere (or a lost answer) followed by another `reconcile` ends in the same place. A
lead whose undoing fails is read and tried again, up to `MAX_PASSES` times; then it is reported
unresolved (and must not be converted further). Leads that are not taken are left to the caller.
https://apidocs.bitrix24.com/api-reference/crm/timeline/activities/binding/index.html
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from b24app import messages as msg
from b24app.crm import mapping
from b24app.crm.journal import LeadEntry, LeadStatus
from b24app.crm.policy import Activities
from b24app.crm.scheduler import LeadState
from b24app.errors import B24Error, OutcomeUnknown
from b24app.rest.command import Command
from b24app.rest.listing import Listing, Listings
from b24app.rest.portal import Portal
from b24app.vocabulary import (
    ALREADY_DONE,
    COMPANY,
    CONTACT,
    DEAL,
    DEAL_TYPE_ID,
    IDS_PER_FILTER,
    LEAD_TYPE_ID,
    PAGE_SIZE,
    PAGES_PER_REQUEST,
    is_not_found,
)
from b24app.vocabulary import DELETE_METHOD as _DELETE
from b24app.vocabulary import LIST_METHOD as _LIST

log = logging.getLogger("b24app.crm")

MAX_PASSES = 4
EVIDENCE = 50  # untouched activities read, at most, to infer the admin's activity choice
COMPLETE, MOVE = "complete", "move"
KINDS = (DEAL, CONTACT, COMPANY)
_LEAD_SELECT = ("ID", "STATUS_ID", "STATUS_SEMANTIC_ID", "CONTACT_ID", "COMPANY_ID")
_DEAL_SELECT = ("ID", "LEAD_ID", "ORIGINATOR_ID", "CONTACT_ID", "COMPANY_ID")
_ORIGIN_SELECT = ("ID", "ORIGINATOR_ID", "ORIGIN_ID")
_ACTIVITY_SELECT = ("ID", "COMPLETED")
# Answers meaning the change is already there (or its object is gone), by method.
_ALREADY = ALREADY_DONE
_GONE_OK = frozenset(
    {
        "crm.activity.update",
        "crm.activity.binding.delete",
        "crm.deal.delete",
        "crm.contact.delete",
        "crm.company.delete",
    }
)
LEAD, DEAL_TYPE = LEAD_TYPE_ID, DEAL_TYPE_ID


@dataclass(frozen=True)
class Taken:
    """A lead Bitrix24 converted itself: its entities, and what b24app removed of its own.

    `kept`: clients b24app created for this lead but left in place because other deals or
    contacts use them now.
    """

    lead_id: int
    deal_id: int
    contact_id: int | None = None
    company_id: int | None = None
    removed: tuple[tuple[str, int], ...] = ()
    kept: tuple[tuple[str, int], ...] = ()

    @property
    def note(self) -> str:
        """The report's line for this lead (ids only, no personal data)."""
        text = "converted by Bitrix24 itself (CRM switched to Simple mode, or by hand)"
        if self.removed:
            text += "; b24app removed its own " + ", ".join(f"{k} {i}" for k, i in self.removed)
        if self.kept:
            text += "; kept (used elsewhere) " + ", ".join(f"{k} {i}" for k, i in self.kept)
        return text

    def entry(self) -> LeadEntry:
        """The journal row: converted, with Bitrix24's deal and clients."""
        return LeadEntry(
            lead_id=self.lead_id,
            status=LeadStatus.CONVERTED,
            deal_id=self.deal_id,
            contact_id=self.contact_id,
            company_id=self.company_id,
            error=self.note,
        )


@dataclass(frozen=True)
class Reconciled:
    """What `reconcile` found: taken leads (settled), unresolved ones (why), the inferred choice."""

    taken: Mapping[int, Taken] = field(default_factory=dict)
    unresolved: Mapping[int, str] = field(default_factory=dict)
    activities: str | None = None

    def failed_entry(self, state: LeadState) -> LeadEntry:
        """The journal row of an unresolved lead: failed, its state kept for a later run."""
        return LeadEntry(
            lead_id=state.lead_id,
            status=LeadStatus.FAILED,
            state=state.to_dict(),
            deal_id=state.ids.get("deal"),
            contact_id=state.ids.get("contact"),
            company_id=state.ids.get("company"),
            error=self.unresolved[state.lead_id],
        )


@dataclass
class _Lead:
    """One lead as read in a pass."""

    state: LeadState
    row: Mapping[str, Any] | None = None
    platform: Mapping[str, Any] | None = None  # Bitrix24's deal
    ours: dict[str, list[int]] = field(default_factory=lambda: {k: [] for k in KINDS})

    @property
    def lead_id(self) -> int:
        return self.state.lead_id

    @property
    def closed(self) -> bool:
        """Whether the lead is at a success stage (Bitrix24's conversion closes it)."""
        row = self.row or {}
        semantic = str(row.get("STATUS_SEMANTIC_ID") or "").upper()
        return semantic == "S" if semantic else str(row.get("STATUS_ID")) == "CONVERTED"

    @property
    def taken(self) -> bool:
        """Whether Bitrix24 converted the lead: closed, with a deal of its own."""
        return bool(self.platform_deal) and self.closed

    @property
    def platform_deal(self) -> int:
        return mapping.link_id((self.platform or {}).get("ID")) or 0

    def platform_client(self, name: str) -> int | None:
        return mapping.link_id((self.platform or {}).get(f"{name.upper()}_ID"))

    def owned(self) -> set[tuple[str, int]]:
        return {(kind, i) for kind, ids in self.ours.items() for i in ids}

    def completed_by_us(self, activity: int) -> bool:
        plan, progress = self.state.plan, self.state.progress
        step = f"a{activity}"
        return plan.activity_mode is Activities.COMPLETE and (
            step in progress.done or step in progress.unsure
        )


@dataclass(frozen=True)
class _Activity:
    id: int
    bindings: frozenset[tuple[int, int]]
    completed: bool


@dataclass(frozen=True)
class _Op:
    """One write of the undo, for one lead."""

    lead_id: int
    command: Command


def reconcile(
    portal: Portal, states: Iterable[LeadState], *, passes: int = MAX_PASSES
) -> Reconciled:
    """Settle the leads among `states` that Bitrix24 converted itself (see the module doc).

    Raises a B24Error only when the portal cannot be read at all; per-lead failures end up in
    `unresolved`.
    """
    todo = {state.lead_id: state for state in states}
    taken: dict[int, Taken] = {}
    reasons: dict[int, str] = {}
    choice: str | None = None
    for _ in range(max(1, passes)):
        if not todo:
            break
        leads = _read(portal, todo.values())
        mine = {lead_id: lead for lead_id, lead in leads.items() if lead.taken}
        for lead_id in set(todo) - set(mine):
            todo.pop(lead_id)  # not converted by Bitrix24: the caller carries on
            reasons.pop(lead_id, None)
        if not mine:
            break
        done, failed, choice = _undo(portal, mine, choice)
        for lead_id, outcome in done.items():
            taken[lead_id] = outcome
            todo.pop(lead_id, None)
            reasons.pop(lead_id, None)
        reasons.update(failed)
    unresolved = {
        lead_id: msg.FAIL_DUPLICATE.format(reason=reasons.get(lead_id) or msg.NO_ANSWER)
        for lead_id in todo
        if lead_id in reasons
    }
    if taken:
        log.info(
            "%d lead(s) converted by Bitrix24 itself; b24app's duplicates removed (activities: %s)",
            len(taken),
            choice or "untouched",
        )
    return Reconciled(taken=taken, unresolved=unresolved, activities=choice)


# -- reading ---------------------------------------------------------------------------------


def _chunks(values: Sequence[Any], size: int = IDS_PER_FILTER) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def _pages(expected: int) -> int:
    return min(PAGES_PER_REQUEST, math.ceil(expected / PAGE_SIZE) + 1)


def _read_all(portal: Portal, listings: Sequence[Listing]) -> dict[str, list[dict[str, Any]]]:
    if not listings:
        return {}
    lists = Listings(portal, listings)
    found = lists.read()
    if lists.errors:
        raise next(iter(lists.errors.values()))
    return found


def _read(portal: Portal, states: Iterable[LeadState]) -> dict[int, _Lead]:
    """The leads, Bitrix24's deals for them, and what b24app created for them."""
    leads = {state.lead_id: _Lead(state) for state in states}
    listings = []
    for n, chunk in enumerate(_chunks(sorted(leads))):
        listings += [
            Listing(f"l{n}", "crm.lead.list", {"@ID": chunk}, _LEAD_SELECT, _pages(len(chunk))),
            Listing(
                f"d{n}", "crm.deal.list", {"@LEAD_ID": chunk}, _DEAL_SELECT, _pages(len(chunk))
            ),
        ]
        origins = [mapping.origin_id(i) for i in chunk]
        for kind in KINDS:
            listings.append(
                Listing(
                    f"o{kind}{n}",
                    _LIST[kind],
                    {"ORIGINATOR_ID": mapping.ORIGINATOR_ID, "@ORIGIN_ID": origins},
                    _ORIGIN_SELECT,
                )
            )
    found = _read_all(portal, listings)
    for name, rows in found.items():
        for row in rows:
            if name.startswith("l"):
                lead = leads.get(mapping.link_id(row.get("ID")) or 0)
                if lead is not None:
                    lead.row = row
            elif name.startswith("d"):
                lead = leads.get(mapping.link_id(row.get("LEAD_ID")) or 0)
                ours = str(row.get("ORIGINATOR_ID") or "") == mapping.ORIGINATOR_ID
                deal_id = mapping.link_id(row.get("ID")) or 0
                if lead is not None and not ours and deal_id > lead.platform_deal:
                    lead.platform = row  # the newest of Bitrix24's deals
            else:
                kind = next(k for k in KINDS if name.startswith(f"o{k}"))
                lead = leads.get(mapping.lead_id_of(row.get("ORIGIN_ID")) or 0)
                entity = mapping.link_id(row.get("ID"))
                if (
                    lead is not None
                    and entity
                    and str(row.get("ORIGINATOR_ID")) == mapping.ORIGINATOR_ID
                    and entity not in lead.ours[kind]
                ):
                    lead.ours[kind].append(entity)
    return leads


def _activities(
    portal: Portal, leads: Mapping[int, _Lead], evidence: Sequence[int]
) -> tuple[dict[int, _Activity], set[int], dict[str, set[int]]]:
    """The activities involved (plus `evidence` ones) with their bindings, the ids whose
    bindings could not be read, and who uses b24app's clients ("contact:<id>" -> deal ids,
    "company:<id>" -> deal ids and contact ids negated)."""
    deals = sorted(i for lead in leads.values() for i in lead.ours[DEAL])
    contacts = sorted(i for lead in leads.values() for i in lead.ours[CONTACT])
    companies = sorted(i for lead in leads.values() for i in lead.ours[COMPANY])
    planned = sorted(
        {a for lead in leads.values() for a in lead.state.plan.activities} | set(evidence)
    )
    listings = [
        Listing(
            f"b{n}",
            "crm.activity.list",
            {"OWNER_TYPE_ID": DEAL_TYPE, "@OWNER_ID": chunk},
            _ACTIVITY_SELECT,
            _pages(len(chunk) * 2),
        )
        for n, chunk in enumerate(_chunks(deals))
    ]
    listings += [
        Listing(f"a{n}", "crm.activity.list", {"@ID": chunk}, _ACTIVITY_SELECT, _pages(len(chunk)))
        for n, chunk in enumerate(_chunks(planned))
    ]
    for prefix, method, name, ids in (
        ("rc", "crm.deal.list", "CONTACT_ID", contacts),
        ("rk", "crm.deal.list", "COMPANY_ID", companies),
        ("kc", "crm.contact.list", "COMPANY_ID", companies),
    ):
        listings += [
            Listing(f"{prefix}{n}", method, {f"@{name}": chunk}, ("ID", name), _pages(len(chunk)))
            for n, chunk in enumerate(_chunks(ids))
        ]
    found = _read_all(portal, listings)
    completed: dict[int, bool] = {}
    users: dict[str, set[int]] = {}
    for name, rows in found.items():
        for row in rows:
            row_id = mapping.link_id(row.get("ID"))
            if not row_id:
                continue
            if name[0] in "ab":
                completed[row_id] = str(row.get("COMPLETED", "N")).upper() == "Y"
            elif name.startswith("rc"):
                users.setdefault(f"contact:{mapping.link_id(row.get('CONTACT_ID'))}", set()).add(
                    row_id
                )
            else:
                user = row_id if name.startswith("rk") else -row_id
                users.setdefault(f"company:{mapping.link_id(row.get('COMPANY_ID'))}", set()).add(
                    user
                )
    ids = sorted(completed)
    activities: dict[int, _Activity] = {}
    unread: set[int] = set()
    if ids:
        result = portal.batch_many(
            [
                Command(f"g{activity}", "crm.activity.binding.list", {"activityId": activity})
                for activity in ids
            ],
            halt=False,
            idempotent=True,
        )
        for activity in ids:
            rows = result.results.get(f"g{activity}")
            if not isinstance(rows, list):
                error = result.errors.get(f"g{activity}")
                if error is None or not _gone(error):
                    unread.add(activity)  # not answered: the lead waits for the next pass
                continue
            pairs = frozenset(
                (
                    mapping.link_id(r.get("entityTypeId")) or 0,
                    mapping.link_id(r.get("entityId")) or 0,
                )
                for r in rows
                if isinstance(r, Mapping)
            )
            activities[activity] = _Activity(activity, pairs, completed[activity])
    return activities, unread, users


def _gone(error: B24Error) -> bool:
    code = (error.code or "").upper()
    return is_not_found(code, error.description)


def _involved(lead: _Lead, activities: Mapping[int, _Activity]) -> list[int]:
    """The lead's planned activities and any bound to b24app's deal of it."""
    deals = {(DEAL_TYPE, d) for d in lead.ours[DEAL]}
    bound = {a for a, act in activities.items() if act.bindings & deals}
    return sorted(set(lead.state.plan.activities) | bound)


def _infer(leads: Mapping[int, _Lead], activities: Mapping[int, _Activity]) -> str:
    """The admin's activity choice, from what Bitrix24 did to the leads' activities."""
    moved = completed = 0
    for lead in leads.values():
        for activity_id in lead.state.plan.activities:
            act = activities.get(activity_id)
            if act is None:
                continue
            if (DEAL_TYPE, lead.platform_deal) in act.bindings:
                moved += 1
            elif (
                (LEAD, lead.lead_id) in act.bindings
                and act.completed
                and not lead.completed_by_us(activity_id)
            ):
                completed += 1
    return MOVE if moved > completed else COMPLETE


@dataclass
class _Undo:
    """The writes undoing b24app's part of one taken lead, in three phases."""

    lead: _Lead
    first: list[Command] = field(default_factory=list)  # bind where they belong, relink
    second: list[Command] = field(default_factory=list)  # drop lead bindings, delete the deal
    third: list[Command] = field(default_factory=list)  # delete the clients
    removed: list[tuple[str, int]] = field(default_factory=list)
    kept: list[tuple[str, int]] = field(default_factory=list)
    blocked: str | None = None

    def taken(self) -> Taken:
        lead = self.lead
        return Taken(
            lead_id=lead.lead_id,
            deal_id=lead.platform_deal,
            contact_id=lead.platform_client(CONTACT),
            company_id=lead.platform_client(COMPANY),
            removed=tuple(self.removed),
            kept=tuple(self.kept),
        )


def _plan_undo(
    lead: _Lead,
    activities: Mapping[int, _Activity],
    unread: set[int],
    users: Mapping[str, set[int]],
    choice: str,
    doomed: set[int],
) -> _Undo:
    undo = _Undo(lead)
    lead_id, target = lead.lead_id, lead.platform_deal
    n = 0

    def command(method: str, params: dict[str, Any]) -> Command:
        nonlocal n
        n += 1
        return Command(f"R{lead_id}_{n}", method, params)

    def binding(method: str, activity_id: int, owner: tuple[int, int]) -> Command:
        return command(
            method, {"activityId": activity_id, "entityTypeId": owner[0], "entityId": owner[1]}
        )

    planned = set(lead.state.plan.activities)
    involved = _involved(lead, activities)
    if unread & set(involved):
        undo.blocked = "the bindings of its activities could not be read"
        return undo
    for activity_id in involved:
        act = activities.get(activity_id)
        if act is None:
            continue  # deleted meanwhile: nothing to keep
        on_lead, on_deal = (LEAD, lead_id) in act.bindings, (DEAL_TYPE, target) in act.bindings
        if activity_id in planned and choice == COMPLETE:
            if not on_lead:
                undo.first.append(binding("crm.activity.binding.add", activity_id, (LEAD, lead_id)))
            if not act.completed:
                undo.first.append(
                    command(
                        "crm.activity.update", {"id": activity_id, "fields": {"COMPLETED": "Y"}}
                    )
                )
            continue
        if not on_deal:
            undo.first.append(binding("crm.activity.binding.add", activity_id, (DEAL_TYPE, target)))
        if activity_id in planned:
            if act.completed and lead.completed_by_us(activity_id):
                undo.first.append(
                    command(
                        "crm.activity.update", {"id": activity_id, "fields": {"COMPLETED": "N"}}
                    )
                )
            if on_lead:
                undo.second.append(
                    binding("crm.activity.binding.delete", activity_id, (LEAD, lead_id))
                )
    row = lead.row or {}
    relink = {
        f"{name.upper()}_ID": lead.platform_client(name) or 0
        for name in (CONTACT, COMPANY)
        if mapping.link_id(row.get(f"{name.upper()}_ID")) in lead.ours[name]
    }
    if relink:
        undo.first.append(command("crm.lead.update", {"id": lead_id, "fields": relink}))
    ours = lead.ours
    for deal_id in ours[DEAL]:
        undo.second.append(command(_DELETE[DEAL], {"id": deal_id}))
        undo.removed.append((DEAL, deal_id))
    for name in (CONTACT, COMPANY):
        for entity_id in ours[name]:
            if entity_id == lead.platform_client(name):
                # it carries LEAD_ID, so Bitrix24's converter reused it (leadconverter.php:
                # 320-344): it is Bitrix24's client now, not a duplicate
                continue
            if users.get(f"{name}:{entity_id}", set()) - doomed:
                undo.kept.append((name, entity_id))
                continue
            undo.third.append(command(_DELETE[name], {"id": entity_id}))
            undo.removed.append((name, entity_id))
    return undo


def _failure(command: Command, result: Any) -> str | None:
    """Why a write did not take effect, or None when it did (or was already in place)."""
    if command.key in result.results:
        return None
    error = result.errors.get(command.key)
    if error is None:
        return f"{command.method}: no answer"
    if isinstance(error, OutcomeUnknown):
        return f"{command.method}: the answer was lost"
    code = (error.code or "").upper()
    if code in _ALREADY.get(command.method, ()):
        return None
    gone = is_not_found(code, error.description)
    if gone and (command.method in _GONE_OK or command.method == "crm.activity.binding.add"):
        return None
    return f"{command.method}: {code or 'error'}: {error.description}".rstrip(": ")


def _send(portal: Portal, undos: Sequence[_Undo], phase: str, failed: dict[int, str]) -> None:
    """One phase of every undo whose earlier phases all worked; failures noted per lead."""
    pending = [u for u in undos if u.lead.lead_id not in failed]
    commands = [c for u in pending for c in getattr(u, phase)]
    if not commands:
        return
    result = portal.batch_many(commands, halt=False, idempotent=True)
    for undo in pending:
        for command in getattr(undo, phase):
            reason = _failure(command, result)
            if reason is not None:
                failed.setdefault(undo.lead.lead_id, reason)


def _undo(
    portal: Portal, leads: Mapping[int, _Lead], choice: str | None
) -> tuple[dict[int, Taken], dict[int, str], str | None]:
    """Undo b24app's part of these taken leads; (settled, failed with why, activity choice)."""
    work = {lead_id: lead for lead_id, lead in leads.items() if lead.owned()}
    done = {lead_id: _Undo(lead).taken() for lead_id, lead in leads.items() if lead_id not in work}
    if not work:
        return done, {}, choice
    evidence = [
        a
        for lead_id, lead in leads.items()
        if lead_id not in work
        for a in lead.state.plan.activities
    ][:EVIDENCE]
    activities, unread, users = _activities(portal, work, evidence)
    if choice is None:
        choice = _infer(leads, activities)
    # b24app's deals and contacts of these leads go: they do not keep a client in use.
    doomed = {d for lead in work.values() for d in lead.ours[DEAL]}
    doomed |= {-c for lead in work.values() for c in lead.ours[CONTACT]}
    undos = [_plan_undo(lead, activities, unread, users, choice, doomed) for lead in work.values()]
    failed = {u.lead.lead_id: u.blocked for u in undos if u.blocked is not None}
    for phase in ("first", "second", "third"):
        _send(portal, undos, phase, failed)
    for undo in undos:
        if undo.lead.lead_id not in failed:
            done[undo.lead.lead_id] = undo.taken()
    return done, failed, choice
