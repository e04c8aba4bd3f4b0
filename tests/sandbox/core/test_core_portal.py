"""The Portal object itself: dispatch rules, registration, events, seeding and the SQLite file."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from sandbox.errors import ApiError
from sandbox.portal import CallContext, MethodResult, Portal

ADMIN = CallContext()
NO_CRM = CallContext(user_id=3, is_admin=False, crm_access=False)


def test_method_names_are_case_insensitive(call):
    lead_id = call.lead()

    assert call("CRM.Lead.Get", id=lead_id)["ID"] == str(lead_id)


def test_unknown_method(portal):
    with pytest.raises(ApiError) as caught:
        portal.dispatch("crm.lead.convert", {}, ADMIN)

    assert (caught.value.code, caught.value.status) == ("ERROR_METHOD_NOT_FOUND", 404)
    assert not portal.has_method("crm.lead.convert")
    assert portal.has_method("CRM.LEAD.ADD")


def test_registered_server_methods_are_dispatched(portal):
    seen = []

    def profile(params, ctx):
        seen.append((params, ctx.user_id))
        return MethodResult({"ID": ctx.user_id})

    portal.register("Profile", profile)

    assert portal.has_method("profile")
    assert portal.dispatch("PROFILE", {"x": 1}, ADMIN).result == {"ID": 1}
    assert seen == [({"x": 1}, 1)]


def test_without_crm_access_legacy_and_new_methods_deny_in_their_own_style(portal):
    with pytest.raises(ApiError) as legacy:
        portal.dispatch("crm.deal.add", {"fields": {}}, NO_CRM)
    with pytest.raises(ApiError) as newer:
        portal.dispatch("crm.item.list", {"entityTypeId": 1}, NO_CRM)

    assert legacy.value.body() == {"error": "", "error_description": "Access denied."}
    assert newer.value.code == "ACCESS_DENIED"
    assert portal.dispatch("crm.settings.mode.get", {}, NO_CRM).result == 1
    assert portal.counts()["deal"] == 0


def test_list_methods_return_total_and_next(call):
    for _ in range(51):
        call.lead()

    page = call.full("crm.lead.list", select=["ID"])

    assert (page.total, page.next) == (51, 50)
    assert call.full("crm.lead.get", id=1).total is None


def test_event_sink_runs_after_the_change_is_stored(portal):
    seen = []
    portal.event_sink = lambda name, payload: seen.append(
        (name, portal.counts()["lead"], payload["FIELDS"]["ID"])
    )

    lead_id = portal.dispatch("crm.lead.add", {"fields": {"TITLE": "x"}}, ADMIN).result

    assert seen == [("ONCRMLEADADD", 1, lead_id)]


def test_dispatch_is_serialized_by_the_lock(portal):
    ids: list[int] = []

    def add_many():
        for _ in range(50):
            ids.append(portal.dispatch("crm.lead.add", {"fields": {"TITLE": "t"}}, ADMIN).result)

    threads = [threading.Thread(target=add_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(ids) == list(range(1, 201))
    assert isinstance(portal.lock, type(threading.RLock()))


def test_seeding_is_deterministic(clock):
    first = Portal(seed_leads=60, seed=7, clock=clock)
    again = Portal(seed_leads=60, seed=7, clock=clock)
    other = Portal(seed_leads=60, seed=8, clock=clock)
    query = {"select": ["*", "PHONE", "EMAIL"], "order": {"ID": "ASC"}}

    rows = first.dispatch("crm.lead.list", query, ADMIN).result

    assert rows == again.dispatch("crm.lead.list", query, ADMIN).result
    assert rows != other.dispatch("crm.lead.list", query, ADMIN).result
    assert first.counts() == again.counts()


def test_seeded_leads_are_varied(clock):
    portal = Portal(seed_leads=600, seed=1, clock=clock)
    leads = []
    start = 0
    while start is not None:
        page = portal.dispatch(
            "crm.lead.list", {"select": ["*", "PHONE", "EMAIL"], "start": start}, ADMIN
        )
        leads += page.result
        start = page.next

    stages = Counter(lead["STATUS_ID"] for lead in leads)
    assert set(stages) == {"NEW", "IN_PROCESS", "PROCESSED", "CONVERTED", "JUNK"}
    assert sum(stages[s] for s in ("NEW", "IN_PROCESS", "PROCESSED")) > len(leads) / 2
    assert any(lead["NAME"] and not lead["COMPANY_TITLE"] for lead in leads)
    assert any(lead["COMPANY_TITLE"] and not lead["NAME"] for lead in leads)
    assert any(lead["COMPANY_TITLE"] and lead["NAME"] for lead in leads)
    assert {lead["ASSIGNED_BY_ID"] for lead in leads} == {"1", "2"}
    assert any(lead["UTM_SOURCE"] for lead in leads)
    assert len({lead["CURRENCY_ID"] for lead in leads}) > 1
    repeat = [lead for lead in leads if lead["IS_RETURN_CUSTOMER"] == "Y"]
    assert repeat and all(lead["CONTACT_ID"] or lead["COMPANY_ID"] for lead in repeat)
    phones = Counter(p["VALUE"] for lead in leads for p in lead.get("PHONE", []))
    assert max(phones.values()) > 1  # shared numbers: duplicate matching has work
    converted = [lead for lead in leads if lead["STATUS_ID"] == "CONVERTED"]
    deal_of = portal.dispatch(
        "crm.deal.list", {"filter": {"LEAD_ID": converted[0]["ID"]}}, ADMIN
    ).result
    assert len(deal_of) == 1
    activities = portal.dispatch("crm.activity.list", {"select": ["COMPLETED"]}, ADMIN)
    assert {a["COMPLETED"] for a in activities.result} == {"Y", "N"}
    counts = portal.counts()
    assert counts["productrow"] > 0
    assert counts["lead"] < counts["activity"] < 3 * counts["lead"]


def test_seeding_fires_no_events(clock):
    received = []
    portal = Portal(seed_leads=20, seed=1, clock=clock)
    portal.event_sink = lambda *event: received.append(event)
    portal.dispatch("crm.lead.list", {}, ADMIN)

    assert received == []


def test_sqlite_file_survives_a_restart_and_ids_continue(tmp_path, clock):
    path = str(tmp_path / "portal.db")
    portal = Portal(seed_leads=30, seed=2, db_path=path, clock=clock)
    portal.set_mode("simple", client="both", pipeline=7)
    lead_id = portal.dispatch("crm.lead.add", {"fields": {"TITLE": "kept"}}, ADMIN).result
    portal.dispatch("crm.lead.delete", {"id": 1}, ADMIN)
    before = portal.counts()
    snapshot = portal.dispatch("crm.deal.list", {"select": ["*"]}, ADMIN).result
    portal.close()

    reopened = Portal(db_path=path, clock=clock, mode="classic", seed_leads=99)

    assert reopened.mode == "simple"
    assert reopened.counts() == before
    assert reopened.dispatch("crm.deal.list", {"select": ["*"]}, ADMIN).result == snapshot
    assert reopened.dispatch("crm.lead.get", {"id": lead_id}, ADMIN).result["TITLE"] == "kept"
    with pytest.raises(ApiError):
        reopened.dispatch("crm.lead.get", {"id": 1}, ADMIN)
    next_id = reopened.dispatch("crm.lead.add", {"fields": {"NAME": "Ann"}}, ADMIN).result
    assert next_id == lead_id + 1
    # the Simple-mode converter settings were kept too
    deal = reopened.dispatch("crm.deal.list", {"filter": {"LEAD_ID": next_id}}, ADMIN).result
    assert deal[0]["CATEGORY_ID"] == "7"


def test_without_a_file_each_portal_starts_empty(clock):
    Portal(clock=clock).dispatch("crm.lead.add", {"fields": {"TITLE": "x"}}, ADMIN)

    assert Portal(clock=clock).counts()["lead"] == 0
