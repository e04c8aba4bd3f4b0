"""Planning one lead's conversion: which entities to create or reuse, and the steps, in order.

Pure: values in, values out. `plan_lead` turns a lead as read (plus its activities, timeline
comments, product rows, client matches, requisites and the ids an earlier run recorded) into a
`LeadPlan`: a list of `Step`s in Bitrix24's own conversion order (LeadConverter: COMPANY ->
CONTACT -> DEAL -> FINALIZATION, `crm/lib/conversion/leadconverter.php:234-262`), each naming the
steps it must wait for. Steps refer to entities symbolically ("the company", "the deal");
`LeadPlan.command(step, ids)` makes the REST call once the ids it needs are known.
`b24app.crm.scheduler` decides when each step runs. docs/parity.md lists every native rule and
what b24app does for it.

Why these steps, in this order:

* The company comes first so the contact can carry its `COMPANY_ID`; the deal waits for both and
  gets `CATEGORY_ID`, `CONTACT_IDS`, `COMPANY_ID`. All three are made with `crm.item.add`, which
  writes `leadId` (see `b24app.crm.mapping`), so each carries `LEAD_ID` as natively.
* A repeat lead (it has `CONTACT_ID`/`COMPANY_ID`) gets a deal only, with every contact of the
  lead and its company (`leadconversionscheme.php:63-66`, `leadconverter.php:695-709`).
* Activities: every activity of the lead, open and closed, is bound to the deal and to each
  client the conversion created (`entityconverter.php:1131-1284`) with
  `crm.activity.binding.add`. `complete`: the open ones get `crm.activity.update COMPLETED=Y`.
  `move` (Bitrix24's "do not close activities after conversion"): the open ones are unbound from
  the lead once bound elsewhere, because a REST `crm.lead.update` to the success stage completes
  every open activity still bound to the lead (`crm_lead.php:2746-2781`) and REST cannot switch
  that off. Both before the lead closes.
* The lead's timeline comments are bound to the deal and the created clients
  (`crm.timeline.bindings.bind`, as `timeline/entitycontroller.php:78-125` attaches them).
* Product rows (`crm.deal.productrows.set`): the deal's OPPORTUNITY and TAX_VALUE follow them.
* Addresses: the universal API has no ADDRESS fields, so a created client gets the lead's address
  with one legacy update.
* Requisites: the deal is linked to a reused client's default requisite when there is one
  (`leadconverter.php:754-797`); a created client, or a linked company, without one gets one from
  its address, default preset (`:862-965`).
* Finally `crm.lead.update`: `STATUS_ID` = the portal's success stage (read from the facts), and
  the lead's `CONTACT_ID`/`COMPANY_ID` = its clients, as Bitrix24's finalization does. It waits
  for every other step, so a lead never closes unless everything else is done.
* Settling (`LeadPlan.settle`): the portal lock (`b24app.locks`) keeps other b24app runs away
  only as far as the processes share it - two machines with their own journals and no Redis
  share nothing. So right after the deal exists, and before anything is bound to it, the deals
  b24app made from the lead are read back (by `ORIGIN_ID`: one listing for SETTLE_GROUP leads,
  about 2% more commands). Deal ids only grow, so every run that reads them agrees on the winner:
  the lowest deal id, and the clients it names. Every other deal is deleted (a later run's or a
  dead run's; nothing is ever bound to a deal before its run settles, so that loses nothing), and
  so are this run's own contact and company when the winner's differ (`discard` steps; one that
  another lead of this run uses is kept). A loser finishes the lead on the winner's deal and
  clients: every step after settling writes to the entities the settling named and is
  idempotent, so two runs doing them end in the same place, and a winner that died midway is
  finished by the loser.

Plans stored by an earlier release (no `native` flag) keep their steps, so a resumed job creates
nothing twice; entities they made (or that a lookup found by ORIGIN_ID) get `LEAD_ID` through a
`crm.item.update` (`link` steps). The earlier release's timeline comment on the deal is no longer
added: the deal's LEAD_ID link shows the lead on the deal card, which is all the comment said.

Reuse, never re-create: a client the journal recorded, a repeat lead's own `CONTACT_ID` /
`COMPANY_ID`, or a matched client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

import orjson

from b24app import messages as msg
from b24app.crm import customfields, mapping
from b24app.crm.facts import PortalFacts
from b24app.crm.matching import ClientMatch
from b24app.crm.policy import Activities, Policy
from b24app.errors import B24AppError
from b24app.rest.command import Command
from b24app.vocabulary import ADD_METHOD as _ADD
from b24app.vocabulary import (
    CLIENTS,
    COMPANY,
    CONTACT,
    DEAL,
    ENTITIES,
    PAGE_SIZE,
    PRIMARY_ADDRESS,
    REQUISITE_TYPE_ID,
)
from b24app.vocabulary import DELETE_METHOD as _DELETE
from b24app.vocabulary import LIST_METHOD as _LIST
from b24app.vocabulary import TYPE_ID as _TYPE_ID
from b24app.vocabulary import UPDATE_METHOD as _UPDATE

# Leads one settle listing reads: a page holds 50 rows, so even five runs racing on every lead of
# the group fit in it (a full page is read again, never trusted).
SETTLE_GROUP = 10
# Requisites (crm/lib/requisite/addressrequisiteconverter.php:42-135, as the sandbox models it):
# how the converter fills a requisite's primary address (type ids in b24app.vocabulary).
REQUISITE_ADDRESS = {  # client ADDRESS* -> requisite address fields (crm.address.fields)
    "ADDRESS": "ADDRESS_1",
    "ADDRESS_2": "ADDRESS_2",
    "ADDRESS_CITY": "CITY",
    "ADDRESS_POSTAL_CODE": "POSTAL_CODE",
    "ADDRESS_REGION": "REGION",
    "ADDRESS_PROVINCE": "PROVINCE",
    "ADDRESS_COUNTRY": "COUNTRY",
    "ADDRESS_COUNTRY_CODE": "COUNTRY_CODE",
}


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

    @property
    def own(self) -> bool:
        """Whether the entity is this conversion's (created now or by an earlier run of it)."""
        return self.source in (Source.CREATE, Source.JOURNAL)


