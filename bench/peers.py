"""How people convert leads without b24app: the yardsticks `bench/convert.py` measures against.

Both peers perform exactly the operations b24app performs - the plans come from b24app's pure
planner (`plan_lead`), so the fields, steps and order are the same - and differ only in how they
read and send them:

* `naive`: plain `requests`, one HTTP call per REST call, sleeping 1/rate between calls like a
  careful user who read about the 2 requests/s limit; leads read by offset pages.
* `fast_bitrix24_convert`: fast-bitrix24's `get_all` for the lists and `call()` for the rest,
  pass by pass (all companies, then contacts, deals, activity binds and unbinds, product rows,
  comments, lead updates). Either a whole pass per `call()` - parallel batches, whose results
  come back in the order the batches finished, so created ids are mapped back by ORIGIN_ID
  after each pass - or `chunked`, 50 items per `call()` (one batch, answers in order).

A failed call makes the lead (naive) or the whole pass (fast-bitrix24) fail; the bench then
marks the row as broken.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import requests

from b24app.crm.facts import DEAL_ENTITY_TYPE_ID, PortalFacts, deal_stage_entity
from b24app.crm.mapping import LEAD_SELECT, LEAD_TYPE_ID, ORIGINATOR_ID, item_id, lead_id_of
from b24app.crm.planner import LeadPlan, StepKind, plan_lead
from b24app.crm.policy import Policy

PAGE = 50
ProductRows = Mapping[int, Sequence[Mapping[str, Any]]]


@dataclass
class PeerResult:
    """What a peer did: leads it finished and the errors it met (by lead, or by pass)."""

    converted: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def facts_from(call: Callable[[str, dict[str, Any]], Any], pipeline: int = 0) -> PortalFacts:
    """Read the portal facts (lead stages, pipelines, deal stages) with three plain calls."""
    statuses = call("crm.status.list", {"filter": {"ENTITY_ID": "STATUS"}})
    categories = call("crm.category.list", {"entityTypeId": DEAL_ENTITY_TYPE_ID})
    deal = call("crm.status.list", {"filter": {"ENTITY_ID": deal_stage_entity(pipeline)}})
    return PortalFacts.from_results(statuses=statuses, categories=categories, deal_stages=[deal])


def plans_for(
    leads: Iterable[Mapping[str, Any]],
    *,
    policy: Policy,
    facts: PortalFacts,
    activities: Mapping[int, Sequence[int]],
    product_rows: ProductRows,
) -> list[LeadPlan]:
    """b24app's own plans for the leads, so every peer does the same operations (a peer runs
    alone and does not settle with other runs: b24app's settle listings are its own extra)."""
    plans = []
    for lead in leads:
        lead_id = int(lead["ID"])
        plan = plan_lead(
            lead,
            policy=policy,
            facts=facts,
            activities=activities.get(lead_id, ()),
            product_rows=product_rows.get(lead_id, ()),
        )
        plans.append(replace(plan, settle=False))
    return [plan for plan in plans if plan.skip is None]


# -- naive --------------------------------------------------------------------------------


class NaiveClient:
    """One HTTP request per REST call, `1/rate` seconds apart; counts what it sends."""

    def __init__(self, webhook_url: str, *, rate: float) -> None:
        self.url = webhook_url if webhook_url.endswith("/") else webhook_url + "/"
        self.interval = 1.0 / rate
        self.session = requests.Session()
        self.sent = 0
        self._last = 0.0

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """The `result` of one call; RuntimeError carrying Bitrix24's error otherwise."""
        return self.call_page(method, params)[0]

    def call_page(self, method: str, params: dict[str, Any]) -> tuple[Any, int | None]:
        """(`result`, `next`) of one call; a 503 is waited out like a careful user would."""
        while True:
            pause = self._last + self.interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            self._last = time.monotonic()
            self.sent += 1
            response = self.session.post(self.url + method, json=params, timeout=60)
            body = response.json()
            if response.status_code == 503:
                time.sleep(1.0)
                continue
            if "error" in body and "result" not in body:
                raise RuntimeError(
                    f"{method}: {body.get('error')}: {body.get('error_description')}"
                )
            return body["result"], body.get("next")


