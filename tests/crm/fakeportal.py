"""A tiny in-memory Bitrix24 for the conversion methods, to drive the scheduler in pure tests.

It answers `batch` the way the docs describe (results and `result_error` by key, halt=0), knows
the methods a conversion sends, and mimics three platform behaviours that matter here: `LEAD_ID`
cannot be written by the legacy `add` methods and is by `crm.item.add` (`leadId`), and a lead
moved to a success stage gets its still-bound open activities completed. Faults can be injected
per command and per batch.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from b24app.crm.scheduler import BatchOutcome, LeadState, mark_sent, next_batch, record
from b24app.rest.command import Command

LEAD, DEAL, CONTACT, COMPANY = 1, 2, 3, 4
ENTITY_OF = {2: "deal", 3: "contact", 4: "company"}


def upper(name: str) -> str:
    """A universal (camelCase) field name as the legacy one: `contactIds` -> `CONTACT_IDS`."""
    return re.sub(r"(?<!^)(?=[A-Z0-9])", "_", name).upper()


class AnswerLost(Exception):
    """The batch's answer never arrived (it may or may not have run)."""


@dataclass
class Activity:
    id: int
    bindings: list[tuple[int, int]]
    completed: bool = False


@dataclass
class Fault:
    """What to do instead of answering one command."""

    kind: str  # "error" (not executed), "ambiguous" (executed, error answer)
    code: str = "ERROR_CORE"
    description: str = ""