@dataclass(frozen=True)
class RequisitePlan:
    """A requisite to give a client that has none: default preset, made from its address."""

    preset: int
    name: str
    address: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"preset": self.preset, "name": self.name, "address": dict(self.address)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequisitePlan:
        """Read back `to_dict()`."""
        return cls(int(data["preset"]), str(data.get("name") or ""), dict(data["address"]))


class StepKind(StrEnum):
    """The kinds of step; the values start the step ids and so the batch keys."""

    COMPANY = "co"
    CONTACT = "c"
    DEAL = "d"
    LINK = "l"  # crm.item.update leadId: an entity made without LEAD_ID
    ADDRESS = "w"  # crm.contact|company.update ADDRESS*: a created client's address
    BIND = "b"
    UNBIND = "u"
    COMPLETE = "a"
    TIMELINE = "t"
    PRODUCTS = "p"
    REQUISITE = "r"
    REQUISITE_ADDRESS = "ra"
    REQUISITE_LINK = "rl"
    SETTLE = "s"
    DISCARD = "x"
    FINISH = "f"


_CREATES = {StepKind.COMPANY: COMPANY, StepKind.CONTACT: CONTACT, StepKind.DEAL: DEAL}
STEP_OF = {entity: kind.value for kind, entity in _CREATES.items()}  # "deal" -> "d"
# Step ids name their target: "b77" binds activity 77 to the deal, "bc77" to the contact.
_SUFFIX = {DEAL: "", CONTACT: "c", COMPANY: "co"}


def requisite_key(client: str) -> str:
    """The `ids` key of the requisite a plan made for "contact" or "company"."""
    return f"requisite_{client}"


@dataclass(frozen=True)
class Step:
    """One REST call of a conversion; runs once every step in `after` is done."""

    id: str
    kind: StepKind
    after: tuple[str, ...] = ()
    activity_id: int | None = None
    discard: tuple[str, int] | None = None  # DISCARD: ("deal" | "contact" | "company", id)
    target: str | None = None  # the entity a bind, link, address or requisite step writes to
    entry_id: int | None = None  # TIMELINE: the timeline comment bound

    @property
    def creates(self) -> str | None:
        """The entity this step creates ("company", "contact", "deal"), or None."""
        return _CREATES.get(self.kind)

    @property
    def verifiable(self) -> bool:
        """Whether a lost answer must be checked before resending (the call is not idempotent).

        Creations (entities, requisites): resending would make a second one. The lead's closing
        call: resent after it took effect, a refusal (e.g. the lead's rights changed once it
        closed) would fail a lead that is converted. Every other step is idempotent and sent
        again.
        """
        return self.creates is not None or self.kind in (StepKind.REQUISITE, StepKind.FINISH)