def naive_convert(
    webhook_url: str,
    *,
    rate: float,
    policy: Policy,
    limit: int | None = None,
) -> PeerResult:
    """Convert the active leads (the first `limit` by ID, when given) one call at a time."""
    client = NaiveClient(webhook_url, rate=rate)
    facts = facts_from(client.call, policy.pipeline)
    leads: list[dict[str, Any]] = []
    start: int | None = 0
    while start is not None and (limit is None or len(leads) < limit):
        page, start = client.call_page(
            "crm.lead.list",
            {
                "filter": {"@STATUS_ID": list(facts.active_lead_stages)},
                "select": list(LEAD_SELECT),
                "order": {"ID": "ASC"},
                "start": start,
            },
        )
        leads.extend(page)
    leads = leads[:limit] if limit is not None else leads
    result = PeerResult()
    for lead in leads:
        lead_id = int(lead["ID"])
        try:
            activities = client.call(
                "crm.activity.list",
                {
                    "filter": {
                        "OWNER_TYPE_ID": LEAD_TYPE_ID,
                        "OWNER_ID": lead_id,
                        "COMPLETED": "N",
                    },
                    "select": ["ID", "COMPLETED"],
                },
            )
            rows = client.call(
                "crm.item.productrow.list", {"filter": {"=ownerType": "L", "=ownerId": lead_id}}
            )["productRows"]
            plan = plan_lead(
                lead, policy=policy, facts=facts, activities=activities, product_rows=rows
            )
            plan = replace(plan, settle=False)  # a script run alone: nothing to settle with
            if plan.skip is None:
                _run_plan_naively(client, plan)
                result.converted += 1
        except (RuntimeError, requests.RequestException, ValueError, KeyError) as exc:
            result.failed += 1
            result.errors.append(f"lead {lead_id}: {exc}")
    return result


def _run_plan_naively(client: NaiveClient, plan: LeadPlan) -> None:
    ids = dict(plan.known_ids)
    for step in plan.steps:
        command = plan.command(step, ids)
        answer = client.call(command.method, dict(command.params))
        if step.creates is not None:
            ids[step.creates] = item_id(answer) or 0  # crm.item.add: {"item": {"id": ...}}


# -- fast-bitrix24 passes -----------------------------------------------------------------

_PASSES: tuple[tuple[StepKind, ...], ...] = (
    (StepKind.COMPANY,),
    (StepKind.CONTACT,),
    (StepKind.DEAL,),
    (StepKind.LINK,),
    (StepKind.ADDRESS,),
    (StepKind.BIND,),
    (StepKind.UNBIND,),
    (StepKind.COMPLETE,),
    (StepKind.TIMELINE,),
    (StepKind.PRODUCTS,),
    (StepKind.REQUISITE_LINK,),
    (StepKind.FINISH,),
)
_LIST_OF = {"company": "crm.company.list", "contact": "crm.contact.list", "deal": "crm.deal.list"}