@dataclass
class FakePortal:
    leads: dict[int, dict[str, Any]] = field(default_factory=dict)
    activities: dict[int, Activity] = field(default_factory=dict)
    success_stage: str = "CONVERTED"
    entities: dict[str, dict[int, dict[str, Any]]] = field(
        default_factory=lambda: {"company": {}, "contact": {}, "deal": {}}
    )
    timeline: dict[int, set[tuple[str, int]]] = field(default_factory=dict)  # comment: bindings
    requisites: dict[int, dict[str, Any]] = field(default_factory=dict)
    addresses: dict[int, dict[str, Any]] = field(default_factory=dict)  # requisite id: address
    links: dict[int, int] = field(default_factory=dict)  # deal id: requisite id
    product_rows: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    batches: list[tuple[Command, ...]] = field(default_factory=list)
    executed: list[Command] = field(default_factory=list)
    fault: Callable[[int, Command], Fault | None] = lambda n, c: None
    lose: Callable[[int], str | None] = lambda n: None  # "after" run / "before" run
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000))

    def add_lead(self, lead: Mapping[str, Any], activity_ids: Sequence[int] = ()) -> None:
        lead_id = int(lead["ID"])
        self.leads[lead_id] = dict(lead)
        for activity_id in activity_ids:
            self.activities[activity_id] = Activity(activity_id, [(LEAD, lead_id)])

    def batch(self, commands: Sequence[Command]) -> dict[str, Any]:
        number = len(self.batches)
        self.batches.append(tuple(commands))
        assert len(commands) <= 50
        assert len({c.key for c in commands}) == len(commands)
        assert "$result" not in json.dumps([dict(c.params) for c in commands])
        lose = self.lose(number)
        if lose == "before":
            raise AnswerLost
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for command in commands:
            fault = self.fault(number, command)
            if fault is not None and fault.kind == "error":
                errors[command.key] = {"error": fault.code, "error_description": fault.description}
                continue
            try:
                value = self.call(command)
            except PortalError as exc:
                errors[command.key] = {"error": exc.code, "error_description": exc.description}
                continue
            if fault is not None:  # ambiguous: it ran, the answer says it failed
                errors[command.key] = {"error": fault.code, "error_description": ""}
            else:
                results[command.key] = value
        if lose == "after":
            raise AnswerLost
        return {
            "result": {
                "result": results or [],
                "result_error": errors or [],
                "result_total": [],
                "result_next": [],
                "result_time": [],
            },
            "time": {},
        }

    # --- methods -------------------------------------------------------------------------------

    def call(self, command: Command) -> Any:
        self.executed.append(command)
        method, params = command.method, command.params
        if method in ("crm.item.add", "crm.item.update"):
            return self._item(method, params)
        entity = method.split(".")[1]
        if method.endswith(".add") and entity in self.entities:
            fields = dict(params["fields"])
            assert "LEAD_ID" not in fields
            new_id = next(self._ids)
            self.entities[entity][new_id] = fields
            return new_id
        if method.endswith(".list") and entity in self.entities:
            wanted = params["filter"]

            def matches(f: Mapping[str, Any]) -> bool:
                return all(
                    f.get(k[1:]) in v if k.startswith("@") else f.get(k) == v
                    for k, v in wanted.items()
                )

            return [
                {
                    "ID": str(i),
                    "ORIGINATOR_ID": f.get("ORIGINATOR_ID"),
                    "ORIGIN_ID": f.get("ORIGIN_ID"),
                    "CONTACT_ID": str(f.get("CONTACT_ID") or ""),
                    "COMPANY_ID": str(f.get("COMPANY_ID") or ""),
                }
                for i, f in sorted(self.entities[entity].items())
                if matches(f)
            ]
        if method.endswith(".delete") and entity in self.entities:
            if self.entities[entity].pop(int(params["id"]), None) is None:
                raise PortalError("", "Not found")
            return True
        handler = getattr(self, "_" + method.replace(".", "_"))
        return handler(params)

    def _item(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        entity = ENTITY_OF[int(params["entityTypeId"])]
        fields = {upper(k): v for k, v in params["fields"].items() if k != "fm"}
        for item in params["fields"].get("fm", ()):
            fields.setdefault(item["typeId"], []).append(
                {"VALUE": item["value"], "VALUE_TYPE": item["valueType"]}
            )
        if fields.get("CONTACT_IDS"):
            fields["CONTACT_ID"] = fields["CONTACT_IDS"][0]  # the primary contact
        if fields.get("LEAD_ID") and int(fields["LEAD_ID"]) not in self.leads:
            raise PortalError("0", f"[Lead #{fields['LEAD_ID']}] Access denied")
        if method == "crm.item.add":
            item_id = next(self._ids)
            self.entities[entity][item_id] = fields
        else:
            item_id = int(params["id"])
            if item_id not in self.entities[entity]:
                raise PortalError("NOT_FOUND", "Element not found")
            self.entities[entity][item_id].update(fields)
        return {"item": {"id": item_id, **self.entities[entity][item_id]}}

    def _activity(self, activity_id: int) -> Activity:
        if activity_id not in self.activities:
            raise PortalError("NOT_FOUND", "Not found")
        return self.activities[activity_id]

    def _crm_activity_binding_add(self, p: Mapping[str, Any]) -> bool:
        activity = self._activity(p["activityId"])
        if p["entityTypeId"] == DEAL and p["entityId"] not in self.entities["deal"]:
            raise PortalError("OWNER_NOT_FOUND", "Owner not found")
        binding = (p["entityTypeId"], p["entityId"])
        if binding in activity.bindings:
            raise PortalError("ACTIVITY_IS_ALREADY_BOUND", "")
        activity.bindings.append(binding)
        return True

    def _crm_activity_binding_delete(self, p: Mapping[str, Any]) -> bool:
        activity = self._activity(p["activityId"])
        binding = (p["entityTypeId"], p["entityId"])
        if binding not in activity.bindings:
            raise PortalError("BINDING_NOT_FOUND", "")
        if len(activity.bindings) == 1:
            raise PortalError("LAST_BINDING_CANNOT_BE_DELETED", "")
        activity.bindings.remove(binding)
        return True

    def _crm_activity_update(self, p: Mapping[str, Any]) -> bool:
        activity = self._activity(p["id"])
        if p["fields"].get("COMPLETED") == "Y":
            activity.completed = True
        return True

    def _crm_deal_productrows_set(self, p: Mapping[str, Any]) -> bool:
        if p["id"] not in self.entities["deal"]:
            raise PortalError("", "Not found")
        self.product_rows[p["id"]] = list(p["rows"])
        return True

    def _crm_timeline_bindings_bind(self, p: Mapping[str, Any]) -> bool:
        fields = p["fields"]
        entity, entity_id = fields["ENTITY_TYPE"], int(fields["ENTITY_ID"])
        if entity_id not in self.entities[entity]:
            return False  # the proxy answers false when the target cannot be changed
        self.timeline.setdefault(int(fields["OWNER_ID"]), set()).add((entity, entity_id))
        return True

    def _crm_requisite_add(self, p: Mapping[str, Any]) -> int:
        fields = dict(p["fields"])
        owner = {3: "contact", 4: "company"}[int(fields["ENTITY_TYPE_ID"])]
        if int(fields["ENTITY_ID"]) not in self.entities[owner]:
            raise PortalError("", "Entity not found.")
        requisite_id = next(self._ids)
        self.requisites[requisite_id] = fields
        return requisite_id

    def _crm_requisite_list(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        wanted = p["filter"]
        return [
            {"ID": str(i)}
            for i, f in sorted(self.requisites.items())
            if all(str(f.get(k)) == str(v) for k, v in wanted.items())
        ]

    def _crm_address_add(self, p: Mapping[str, Any]) -> bool:
        fields = dict(p["fields"])
        if int(fields["ENTITY_ID"]) in self.addresses:
            raise PortalError("", "TypeAddress exists.")
        self.addresses[int(fields["ENTITY_ID"])] = fields
        return True

    def _crm_requisite_link_register(self, p: Mapping[str, Any]) -> bool:
        fields = p["fields"]
        self.links[int(fields["ENTITY_ID"])] = int(fields["REQUISITE_ID"])
        return True

    def _crm_contact_update(self, p: Mapping[str, Any]) -> bool:
        return self._update("contact", p)

    def _crm_company_update(self, p: Mapping[str, Any]) -> bool:
        return self._update("company", p)

    def _update(self, entity: str, p: Mapping[str, Any]) -> bool:
        if int(p["id"]) not in self.entities[entity]:
            raise PortalError("", "Not found")
        self.entities[entity][int(p["id"])].update(p["fields"])
        return True

    def _crm_lead_list(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        wanted = int(p["filter"]["ID"])
        lead = self.leads.get(wanted)
        return [] if lead is None else [{"ID": str(wanted), "STATUS_ID": lead["STATUS_ID"]}]

    def _crm_lead_update(self, p: Mapping[str, Any]) -> bool:
        lead = self.leads[p["id"]]
        fields = dict(p["fields"])
        assert "LEAD_ID" not in fields
        closing = (
            fields.get("STATUS_ID") == self.success_stage
            and lead["STATUS_ID"] != self.success_stage
        )
        lead.update(fields)
        if closing:  # Bitrix24 completes a closing lead's open activities (CCrmLead::Update)
            for activity in self.activities.values():
                if (LEAD, p["id"]) in activity.bindings:
                    activity.completed = True
        return True

    # --- what tests look at --------------------------------------------------------------------

    def created_for(self, lead_id: int, entity: str) -> list[int]:
        origin = f"lead-{lead_id}"
        return [
            i
            for i, f in self.entities[entity].items()
            if f.get("ORIGIN_ID") == origin and f.get("ORIGINATOR_ID") == "b24app"
        ]

    def position(self, predicate: Callable[[Command], bool]) -> list[int]:
        """Indexes of the batches that sent a command matching `predicate`."""
        return [n for n, batch in enumerate(self.batches) if any(map(predicate, batch))]


class PortalError(Exception):
    def __init__(self, code: str, description: str) -> None:
        super().__init__(code)
        self.code, self.description = code, description


def run(
    portal: FakePortal,
    states: Sequence[LeadState],
    *,
    limit: int = 5000,
    persist: Callable[[list[LeadState]], list[LeadState]] | None = None,
) -> list[LeadState]:
    """The executor's thin loop, against the fake portal (`persist` may round-trip the states)."""
    states = list(states)
    keep = persist or (lambda s: s)
    for _ in range(limit):
        batch = next_batch(states)
        if not batch:
            return states
        states = keep(mark_sent(states, batch))
        try:
            outcome = BatchOutcome.from_response(portal.batch(batch.commands))
        except AnswerLost:
            outcome = BatchOutcome.unknown()
        states = keep(record(states, batch, outcome))
    raise AssertionError("the scheduler did not finish")