StepShape = tuple[str, tuple[str, ...], bool]


def step_shapes(steps: Iterable[Step]) -> tuple[StepShape, ...]:
    """Each step's (id, after, is it a settling read)."""
    return tuple((s.id, s.after, s.kind is StepKind.SETTLE) for s in steps)


@dataclass(frozen=True)
class LeadPlan:
    """Everything needed to convert one lead; `steps` derives the calls. JSON via to_dict.

    `activities`: the open activities (completed, or unbound from the lead under `move`);
    `closed`: the completed ones (bound only); `comments`: the lead's timeline comments;
    `contacts`: every contact the deal gets (a repeat lead's; else the contact's id is learned);
    `address`: the lead's ADDRESS*, written onto each created client; `requisites`: per client,
    a requisite to make; `deal_requisite`: a reused client's requisite the deal is linked to.
    `native` is False for plans an earlier release stored (see the module doc).
    """

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
    native: bool = False
    closed: tuple[int, ...] = ()
    comments: tuple[int, ...] = ()
    contacts: tuple[int, ...] = ()
    address: Mapping[str, Any] = field(default_factory=dict, repr=False)
    requisites: Mapping[str, RequisitePlan] = field(default_factory=dict, repr=False)
    deal_requisite: int | None = None
    # What the lead was when planned (STATUS_ID, CONTACT_ID, COMPANY_ID): what an undo restores.
    before: Mapping[str, Any] = field(default_factory=dict, repr=False)
    warnings: tuple[str, ...] = ()  # custom-field values left out (b24app.crm.customfields)

    def entity(self, name: str) -> EntityPlan | None:
        """The plan of "company", "contact" or "deal" (None for any other name)."""
        return {COMPANY: self.company, CONTACT: self.contact, DEAL: self.deal}.get(name)

    @property
    def known_ids(self) -> dict[str, int]:
        """Ids known before any step runs: the reused entities."""
        return dict(self._known_ids)

    @cached_property
    def _known_ids(self) -> dict[str, int]:
        # Asked for every lead of every batch (`LeadState.ids`): worked out once per plan.
        return {
            name: plan.id
            for name in ENTITIES
            if (plan := self.entity(name)) is not None and plan.id is not None
        }

    @property
    def repeat(self) -> bool:
        """Whether this is a repeat lead (its clients exist: a deal only is made)."""
        return any(
            (plan := self.entity(name)) is not None and plan.source is Source.LEAD
            for name in CLIENTS
        )

    @property
    def targets(self) -> tuple[str, ...]:
        """The entities activities and comments are bound to: the deal and this conversion's
        own clients (entityconverter.php binds to the entities the conversion created)."""
        if not self.native:
            return (DEAL,)
        own = [n for n in (CONTACT, COMPANY) if (p := self.entity(n)) is not None and p.own]
        return (DEAL, *own)

    @cached_property
    def step_shapes(self) -> tuple[StepShape, ...]:
        """Each step's (id, after, is it a settling read): what the scheduler plays ahead
        with (`scheduler.best_starts`), built once per plan."""
        return step_shapes(self.steps)

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
        for name in ENTITIES:
            plan = self.entity(name)
            if plan is None:
                continue
            if plan.source is Source.JOURNAL or (plan.created and not self.native):
                link = "l" + STEP_OF[name]
                steps.append(Step(link, StepKind.LINK, on_deal, target=name))
            if self.native and plan.created and name in CLIENTS and self.address:
                steps.append(Step("w" + STEP_OF[name], StepKind.ADDRESS, on_deal, target=name))
        targets = self.targets
        for activity in (*self.activities, *self.closed):
            binds = [f"b{_SUFFIX[t]}{activity}" for t in targets]
            for target, bind in zip(targets, binds, strict=True):
                steps.append(Step(bind, StepKind.BIND, on_deal, activity, target=target))
            if activity not in self.activities:
                continue
            if self.activity_mode is Activities.MOVE:
                steps.append(Step(f"u{activity}", StepKind.UNBIND, tuple(binds), activity))
            else:
                steps.append(Step(f"a{activity}", StepKind.COMPLETE, on_deal, activity))
        for entry in self.comments:
            for target in targets:
                steps.append(
                    Step(
                        f"t{_SUFFIX[target]}{entry}",
                        StepKind.TIMELINE,
                        on_deal,
                        target=target,
                        entry_id=entry,
                    )
                )
        if self.product_rows:
            steps.append(Step("p", StepKind.PRODUCTS, on_deal))
        if self.deal_requisite:
            steps.append(Step("rl", StepKind.REQUISITE_LINK, on_deal))
        for name in CLIENTS:
            if name in self.requisites and self.entity(name) is not None:
                made = "r" + STEP_OF[name]
                steps.append(Step(made, StepKind.REQUISITE, on_deal, target=name))
                steps.append(
                    Step("ra" + STEP_OF[name], StepKind.REQUISITE_ADDRESS, (made,), target=name)
                )
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
        requisite_ids = {
            name: ids[requisite_key(name)] for name in CLIENTS if ids.get(requisite_key(name))
        }
        ids = {name: i for name, i in ids.items() if name in ENTITIES and self.entity(name)}
        deal_id = ids.get(DEAL)
        if step.creates is not None:
            return self._create(key, step, ids)
        if step.kind is StepKind.LINK:
            return Command(
                key,
                "crm.item.update",
                {
                    "entityTypeId": _TYPE_ID[step.target or DEAL],
                    "id": self._need(ids.get(step.target or DEAL), step.target),
                    "fields": {"leadId": self.lead_id},
                },
            )
        if step.kind is StepKind.ADDRESS:
            name = step.target or CONTACT
            return Command(
                key,
                _UPDATE[name],
                {"id": self._need(ids.get(name), name), "fields": dict(self.address)},
            )
        if step.kind is StepKind.BIND:
            target = step.target or DEAL
            return Command(
                key,
                "crm.activity.binding.add",
                {
                    "activityId": step.activity_id,
                    "entityTypeId": _TYPE_ID[target],
                    "entityId": self._need(ids.get(target), target),
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
        if step.kind is StepKind.TIMELINE:
            target = step.target or DEAL
            # https://apidocs.bitrix24.com/api-reference/crm/timeline/comments/index.html
            return Command(
                key,
                "crm.timeline.bindings.bind",
                {
                    "fields": {
                        "OWNER_ID": step.entry_id,
                        "ENTITY_ID": self._need(ids.get(target), target),
                        "ENTITY_TYPE": target,
                    }
                },
            )
        if step.kind is StepKind.PRODUCTS:
            rows = [dict(row) for row in self.product_rows]
            return Command(
                key, "crm.deal.productrows.set", {"id": self._need(deal_id), "rows": rows}
            )
        if step.kind is StepKind.REQUISITE_LINK:
            # https://apidocs.bitrix24.com/api-reference/crm/requisites/links/crm-requisite-link-register.html
            return Command(
                key,
                "crm.requisite.link.register",
                {
                    "fields": {
                        "ENTITY_TYPE_ID": mapping.DEAL_TYPE_ID,
                        "ENTITY_ID": self._need(deal_id),
                        "REQUISITE_ID": self.deal_requisite,
                        "BANK_DETAIL_ID": 0,
                        "MC_REQUISITE_ID": 0,
                        "MC_BANK_DETAIL_ID": 0,
                    }
                },
            )
        if step.kind is StepKind.REQUISITE:
            name = step.target or CONTACT
            plan = self.requisites[name]
            return Command(
                key,
                "crm.requisite.add",
                {
                    "fields": {
                        "ENTITY_TYPE_ID": _TYPE_ID[name],
                        "ENTITY_ID": self._need(ids.get(name), name),
                        "PRESET_ID": plan.preset,
                        "NAME": plan.name,
                        "ACTIVE": "Y",
                        "ADDRESS_ONLY": "Y",
                        "SORT": 500,
                    }
                },
            )
        if step.kind is StepKind.REQUISITE_ADDRESS:
            name = step.target or CONTACT
            requisite_id = requisite_ids.get(name)
            if not requisite_id:
                raise PlanError(f"lead {self.lead_id}: the {name}'s requisite id is not known yet")
            return Command(
                key,
                "crm.address.add",
                {
                    "fields": {
                        "TYPE_ID": PRIMARY_ADDRESS,
                        "ENTITY_TYPE_ID": REQUISITE_TYPE_ID,
                        "ENTITY_ID": requisite_id,
                        "ANCHOR_TYPE_ID": _TYPE_ID[name],
                        "ANCHOR_ID": self._need(ids.get(name), name),
                        **self.requisites[name].address,
                    }
                },
            )
        if step.kind is StepKind.DISCARD and step.discard is not None:
            name, entity_id = step.discard
            return Command(key, _DELETE[name], {"id": entity_id})
        if step.kind is StepKind.SETTLE:
            raise PlanError("settle steps are read many leads at a time: see settle_command")
        fields: dict[str, Any] = {"STATUS_ID": self.success_stage}
        if ids.get(CONTACT):
            fields["CONTACT_ID"] = ids[CONTACT]
        if ids.get(COMPANY):
            fields["COMPANY_ID"] = ids[COMPANY]
        return Command(key, "crm.lead.update", {"id": self.lead_id, "fields": fields})

    def _create(self, key: str, step: Step, ids: Mapping[str, int]) -> Command:
        name = step.creates or DEAL
        fields = dict(self._entity(name).fields)
        if step.kind is StepKind.CONTACT and ids.get(COMPANY):
            fields["COMPANY_ID"] = ids[COMPANY]
        if self.token and step.kind in (StepKind.CONTACT, StepKind.COMPANY):
            fields["ORIGIN_VERSION"] = self.token
        if step.kind is StepKind.DEAL:
            contacts = self.contacts or ((ids[CONTACT],) if ids.get(CONTACT) else ())
            fields |= mapping.deal_clients(contact_ids=contacts, company_id=ids.get(COMPANY))
            if not self.native and contacts:
                fields["CONTACT_ID"] = contacts[0]  # as the earlier release sent it
        if not self.native:
            return Command(key, _ADD[name], {"fields": fields})
        return Command(
            key,
            "crm.item.add",
            {
                "entityTypeId": _TYPE_ID[name],
                "fields": mapping.item_fields(fields, lead_id=self.lead_id),
            },
        )

    def verify_command(self, step: Step, ids: Mapping[str, int]) -> Command:
        """A read telling whether a verifiable step whose answer was lost did happen.

        Created entities are found by `ORIGINATOR_ID`/`ORIGIN_ID` (the idempotency key), a
        requisite among its client's requisites, the lead's closing by its stage.
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
        if step.kind is StepKind.REQUISITE:
            name = step.target or CONTACT
            return Command(
                key,
                "crm.requisite.list",
                {
                    "filter": {
                        "ENTITY_TYPE_ID": _TYPE_ID[name],
                        "ENTITY_ID": self._need(ids.get(name), name),
                    },
                    "order": {"ID": "ASC"},
                    "select": ["ID"],
                },
            )
        raise PlanError(f"step {step.id} is idempotent and is resent, not verified")

    def read_verification(self, step: Step, result: Any) -> int | bool:
        """Interpret a `verify_command` result: the found id (0: not created), or the lead
        closed."""
        rows = result if isinstance(result, list) else []
        if step.kind is StepKind.FINISH:
            return any(
                isinstance(r, Mapping) and str(r.get("STATUS_ID", "")) == self.success_stage
                for r in rows
            )
        if step.kind is StepKind.REQUISITE:
            found = [mapping.link_id(r.get("ID")) for r in rows if isinstance(r, Mapping)]
            return min((i for i in found if i), default=0)
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

    def _need(self, entity_id: int | None, name: str | None = DEAL) -> int:
        if not entity_id:
            raise PlanError(f"lead {self.lead_id}: the {name} id is not known yet")
        return entity_id

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for the journal); `LeadPlan.from_dict` reads it back."""

        def entity(plan: EntityPlan | None) -> dict[str, Any] | None:
            if plan is None:
                return None
            return {"source": plan.source.value, "id": plan.id, "fields": dict(plan.fields)}

        data: dict[str, Any] = {
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
        if self.native:
            data |= {
                "native": True,
                "closed": list(self.closed),
                "comments": list(self.comments),
                "contacts": list(self.contacts),
                "address": dict(self.address),
                "requisites": {k: r.to_dict() for k, r in self.requisites.items()},
                "deal_requisite": self.deal_requisite,
                **({"before": dict(self.before)} if self.before else {}),
            }
        if self.warnings:
            data["warnings"] = list(self.warnings)
        return data

    @cached_property
    def json_text(self) -> str:
        """`to_dict()` as JSON text (sorted keys), encoded once per plan.

        A plan does not change while its lead is converted, yet the journal stores it with the
        lead's progress twice per batch the lead is in: encoding it each time was the largest
        part of a worker's CPU per lead (`LeadState.to_json`). orjson: `json` took 2% more.
        """
        options = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS  # int keys as text, like json
        return orjson.dumps(self.to_dict(), option=options).decode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LeadPlan:
        """Read back `to_dict()` (an earlier release's too); PlanError on anything else."""

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
                native=bool(data.get("native", False)),
                closed=tuple(int(a) for a in data.get("closed", ())),
                comments=tuple(int(c) for c in data.get("comments", ())),
                contacts=tuple(int(c) for c in data.get("contacts", ())),
                address=dict(data.get("address") or {}),
                requisites={
                    str(k): RequisitePlan.from_dict(v)
                    for k, v in (data.get("requisites") or {}).items()
                },
                deal_requisite=mapping.link_id(data.get("deal_requisite")),
                before=dict(data.get("before") or {}),
                warnings=tuple(str(w) for w in data.get("warnings", ())),
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
    if not isinstance(result, list) or len(result) >= PAGE_SIZE:
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
    linked = mapping.link_id(lead.get(f"{name.upper()}_ID"))
    if linked:
        return EntityPlan(Source.LEAD, linked)
    if not wanted or is_repeat(lead):
        return None  # a repeat lead gets a deal only (leadconversionscheme.php:63-66)
    if known.get(name):
        return EntityPlan(Source.JOURNAL, int(known[name]))
    if matched:
        return EntityPlan(Source.MATCH, matched)
    return EntityPlan(Source.CREATE, None, fields)


def is_repeat(lead: Mapping[str, Any]) -> bool:
    """Whether a lead (as read) is a repeat lead: it already names a contact or a company."""
    return bool(mapping.link_id(lead.get("CONTACT_ID")) or mapping.link_id(lead.get("COMPANY_ID")))


def split_activities(activities: Iterable[Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(open, closed) activity ids from `crm.activity.list` rows (or plain ids: open)."""
    open_ids: list[int] = []
    closed: list[int] = []
    for activity in activities:
        done = False
        if isinstance(activity, Mapping):
            done = str(activity.get("COMPLETED", "N")).upper() == "Y"
            activity = activity.get("ID")
        activity_id = mapping.link_id(activity)
        if activity_id is None:
            raise PlanError(f"activity {activity!r} has no positive ID")
        (closed if done else open_ids).append(activity_id)
    opened = tuple(dict.fromkeys(open_ids))
    return opened, tuple(i for i in dict.fromkeys(closed) if i not in opened)


def requisite_name(name: str, fields: Mapping[str, Any]) -> str:
    """The name a requisite from an address gets: the company's title, the contact's name."""
    if name == COMPANY:
        return str(fields.get("TITLE") or "")
    return " ".join(str(fields[n]) for n in ("NAME", "LAST_NAME") if fields.get(n))


def requisite_address(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A client's ADDRESS* as requisite address fields (empty when it has none)."""
    return {
        dst: fields[src]
        for src, dst in REQUISITE_ADDRESS.items()
        if not mapping.is_empty(fields.get(src))
    }


@dataclass(frozen=True)
class Surroundings:
    """What planning one lead needs besides the lead itself, as the reader found it.

    `contacts`: a repeat lead's contacts (`crm.lead.contact.items.get`, primary first);
    `requisites`: the default requisite of each reused client ({"company"|"contact": id});
    `clients`: the fields of reused clients (their ADDRESS* and TITLE/NAME), by name.
    """

    activities: Sequence[Any] = ()
    comments: Sequence[int] = ()
    product_rows: Sequence[Mapping[str, Any]] = ()
    match: ClientMatch | None = None
    known: Mapping[str, int] = field(default_factory=dict)
    contacts: Sequence[int] = ()
    requisites: Mapping[str, int] = field(default_factory=dict)
    clients: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    custom: customfields.CustomFields | None = None  # custom-field definitions of the job


def plan_lead(
    lead: Mapping[str, Any],
    *,
    policy: Policy,
    facts: PortalFacts,
    activities: Iterable[Any] = (),
    product_rows: Iterable[Mapping[str, Any]] = (),
    match: ClientMatch | None = None,
    known: Mapping[str, int] | None = None,
    around: Surroundings | None = None,
) -> LeadPlan:
    """Plan the conversion of one lead (as read by `crm.lead.get/list`, multifields included).

    `around` holds what the reader found (activities open and closed, comments, rows, matches,
    ids an earlier run recorded, a repeat lead's contacts, reused clients' requisites); the
    `activities`, `product_rows`, `match`, `known` arguments fill it when it is not given.
    A lead that is not active gets a plan with `skip` set and no steps.
    """
    lead_id = mapping.link_id(lead.get("ID"))
    if lead_id is None:
        raise PlanError("a lead without a positive ID cannot be planned")
    if around is None:
        around = Surroundings(
            activities=tuple(activities),
            product_rows=tuple(product_rows),
            match=match,
            known=known or {},
        )
    known = around.known
    match = around.match or ClientMatch()
    success = facts.success_stage
    if not facts.is_active(lead):
        stage = lead.get("STATUS_ID") or "?"
        reason = msg.SKIP_CONVERTED if stage == success else msg.SKIP_NOT_ACTIVE.format(stage=stage)
        return LeadPlan(lead_id=lead_id, skip=reason, success_stage=success)
    custom = _custom_values(lead, around.custom)
    company = _client(
        name=COMPANY,
        lead=lead,
        wanted=policy.client.wants_company,
        known=known,
        matched=match.company_id,
        fields=mapping.company_fields(lead) | dict(custom[COMPANY].values),
    )
    contact = _client(
        name=CONTACT,
        lead=lead,
        wanted=policy.client.wants_contact,
        known=known,
        matched=match.contact_id,
        fields=mapping.contact_fields(lead) | dict(custom[CONTACT].values),
    )
    if known.get(DEAL):
        deal = EntityPlan(Source.JOURNAL, int(known[DEAL]))
    else:
        fields = mapping.deal_fields(lead, pipeline=policy.pipeline, deal_type=facts.deal_type)
        deal = EntityPlan(Source.CREATE, None, fields | dict(custom[DEAL].values))
    warnings = tuple(
        dict.fromkeys(
            w
            for name, plan in ((COMPANY, company), (CONTACT, contact), (DEAL, deal))
            if plan is not None and plan.created
            for w in custom[name].warnings
        )
    )
    contacts: tuple[int, ...] = ()
    if contact is not None and contact.source is Source.LEAD:
        # every contact of the repeat lead, its primary CONTACT_ID first
        contacts = tuple(dict.fromkeys([contact.id or 0, *around.contacts]))
    address = mapping.address_fields(lead)
    requisites: dict[str, RequisitePlan] = {}
    deal_requisite = None
    for name, plan in ((COMPANY, company), (CONTACT, contact)):
        if plan is None:
            continue
        if deal_requisite is None and around.requisites.get(name):
            deal_requisite = around.requisites[name]  # company first (leadconverter:754-797)
        preset = facts.presets.get(name)
        if not preset or around.requisites.get(name):
            continue
        if plan.own:  # made from the lead: its fields and the lead's address
            own = {**plan.fields, **address}
        elif name == COMPANY and plan.source is Source.LEAD:
            own = dict(around.clients.get(name) or {})  # a linked company: its own address
        else:
            continue
        where = requisite_address(own)
        if where:
            requisites[name] = RequisitePlan(preset, requisite_name(name, own), where)
    opened, closed = split_activities(around.activities)
    return LeadPlan(
        lead_id=lead_id,
        company=company,
        contact=contact,
        deal=deal,
        pipeline=policy.pipeline,
        activities=opened,
        activity_mode=policy.activities,
        product_rows=tuple(mapping.product_rows(around.product_rows)),
        success_stage=success,
        settle=True,
        native=True,
        closed=closed,
        comments=tuple(dict.fromkeys(i for i in map(mapping.link_id, around.comments) if i)),
        contacts=contacts,
        address=address,
        requisites=requisites,
        deal_requisite=deal_requisite,
        before=lead_before(lead),
        warnings=warnings,
    )


def lead_before(lead: Mapping[str, Any]) -> dict[str, Any]:
    """What a conversion changes on the lead, as it was: its stage and client links."""
    return {
        "STATUS_ID": str(lead.get("STATUS_ID") or ""),
        "CONTACT_ID": mapping.link_id(lead.get("CONTACT_ID")),
        "COMPANY_ID": mapping.link_id(lead.get("COMPANY_ID")),
    }


def _custom_values(
    lead: Mapping[str, Any], found: customfields.CustomFields | None
) -> dict[str, customfields.Mapped]:
    """The lead's custom-field values per target; file values as markers the shell fills in
    (`customfields.fill_files`) before the entity is created."""
    out = {}
    for target in ENTITIES:
        if found is None or found.error or not found.any:
            out[target] = customfields.Mapped()
            continue
        mapped = found.map_lead(lead, target)
        values = dict(mapped.values) | {
            name: customfields.file_marker(urls, multiple)
            for name, (urls, multiple) in mapped.files.items()
        }
        out[target] = customfields.Mapped(values, mapped.files, mapped.warnings)
    return out


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
    """What converting one lead would do, for `--dry-run` and the app page (no personal data).

    `move`/`complete`: its open activities; `closed`: completed ones bound to the new entities;
    `comments`: timeline comments bound to them; `contacts`: the contacts the deal gets (a
    repeat lead's); `requisites`: clients that get a requisite from the address;
    `deal_requisite`: a reused client's requisite the deal is linked to.
    """

    lead_id: int
    skip: str | None
    create: tuple[str, ...]
    reuse: Mapping[str, tuple[int, str]]
    pipeline: int
    move: tuple[int, ...]
    complete: tuple[int, ...]
    product_rows: int
    stage: str
    repeat: bool = False
    contacts: tuple[int, ...] = ()
    closed: int = 0
    comments: int = 0
    bound_to: tuple[str, ...] = ()
    requisites: tuple[str, ...] = ()
    deal_requisite: int | None = None
    warnings: tuple[str, ...] = ()  # custom-field values that will be left out

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
            "repeat": self.repeat,
            "contacts": list(self.contacts),
            "closed_activities": self.closed,
            "comments": self.comments,
            "bound_to": list(self.bound_to),
            "requisites": list(self.requisites),
            "deal_requisite": self.deal_requisite,
        } | ({"warnings": list(self.warnings)} if self.warnings else {})

    def text(self) -> str:
        """One line, e.g. `lead 5: create company, contact, deal (pipeline 0); move 2 ...`."""
        if self.skip:
            return f"lead {self.lead_id}: skipped ({self.skip})"
        parts = []
        if self.repeat:
            parts.append("repeat lead: a deal only")
        if self.create:
            parts.append(
                "create "
                + ", ".join(
                    f"{name} (pipeline {self.pipeline})" if name == DEAL else name
                    for name in self.create
                )
            )
        parts.extend(f"reuse {name} #{i} ({source})" for name, (i, source) in self.reuse.items())
        if len(self.contacts) > 1:
            parts.append(f"deal gets {len(self.contacts)} contacts")
        where = ", ".join(self.bound_to)
        if self.move:
            parts.append(f"move {_activities(len(self.move), 'open')} to the {where}")
        if self.complete:
            parts.append(f"complete {_activities(len(self.complete), 'open')}")
        if self.closed:
            parts.append(f"bind {_activities(self.closed, 'closed')} to the {where}")
        if self.complete and not self.closed:
            parts[-1] += f" (bound to the {where})"
        if self.comments:
            parts.append(f"bind {self.comments} comment(s) to the {where}")
        if self.product_rows:
            parts.append(f"copy {self.product_rows} product row(s)")
        if self.requisites:
            parts.append("requisite from the address for the " + " and ".join(self.requisites))
        if self.deal_requisite:
            parts.append(f"deal linked to requisite #{self.deal_requisite}")
        parts.append(f"lead -> {self.stage}")
        parts.extend(f"warning: {w}" for w in self.warnings)
        return f"lead {self.lead_id}: " + "; ".join(parts)


def _activities(count: int, state: str) -> str:
    return f"{count} {state} activit{'y' if count == 1 else 'ies'}"


def preview(plan: LeadPlan) -> LeadPreview:
    """Summarise a plan: what would be created, reused, bound, moved, completed."""
    move = plan.activities if plan.activity_mode is Activities.MOVE else ()
    complete = plan.activities if plan.activity_mode is Activities.COMPLETE else ()
    entities = {name: p for name in ENTITIES if (p := plan.entity(name)) is not None}
    live = not plan.skip
    contacts = plan.contacts
    if not contacts and (c := plan.entity(CONTACT)) is not None and c.id:
        contacts = (c.id,)
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
        move=move if live else (),
        complete=complete if live else (),
        product_rows=len(plan.product_rows),
        stage=plan.success_stage,
        repeat=plan.repeat,
        contacts=contacts,
        closed=len(plan.closed) if live else 0,
        comments=len(plan.comments) if live else 0,
        bound_to=plan.targets if live else (),
        requisites=tuple(name for name in CLIENTS if name in plan.requisites),
        deal_requisite=plan.deal_requisite,
        warnings=plan.warnings if live else (),
    )