def fast_bitrix24_convert(
    webhook_url: str, *, rate: float, burst: int, policy: Policy, chunked: bool = False
) -> PeerResult:
    """Convert every active lead with fast-bitrix24, one pass per kind of step.

    `chunked`: give call() at most 50 items at a time (one batch, answers in order, passes
    sequential) instead of the whole pass (parallel batches, ids mapped by ORIGIN_ID).
    """
    from fast_bitrix24 import Bitrix

    logging.getLogger("fast_bitrix24").setLevel(logging.WARNING)  # it logs payloads at INFO
    # Its abandoned retry tasks print "Task exception was never retrieved" tracebacks later.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    bx = Bitrix(
        webhook_url, verbose=False, requests_per_second=float(rate), request_pool_size=burst
    )
    result = PeerResult()
    where = "reading"
    with warnings.catch_warnings():  # advice about get_all/select, printed per call
        warnings.simplefilter("ignore", UserWarning)
        try:
            plans = _read_and_plan(bx, policy, chunked=chunked)
            ids = {plan.lead_id: dict(plan.known_ids) for plan in plans}
            for kinds in _PASSES:
                work = [(plan, step) for plan in plans for step in plan.steps if step.kind in kinds]
                if not work:
                    continue
                commands = [plan.command(step, ids[plan.lead_id]) for plan, step in work]
                where = f"{commands[0].method} pass"
                answers = _call(
                    bx, commands[0].method, [dict(c.params) for c in commands], chunked=chunked
                )
                entity = work[0][1].creates
                if entity is not None and chunked:
                    for (plan, _), answer in zip(work, answers, strict=True):
                        # fast-bitrix24 may hand back the item itself, unwrapped
                        found = answer.get("id") if isinstance(answer, Mapping) else None
                        ids[plan.lead_id][entity] = int(found or item_id(answer) or 0)
                elif entity is not None:
                    _map_by_origin(bx, entity, ids)
        except Exception as exc:  # fast-bitrix24 raises many kinds for one failed call
            result.errors.append(f"{where}: {type(exc).__name__}: {exc}")
            result.failed = 1
            return result
    result.converted = len(plans)
    return result


def _call(bx: Any, method: str, items: list[dict[str, Any]], *, chunked: bool) -> list[Any]:
    if not chunked:
        return list(bx.call(method, items))
    answers: list[Any] = []
    for start in range(0, len(items), PAGE):
        answers.extend(bx.call(method, items[start : start + PAGE]))
    return answers


def _read_and_plan(bx: Any, policy: Policy, *, chunked: bool) -> list[LeadPlan]:
    # call() unwraps a single call's list result to its first item; raw=True keeps it whole.
    facts = facts_from(
        lambda method, params: bx.call(method, params, raw=True)["result"], policy.pipeline
    )
    leads = bx.get_all(
        "crm.lead.list",
        {"filter": {"@STATUS_ID": list(facts.active_lead_stages)}, "select": list(LEAD_SELECT)},
    )
    lead_ids = sorted(int(lead["ID"]) for lead in leads)
    open_activities: dict[int, list[int]] = {}
    for activity in bx.get_all(
        "crm.activity.list",
        {
            "filter": {"OWNER_TYPE_ID": LEAD_TYPE_ID, "COMPLETED": "N"},
            "select": ["ID", "OWNER_ID", "OWNER_TYPE_ID", "COMPLETED"],
        },
    ):
        open_activities.setdefault(int(activity["OWNER_ID"]), []).append(int(activity["ID"]))
    product_rows: dict[int, list[Mapping[str, Any]]] = {}
    answers = _call(
        bx,
        "crm.item.productrow.list",
        [{"filter": {"=ownerType": "L", "=ownerId": lead_id}} for lead_id in lead_ids],
        chunked=chunked,
    )
    for row in _product_rows(answers):
        product_rows.setdefault(int(row["ownerId"]), []).append(row)
    return plans_for(
        sorted(leads, key=lambda lead: int(lead["ID"])),
        policy=policy,
        facts=facts,
        activities=open_activities,
        product_rows=product_rows,
    )


def _map_by_origin(bx: Any, entity: str, ids: dict[int, dict[str, int]]) -> None:
    rows = bx.get_all(
        _LIST_OF[entity],
        {"filter": {"ORIGINATOR_ID": ORIGINATOR_ID}, "select": ["ID", "ORIGIN_ID"]},
    )
    for row in rows:
        lead_id = lead_id_of(row.get("ORIGIN_ID"))
        if lead_id in ids:
            ids[lead_id].setdefault(entity, int(row["ID"]))


def _product_rows(answers: Any) -> Iterable[Mapping[str, Any]]:
    """Rows out of call()'s answers, which arrive flattened (rows) or wrapped (productRows)."""
    if isinstance(answers, Mapping):
        answers = answers.get("productRows", [answers])
    for answer in answers or ():
        if isinstance(answer, Mapping) and "productRows" in answer:
            yield from answer["productRows"]
        elif isinstance(answer, Mapping) and "ownerId" in answer:
            yield answer
        elif isinstance(answer, list):
            yield from _product_rows(answer)
