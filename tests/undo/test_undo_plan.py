"""The pure undo planning: verdicts, what is deleted and kept, and the order of the steps."""

from __future__ import annotations

from typing import Any

from b24app.crm.planner import EntityPlan, LeadPlan, Source, requisite_key
from b24app.crm.policy import Activities
from b24app.crm.scheduler import LeadState, Progress
from b24app.crm.undo_plan import (
    DELETE,
    FAIL,
    KEEP,
    LEAD,
    REBIND,
    RELINK,
    REVERT,
    PortalNow,
    UndoProgress,
    next_batch,
    plan_undo,
    read_listings,
)

CLOSED_AT = "2026-12-01T10:00:00+00:00"
LATER = "2026-12-01T11:00:00+00:00"


def record(
    *,
    mode: Activities = Activities.MOVE,
    repeat: bool = False,
    before: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A converted lead 5's record: deal 50, contact 30 (created, or the repeat lead's own 31),
    company 40 created (or the repeat lead's own 41 given a requisite 90)."""
    if repeat:
        contact = EntityPlan(Source.LEAD, 31)
        company = EntityPlan(Source.LEAD, 41)
        ids = {"deal": 50, requisite_key("company"): 90}
    else:
        contact = EntityPlan(Source.CREATE, None, {"NAME": "A"})
        company = EntityPlan(Source.CREATE, None, {"TITLE": "B"})
        ids = {"deal": 50, "contact": 30, "company": 40}
    plan = LeadPlan(
        lead_id=5,
        company=company,
        contact=contact,
        deal=EntityPlan(Source.CREATE, None, {"TITLE": "D"}),
        activities=(7,),
        activity_mode=mode,
        success_stage="CONVERTED",
        native=True,
        closed=(8,),
        comments=(9,),
        before=before
        if before is not None
        else {
            "STATUS_ID": "IN_PROCESS",
            "CONTACT_ID": 31 if repeat else None,
            "COMPANY_ID": 41 if repeat else None,
        },
    )
    return LeadState(plan, Progress(ids=ids, done=frozenset({"f"}))).to_dict()


def portal(**changes: Any) -> PortalNow:
    lead = {"ID": "5", "STATUS_ID": "CONVERTED", "CONTACT_ID": "30", "COMPANY_ID": "40"}
    lead["DATE_MODIFY"] = CLOSED_AT
    deal = {"ID": "50", "STAGE_ID": "NEW", "IS_NEW": "Y", "DATE_MODIFY": CLOSED_AT, "LEAD_ID": "5"}
    client = {"DATE_MODIFY": CLOSED_AT, "LEAD_ID": "5"}
    now = {
        "leads": {5: {**lead, **changes.pop("lead", {})}},
        "deals": {50: {**deal, **changes.pop("deal", {})}},
        "contacts": {30: {"ID": "30", **client}, 31: {"ID": "31", "DATE_MODIFY": CLOSED_AT}},
        "companies": {40: {"ID": "40", **client}, 41: {"ID": "41", "LEAD_ID": "5"}},
        "activities": {50: frozenset({7, 8})},
    }
    now.update(changes)
    return PortalNow(**now)


def test_move_mode_binds_activities_back_before_anything_is_deleted_and_the_lead_goes_last():
    undo = plan_undo(5, record(), portal())
    assert undo.verdict == REVERT
    phases = {step.id: step.phase for step in undo.steps}
    assert phases == {
        "b7": REBIND,
        "xdeal": DELETE,
        "xcontact": DELETE,
        "xcompany": DELETE,
        "lead": LEAD,
    }
    lead = next(s for s in undo.steps if s.id == "lead")
    assert lead.params == {
        "id": 5,
        "fields": {"STATUS_ID": "IN_PROCESS", "CONTACT_ID": 0, "COMPANY_ID": 0},
    }
    assert undo.deletes == {"deal": 50, "contact": 30, "company": 40}
    assert undo.stage == "IN_PROCESS"


def test_complete_mode_reopens_beside_the_deletions():
    undo = plan_undo(5, record(mode=Activities.COMPLETE), portal())
    reopen = next(s for s in undo.steps if s.id == "a7")
    assert reopen.phase == DELETE and reopen.params["fields"] == {"COMPLETED": "N"}
    assert not any(s.phase == REBIND for s in undo.steps)


def test_a_repeat_lead_keeps_its_clients_loses_the_requisite_given_and_its_links_come_back():
    now = portal(lead={"CONTACT_ID": "31", "COMPANY_ID": "41"})
    undo = plan_undo(5, record(repeat=True), now)
    assert undo.deletes == {"deal": 50}
    ids = {step.id: step for step in undo.steps}
    assert ids["rcompany"].method == "crm.requisite.delete" and ids["rcompany"].params == {"id": 90}
    assert ids["lead"].params["fields"] == {"STATUS_ID": "IN_PROCESS"}  # links unchanged
    # company 41 named the lead before: Bitrix24's cascade clears that, so it comes back last
    assert ids["lcompany"].phase == RELINK
    assert ids["lcompany"].params == {"entityTypeId": 4, "id": 41, "fields": {"leadId": 5}}
    assert "lcontact" not in ids


def test_changes_keep_the_lead_with_each_reason_unless_forced():
    now = portal(
        deal={"IS_NEW": "N", "STAGE_ID": "WON"},
        activities={50: frozenset({7, 8, 11})},
        product_rows={50: ({"productId": 3, "quantity": 1},)},
        users={("contact", 30): frozenset({"deal 77", "lead 5"})},
    )
    kept = plan_undo(5, record(), now)
    assert kept.verdict == KEEP and not kept.steps
    assert kept.reasons == (
        "deal 50 moved to stage WON",
        "deal 50 has new activities: 11",
        "deal 50 has other product rows (1 now, 0 at the conversion)",
        "contact 30 is used by deal 77",
    )
    forced = plan_undo(5, record(), now, force=True)
    assert forced.verdict == REVERT
    assert "contact" not in forced.deletes  # never deleted, even forced
    assert "contact 30 was not deleted: it is used by deal 77" in forced.notes
    unbinds = {s.id for s in forced.steps if s.method == "crm.activity.binding.delete"}
    assert unbinds == {"uco7", "uco8"}
    assert any(s.method == "crm.timeline.bindings.unbind" for s in forced.steps)


def test_an_edit_after_the_lead_closed_and_a_moved_lead_are_changes():
    edited = plan_undo(5, record(), portal(deal={"DATE_MODIFY": LATER}))
    assert edited.reasons == ("deal 50 was edited after the conversion",)
    moved = plan_undo(5, record(), portal(lead={"STATUS_ID": "JUNK"}))
    assert moved.reasons == ("the lead moved to stage JUNK after the conversion",)
    gone = plan_undo(5, record(), portal(leads={}))
    assert gone.verdict == KEEP and gone.reasons == ("the lead no longer exists",)


def test_without_a_record_or_the_stage_before_a_lead_cannot_be_undone():
    assert plan_undo(5, None, portal()).verdict == FAIL
    assert plan_undo(5, record(before={}), portal()).verdict == FAIL
    assert plan_undo(5, {"plan": "garbage"}, portal()).verdict == FAIL


def test_one_read_for_fifty_leads_and_batches_of_at_most_fifty():
    states = [LeadState.from_dict(record())]
    names = {listing.name for listing in read_listings(states)}
    assert names == {"l0", "d0", "c0", "co0", "a0", "p0", "uc0", "uk0", "lc0", "lk0", "ck0"}
    plans = [UndoProgress(plan_undo(5, record(), portal())) for _ in range(30)]
    batch = next_batch(plans)
    assert len(batch) == 30  # each lead's first phase only: one rebind apiece
    many = [UndoProgress(plan_undo(5, record(mode=Activities.COMPLETE), portal()))] * 20
    assert len(next_batch(many)) == 50
