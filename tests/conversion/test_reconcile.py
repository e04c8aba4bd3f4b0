"""`reconcile` on hand-made portal states: what counts as taken by Bitrix24, which of b24app's
entities go and which stay."""

from __future__ import annotations

from typing import Any

from b24app.crm.mapping import ORIGINATOR_ID, origin_id
from b24app.crm.planner import LeadPlan
from b24app.crm.reconcile import reconcile
from b24app.crm.scheduler import LeadState

from .conftest import client_for
from .portalstate import call


def _lead(core: Any, *, name: str | None = "Ann") -> int:
    fields = {
        "TITLE": "lead",
        "STATUS_ID": "NEW",
        "PHONE": [{"VALUE": "+100", "VALUE_TYPE": "WORK"}],
    }
    if name:
        fields["NAME"] = name
    return int(call(core, "crm.lead.add", {"fields": fields}))


def _ours(core: Any, kind: str, lead_id: int, **fields: Any) -> int:
    values = {"ORIGINATOR_ID": ORIGINATOR_ID, "ORIGIN_ID": origin_id(lead_id), **fields}
    if kind == "deal":
        values.setdefault("TITLE", "deal")
    elif kind == "contact":
        values.setdefault("NAME", "Ann")
    return int(call(core, f"crm.{kind}.add", {"fields": values}))


def _state(lead_id: int) -> LeadState:
    return LeadState(LeadPlan(lead_id=lead_id, success_stage="CONVERTED"))


def _exists(core: Any, kind: str, entity_id: int) -> bool:
    return bool(call(core, f"crm.{kind}.list", {"filter": {"ID": entity_id}, "select": ["ID"]}))


def test_a_client_two_taken_leads_share_goes_with_them(make_sandbox: Any) -> None:
    sandbox = make_sandbox(seed_leads=0)
    core = sandbox.portal
    a, b = _lead(core), _lead(core)
    contact = _ours(core, "contact", a)
    deal_a = _ours(core, "deal", a, CONTACT_ID=contact)
    deal_b = _ours(core, "deal", b, CONTACT_ID=contact)  # b matched a's new contact
    sandbox.set_mode("simple")

    outcome = reconcile(client_for(sandbox), [_state(a), _state(b)])

    assert set(outcome.taken) == {a, b} and not outcome.unresolved
    assert set(outcome.taken[a].removed) == {("deal", deal_a), ("contact", contact)}
    assert outcome.taken[b].removed == (("deal", deal_b),)
    assert not any(_exists(core, k, i) for k, i in (("deal", deal_a), ("deal", deal_b)))
    assert not _exists(core, "contact", contact)


def test_a_client_another_converted_lead_uses_is_kept(make_sandbox: Any) -> None:
    sandbox = make_sandbox(seed_leads=0)
    core = sandbox.portal
    a, done = _lead(core), _lead(core)
    contact = _ours(core, "contact", a)
    _ours(core, "deal", a, CONTACT_ID=contact)
    _ours(core, "deal", done, CONTACT_ID=contact)
    call(core, "crm.lead.update", {"id": done, "fields": {"STATUS_ID": "CONVERTED"}})
    sandbox.set_mode("simple")

    outcome = reconcile(client_for(sandbox), [_state(a)])

    taken = outcome.taken[a]
    assert taken.kept == (("contact", contact),) and _exists(core, "contact", contact)
    assert "kept (used elsewhere) contact" in taken.note


def test_a_lead_still_in_work_is_not_taken(make_sandbox: Any) -> None:
    sandbox = make_sandbox(seed_leads=0, mode="simple")
    core = sandbox.portal
    lead = _lead(core, name=None)  # in Simple mode a lead without NAME stays a lead
    deal = _ours(core, "deal", lead)

    outcome = reconcile(client_for(sandbox), [_state(lead)])

    assert not outcome.taken and not outcome.unresolved and _exists(core, "deal", deal)
