"""Planning one lead's conversion: which entities to create or reuse, and the steps, in order.

Pure: values in, values out. `plan_lead` turns a lead as read (plus its open activities, product
rows, client matches and the ids an earlier run recorded) into a `LeadPlan`: a list of `Step`s in
Bitrix24's own conversion order (LeadConverter: COMPANY -> CONTACT -> DEAL -> activities ->
product rows -> finalization), each naming the steps it must wait for. Steps refer to entities
symbolically ("the company", "the deal"); `LeadPlan.command(step, ids)` makes the REST call once
the ids it needs are known. `b24app.crm.scheduler` decides when each step runs.

Why these steps, in this order:

* The company comes first so the contact can carry its `COMPANY_ID`; the deal waits for both and
  gets `CATEGORY_ID`, `CONTACT_ID`/`CONTACT_IDS`, `COMPANY_ID`.
* Activities, `move` (Bitrix24's "do not close activities after conversion"):
  `crm.activity.binding.add` to the deal, then `crm.activity.binding.delete` from the lead (lead ->
  deal cannot use `binding.move`, which needs equal entity types). `complete`:
  `crm.activity.update COMPLETED=Y`. Either way *before* the lead closes, because Bitrix24
  completes a closing lead's open activities itself.
  https://apidocs.bitrix24.com/tutorials/crm/how-to-edit-crm-objects/how-to-move-activity-between-objects.html
* Product rows (`crm.deal.productrows.set`) and a timeline comment naming the lead, on the deal.
* Finally `crm.lead.update`: `STATUS_ID` = the portal's success stage (read from the facts), and
  the lead's `CONTACT_ID`/`COMPANY_ID` = its clients, as Bitrix24's finalization does. It waits
  for every other step, so a lead never closes unless its deal exists and everything else is done.
* Settling (`LeadPlan.settle`): the portal lock (`b24app.locks`) keeps other b24app runs away
  only as far as the processes share it - two machines with their own journals and no Redis
  share nothing. So right after the deal exists, and before anything is bound to it, the deals
  b24app made from the lead are read back (by `ORIGIN_ID`: one listing for SETTLE_GROUP leads,
  about 2% more commands). Deal ids only grow, so every run that reads them agrees on the winner:
  the lowest deal id, and the clients it names. Every other deal is deleted (a later run's or a
  dead run's; nothing is ever bound to a deal before its run settles, so that loses nothing), and
  so are this run's own contact and company when the winner's differ (`discard` steps; one that
  another lead of this run uses is kept). A loser finishes the lead on the winner's deal and
  clients: the later steps are idempotent, so two runs doing them end in the same place, and a
  winner that died midway is finished by the loser.

Reuse, never re-create: a client the journal recorded, a repeat lead's own `CONTACT_ID` /
`COMPANY_ID` (always attached to the deal, whatever the policy), or a matched client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from b24app import messages as msg
from b24app.crm import mapping
from b24app.crm.facts import PortalFacts
from b24app.crm.matching import ClientMatch
from b24app.crm.policy import Activities, Client, Policy
from b24app.errors import B24AppError
from b24app.rest.command import Command

COMPANY, CONTACT, DEAL = "company", "contact", "deal"
ENTITIES = (COMPANY, CONTACT, DEAL)
_ADD = {COMPANY: "crm.company.add", CONTACT: "crm.contact.add", DEAL: "crm.deal.add"}
_LIST = {COMPANY: "crm.company.list", CONTACT: "crm.contact.list", DEAL: "crm.deal.list"}
_DELETE = {COMPANY: "crm.company.delete", CONTACT: "crm.contact.delete", DEAL: "crm.deal.delete"}
# Leads one settle listing reads: a page holds 50 rows, so even five runs racing on every lead of
# the group fit in it (a full page is read again, never trusted).
SETTLE_GROUP = 10


class PlanError(B24AppError):
    """A lead or a stored plan that cannot be planned or read back (e.g. a lead without ID)."""


class Source(StrEnum):
    """Where an entity of a conversion comes from."""

    CREATE = "create"  # b24app creates it now
    LEAD = "lead"  # the repeat lead's own CONTACT_ID / COMPANY_ID
    MATCH = "match"  # found by phone / e-mail
    JOURNAL = "journal"  # created by an earlier, interrupted run


@dataclass(frozen=True)
class EntityPlan:
    """One entity of a conversion: created (with `fields`) or reused (with `id`)."""

    source: Source
    id: int | None = None
    fields: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def created(self) -> bool:
        """Whether b24app creates this entity in this conversion."""
        return self.source is Source.CREATE


class StepKind(StrEnum):
    """The kinds of step; the values start the step ids and so the batch keys."""

    COMPANY = "co"
    CONTACT = "c"
    DEAL = "d"
    BIND = "b"
    UNBIND = "u"
    COMPLETE = "a"
    PRODUCTS = "p"
    COMMENT = "m"
    SETTLE = "s"
    DISCARD = "x"
    FINISH = "f"


_CREATES = {StepKind.COMPANY: COMPANY, StepKind.CONTACT: CONTACT, StepKind.DEAL: DEAL}
STEP_OF = {entity: kind.value for kind, entity in _CREATES.items()}  # "deal" -> "d"


@dataclass(frozen=True)
class Step:
    """One REST call of a conversion; runs once every step in `after` is done."""

    id: str
    kind: StepKind
    after: tuple[str, ...] = ()
    activity_id: int | None = None
    discard: tuple[str, int] | None = None  # DISCARD: ("deal" | "contact" | "company", id)

    @property
    def creates(self) -> str | None:
        """The entity this step creates ("company", "contact", "deal"), or None."""
        return _CREATES.get(self.kind)

    @property
    def verifiable(self) -> bool:
        """Whether a lost answer must be checked before resending (the call is not idempotent).

        Creations and the comment: resending would make a second one. The lead's closing call:
        resent after it took effect, a refusal (e.g. the lead's rights changed once it closed)
        would fail a lead that is converted. Every other step is idempotent and sent again.
        """
        return self.creates is not None or self.kind in (StepKind.COMMENT, StepKind.FINISH)


@dataclass(frozen=True)
class LeadPlan:
    """Everything needed to convert one lead; `steps` derives the calls. JSON via to_dict."""

    lead_id: int
    skip: str | None = None
    company: EntityPlan | None = None
    contact: EntityPlan | None = None
    deal: EntityPlan | None = None
    pipeline: int = 0
    activities: tuple[int, ...] = ()
    activity_mode: Activities = Activities.COMPLETE
    product_rows: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    success_stage: str = ""
    settle: bool = False
    token: str = ""  # the run that planned it: ORIGIN_VERSION of the clients it creates

    def entity(self, name: str) -> EntityPlan | None:
        """The plan of "company", "contact" or "deal"."""
        return {COMPANY: self.company, CONTACT: self.contact, DEAL: self.deal}[name]

    @property
    def known_ids(self) -> dict[str, int]:
        """Ids known before any step runs: the reused entities."""
        return {
            name: plan.id
            for name in ENTITIES
            if (plan := self.entity(name)) is not None and plan.id is not None
        }

    @cached_property
    def steps(self) -> tuple[Step, ...]:
        """The steps in Bitrix24's conversion order; empty for a skipped lead."""
        if self.skip is not None:
            return ()
        steps: list[Step] = []
        created = {
            name for name in ENTITIES if (plan := self.entity(name)) is not None and plan.created
        }
        if COMPANY in created:
            steps.append(Step("co", StepKind.COMPANY))
        if CONTACT in created:
            steps.append(Step("c", StepKind.CONTACT, tuple(s.id for s in steps)))
        if DEAL in created:
            steps.append(Step("d", StepKind.DEAL, tuple(s.id for s in steps)))
        on_deal = ("d",) if DEAL in created else ()
        if self.settles:
            steps.append(Step("s", StepKind.SETTLE, tuple(s.id for s in steps)))
            on_deal = ("s",)
        for activity in self.activities:
            if self.activity_mode is Activities.MOVE:
                steps.append(Step(f"b{activity}", StepKind.BIND, on_deal, activity))
                steps.append(Step(f"u{activity}", StepKind.UNBIND, (f"b{activity}",), activity))
            else:
                steps.append(Step(f"a{activity}", StepKind.COMPLETE, on_deal, activity))
        if self.product_rows:
            steps.append(Step("p", StepKind.PRODUCTS, on_deal))
        steps.append(Step("m", StepKind.COMMENT, on_deal))
        steps.append(Step("f", StepKind.FINISH, tuple(s.id for s in steps)))
        return tuple(steps)

    @property
    def settles(self) -> bool:
        """Whether this lead's deal is read back and settled before anything is bound to it."""
        return (
            self.settle
            and self.deal is not None
            and self.deal.source in (Source.CREATE, Source.JOURNAL)
        )

    def key(self, step: Step, *, verify: bool = False) -> str:
        """The batch key of a step: `L<lead><step>` (e.g. `L123c`, `L123b77`), `+v` to verify."""
        return f"L{self.lead_id}{step.id}{'v' if verify else ''}"

    def command(self, step: Step, ids: Mapping[str, int]) -> Command:
        """The REST call performing `step`, with the entity ids learned so far (literal ids).

        Ids of entities this plan does not include are ignored.
        """
        key = self.key(step)
        ids = {name: i for name, i in ids.items() if name in ENTITIES and self.entity(name)}
        deal_id = ids.get(DEAL)
        if step.creates is not None:
            fields = dict(self._entity(step.creates).fields)
            if step.kind is StepKind.CONTACT and ids.get(COMPANY):
                fields["COMPANY_ID"] = ids[COMPANY]
            if self.token and step.kind in (StepKind.CONTACT, StepKind.COMPANY):
                fields["ORIGIN_VERSION"] = self.token
            if step.kind is StepKind.DEAL:
                fields |= mapping.deal_clients(
                    contact_id=ids.get(CONTACT), company_id=ids.get(COMPANY)
                )
            return Command(key, _ADD[step.creates], {"fields": fields})
        if step.kind is StepKind.BIND:
            return Command(
                key,
                "crm.activity.binding.add",
                {
                    "activityId": step.activity_id,
                    "entityTypeId": mapping.DEAL_TYPE_ID,
                    "entityId": self._need(deal_id),
                },
            )
        if step.kind is StepKind.UNBIND:
            return Command(
                key,
                "crm.activity.binding.delete",
                {
                    "activityId": step.activity_id,
                    "entityTypeId": mapping.LEAD_TYPE_ID,
                    "entityId": self.lead_id,
                },
            )
        if step.kind is StepKind.COMPLETE:
            return Command(
                key, "crm.activity.update", {"id": step.activity_id, "fields": {"COMPLETED": "Y"}}
            )
        if step.kind is StepKind.PRODUCTS:
            rows = [dict(row) for row in self.product_rows]
            return Command(
                key, "crm.deal.productrows.set", {"id": self._need(deal_id), "rows": rows}
            )
        if step.kind is StepKind.DISCARD and step.discard is not None:
            name, entity_id = step.discard
            return Command(key, _DELETE[name], {"id": entity_id})
        if step.kind is StepKind.SETTLE:
            raise PlanError("settle steps are read many leads at a time: see settle_command")
        if step.kind is StepKind.COMMENT:
            return Command(
                key,
                "crm.timeline.comment.add",
                {
                    "fields": {
                        "ENTITY_ID": self._need(deal_id),
                        "ENTITY_TYPE": "deal",
                        "COMMENT": mapping.deal_comment(self.lead_id),
                    }
                },
            )
        fields: dict[str, Any] = {"STATUS_ID": self.success_stage}
        if ids.get(CONTACT):
            fields["CONTACT_ID"] = ids[CONTACT]
        if ids.get(COMPANY):
            fields["COMPANY_ID"] = ids[COMPANY]
        return Command(key, "crm.lead.update", {"id": self.lead_id, "fields": fields})

    def verify_command(self, step: Step, ids: Mapping[str, int]) -> Command:
        """A read telling whether a verifiable step whose answer was lost did happen.

        Created entities are found by `ORIGINATOR_ID`/`ORIGIN_ID` (the idempotency key), the
        comment among the deal's timeline comments.
        """
        key = self.key(step, verify=True)
        if step.creates is not None:
            mine = {}
            if self.token and step.kind in (StepKind.CONTACT, StepKind.COMPANY):
                mine = {"ORIGIN_VERSION": self.token}  # this run's, not a racing run's
            return Command(
                key,
                _LIST[step.creates],
                {
                    "filter": {**mapping.origin_fields(self.lead_id), **mine},
                    "order": {"ID": "ASC"},
                    "select": ["ID", "ORIGINATOR_ID", "ORIGIN_ID"],
                },
            )
        if step.kind is StepKind.FINISH:
            return Command(
                key,
                "crm.lead.list",
                {"filter": {"ID": self.lead_id}, "select": ["ID", "STATUS_ID"]},
            )
        if step.kind is StepKind.COMMENT:
            return Command(
                key,
                "crm.timeline.comment.list",
                {
                    "filter": {"ENTITY_ID": self._need(ids.get(DEAL)), "ENTITY_TYPE": "deal"},
                    "select": ["ID", "COMMENT"],
                },
            )
        raise PlanError(f"step {step.id} is idempotent and is resent, not verified")

    def read_verification(self, step: Step, result: Any) -> int | bool:
        """Interpret a `verify_command` result: the found id (0: not created), the comment found,
        or the lead closed."""
        rows = result if isinstance(result, list) else []
        if step.kind is StepKind.FINISH:
            return any(
                isinstance(r, Mapping) and str(r.get("STATUS_ID", "")) == self.success_stage
                for r in rows
            )
        if step.kind is StepKind.COMMENT:
            text = mapping.deal_comment(self.lead_id)
            return any(
                isinstance(r, Mapping) and str(r.get("COMMENT", "")).strip() == text for r in rows
            )
        origin = mapping.origin_id(self.lead_id)
        found = [
            mapping.link_id(r.get("ID"))
            for r in rows
            if isinstance(r, Mapping)
            and str(r.get("ORIGIN_ID", origin)) == origin
            and str(r.get("ORIGINATOR_ID", mapping.ORIGINATOR_ID)) == mapping.ORIGINATOR_ID
        ]
        return min((i for i in found if i), default=0)

    def _entity(self, name: str) -> EntityPlan:
        plan = self.entity(name)
        if plan is None:
            raise PlanError(f"lead {self.lead_id} plans no {name}")
        return plan

    def _need(self, deal_id: int | None) -> int:
        if not deal_id:
            raise PlanError(f"lead {self.lead_id}: the deal id is not known yet")
        return deal_id

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for the journal); `LeadPlan.from_dict` reads it back."""

        def entity(plan: EntityPlan | None) -> dict[str, Any] | None:
            if plan is None:
                return None
            return {"source": plan.source.value, "id": plan.id, "fields": dict(plan.fields)}

        return {
            "lead_id": self.lead_id,
            "skip": self.skip,
            "company": entity(self.company),
            "contact": entity(self.contact),
            "deal": entity(self.deal),
            "pipeline": self.pipeline,
            "activities": list(self.activities),
            "activity_mode": self.activity_mode.value,
            "product_rows": [dict(r) for r in self.product_rows],
            "success_stage": self.success_stage,
            "settle": self.settle,
            "token": self.token,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LeadPlan:
        """Read back `to_dict()`; PlanError on anything else."""

        def entity(raw: Any) -> EntityPlan | None:
            if raw is None:
                return None
            return EntityPlan(Source(raw["source"]), raw.get("id"), dict(raw.get("fields") or {}))

        try:
            return cls(
                lead_id=int(data["lead_id"]),
                skip=data.get("skip"),
                company=entity(data.get("company")),
                contact=entity(data.get("contact")),
                deal=entity(data.get("deal")),
                pipeline=int(data.get("pipeline", 0)),
                activities=tuple(int(a) for a in data.get("activities", ())),
                activity_mode=Activities(data.get("activity_mode", "complete")),
                product_rows=tuple(dict(r) for r in data.get("product_rows", ())),
                success_stage=str(data.get("success_stage", "")),
                settle=bool(data.get("settle", False)),
                token=str(data.get("token") or ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PlanError(f"not a stored lead plan ({exc.__class__.__name__}: {exc})") from None


def settle_command(group: Sequence[int]) -> Command:
    """The listing that settles these leads (at most SETTLE_GROUP): every deal b24app made from
    them, oldest first, with the clients each one names."""
    key = f"S{group[0]}"
    return Command(
        key,
        _LIST[DEAL],
        {
            "filter": {
                "ORIGINATOR_ID": mapping.ORIGINATOR_ID,
                "@ORIGIN_ID": [mapping.origin_id(i) for i in group],
            },
            "order": {"ID": "ASC"},
            "select": ["ID", "ORIGIN_ID", "CONTACT_ID", "COMPANY_ID"],
        },
    )


@dataclass(frozen=True)
class Found:
    """The deals every b24app run made from one lead, as a settle listing read them, each with
    its (contact, company). The winner is the lowest deal id: ids only grow, so every run that
    reads them agrees. Every other deal is a duplicate."""

    deals: Mapping[int, tuple[int | None, int | None]] = field(default_factory=dict)

    @property
    def winner(self) -> dict[str, int | None] | None:
        """{"deal", "contact", "company"} of the winning deal; None when no deal was found."""
        if not self.deals:
            return None
        deal_id = min(self.deals)
        contact_id, company_id = self.deals[deal_id]
        return {DEAL: deal_id, CONTACT: contact_id, COMPANY: company_id}


def settle_findings(result: Any, group: Sequence[int]) -> dict[int, Found] | None:
    """Each lead's `Found` from the answer to `settle_command(group)`; None when there is no
    answer or it may be incomplete (a full page): read it again."""
    if not isinstance(result, list) or len(result) >= 50:
        return None
    found: dict[int, dict[int, tuple[int | None, int | None]]] = {i: {} for i in group}
    for row in result:
        if not isinstance(row, Mapping):
            continue
        lead_id = mapping.lead_id_of(row.get("ORIGIN_ID"))
        deal_id = mapping.link_id(row.get("ID"))
        if lead_id in found and deal_id is not None:
            found[lead_id][deal_id] = (
                mapping.link_id(row.get("CONTACT_ID")),
                mapping.link_id(row.get("COMPANY_ID")),
            )
    return {lead_id: Found(deals) for lead_id, deals in found.items()}


def _client(
    *,
    name: str,
    lead: Mapping[str, Any],
    wanted: bool,
    known: Mapping[str, int],
    matched: int | None,
    fields: Mapping[str, Any],
) -> EntityPlan | None:
    if known.get(name):
        return EntityPlan(Source.JOURNAL, int(known[name]))
    linked = mapping.link_id(lead.get(f"{name.upper()}_ID"))
    if linked:
        return EntityPlan(Source.LEAD, linked)
    if not wanted:
        return None
    if matched:
        return EntityPlan(Source.MATCH, matched)
    return EntityPlan(Source.CREATE, None, fields)


def _open_activities(activities: Iterable[Any]) -> tuple[int, ...]:
    ids: list[int] = []
    for activity in activities:
        if isinstance(activity, Mapping):
            if str(activity.get("COMPLETED", "N")).upper() == "Y":
                continue
            activity = activity.get("ID")
        activity_id = mapping.link_id(activity)
        if activity_id is None:
            raise PlanError(f"activity {activity!r} has no positive ID")
        ids.append(activity_id)
    return tuple(dict.fromkeys(ids))


def plan_lead(
    lead: Mapping[str, Any],
    *,
    policy: Policy,
    facts: PortalFacts,
    activities: Iterable[Any] = (),
    product_rows: Iterable[Mapping[str, Any]] = (),
    match: ClientMatch | None = None,
    known: Mapping[str, int] | None = None,
) -> LeadPlan:
    """Plan the conversion of one lead (as read by `crm.lead.get/list`, multifields included).

    `activities`: its open activities (`crm.activity.list` rows or ids; completed ones ignored);
    `product_rows`: its rows as `crm.item.productrow.list` returns them; `match`: clients found by
    phone/e-mail; `known`: ids an earlier run recorded ({"company"|"contact"|"deal": id}).
    A lead that is not active gets a plan with `skip` set and no steps.
    """
    lead_id = mapping.link_id(lead.get("ID"))
    if lead_id is None:
        raise PlanError("a lead without a positive ID cannot be planned")
    known = known or {}
    match = match or ClientMatch()
    success = facts.success_stage
    if not facts.is_active(lead):
        stage = lead.get("STATUS_ID") or "?"
        reason = msg.SKIP_CONVERTED if stage == success else msg.SKIP_NOT_ACTIVE.format(stage=stage)
        return LeadPlan(lead_id=lead_id, skip=reason, success_stage=success)
    company = _client(
        name=COMPANY,
        lead=lead,
        wanted=policy.client.wants_company,
        known=known,
        matched=match.company_id,
        fields=mapping.company_fields(lead, communications=policy.client is Client.COMPANY),
    )
    contact = _client(
        name=CONTACT,
        lead=lead,
        wanted=policy.client.wants_contact,
        known=known,
        matched=match.contact_id,
        fields=mapping.contact_fields(lead),
    )
    if known.get(DEAL):
        deal = EntityPlan(Source.JOURNAL, int(known[DEAL]))
    else:
        deal = EntityPlan(Source.CREATE, None, mapping.deal_fields(lead, pipeline=policy.pipeline))
    return LeadPlan(
        lead_id=lead_id,
        company=company,
        contact=contact,
        deal=deal,
        pipeline=policy.pipeline,
        activities=_open_activities(activities),
        activity_mode=policy.activities,
        product_rows=tuple(mapping.product_rows(product_rows)),
        success_stage=success,
        settle=True,
    )


def plan_leads(
    leads: Iterable[Mapping[str, Any]],
    *,
    policy: Policy,
    facts: PortalFacts,
    activities: Mapping[int, Sequence[Any]] | None = None,
    product_rows: Mapping[int, Sequence[Mapping[str, Any]]] | None = None,
    matches: Mapping[int, ClientMatch] | None = None,
    known: Mapping[int, Mapping[str, int]] | None = None,
) -> list[LeadPlan]:
    """`plan_lead` for each lead the policy's selection picks (extras keyed by lead id)."""
    plans = []
    for lead in leads:
        if not policy.leads.selects(lead):
            continue
        lead_id = mapping.link_id(lead.get("ID")) or 0
        plans.append(
            plan_lead(
                lead,
                policy=policy,
                facts=facts,
                activities=(activities or {}).get(lead_id, ()),
                product_rows=(product_rows or {}).get(lead_id, ()),
                match=(matches or {}).get(lead_id),
                known=(known or {}).get(lead_id),
            )
        )
    return plans


@dataclass(frozen=True)
class LeadPreview:
    """What converting one lead would do, for `--dry-run` and the app page (no personal data)."""

    lead_id: int
    skip: str | None
    create: tuple[str, ...]
    reuse: Mapping[str, tuple[int, str]]
    pipeline: int
    move: tuple[int, ...]
    complete: tuple[int, ...]
    product_rows: int
    stage: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "lead_id": self.lead_id,
            "skip": self.skip,
            "create": list(self.create),
            "reuse": {k: {"id": i, "source": s} for k, (i, s) in self.reuse.items()},
            "pipeline": self.pipeline,
            "move": list(self.move),
            "complete": list(self.complete),
            "product_rows": self.product_rows,
            "stage": self.stage,
        }

    def text(self) -> str:
        """One line, e.g. `lead 5: create company, contact, deal (pipeline 0); move 2 ...`."""
        if self.skip:
            return f"lead {self.lead_id}: skipped ({self.skip})"
        parts = []
        if self.create:
            parts.append(
                "create "
                + ", ".join(
                    f"{name} (pipeline {self.pipeline})" if name == DEAL else name
                    for name in self.create
                )
            )
        parts.extend(f"reuse {name} #{i} ({source})" for name, (i, source) in self.reuse.items())
        if self.move:
            parts.append(f"move {_activities(len(self.move))} to the deal")
        if self.complete:
            parts.append(f"complete {_activities(len(self.complete))}")
        if self.product_rows:
            parts.append(f"copy {self.product_rows} product row(s)")
        parts.append(f"lead -> {self.stage}")
        return f"lead {self.lead_id}: " + "; ".join(parts)


def _activities(count: int) -> str:
    return f"{count} open activit{'y' if count == 1 else 'ies'}"


def preview(plan: LeadPlan) -> LeadPreview:
    """Summarise a plan: what would be created, reused, moved, completed."""
    move = plan.activities if plan.activity_mode is Activities.MOVE else ()
    complete = plan.activities if plan.activity_mode is Activities.COMPLETE else ()
    entities = {name: p for name in ENTITIES if (p := plan.entity(name)) is not None}
    return LeadPreview(
        lead_id=plan.lead_id,
        skip=plan.skip,
        create=tuple(name for name, p in entities.items() if p.created),
        reuse={
            name: (p.id, p.source.value)
            for name, p in entities.items()
            if not p.created and p.id is not None
        },
        pipeline=plan.pipeline,
        move=move if not plan.skip else (),
        complete=complete if not plan.skip else (),
        product_rows=len(plan.product_rows),
        stage=plan.success_stage,
    )
