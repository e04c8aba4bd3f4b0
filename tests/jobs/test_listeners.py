"""The auto-convert rule on events, the sweep and the keep-alive, through Jobs in immediate mode."""

from __future__ import annotations

import datetime as dt
from typing import Any

from b24app import listeners
from b24app.crm.policy import Policy
from b24app.jobs import Jobs
from b24app.store.db import utc_now
from tests.conversion.portalstate import call, created, duplicates, rows


def _policy(**auto: Any) -> dict[str, Any]:
    return Policy.from_dict({"auto": {"enabled": True, **auto}}).to_dict()


def _add_lead(core: Any, title: str, **fields: Any) -> int:
    return int(
        call(
            core,
            "crm.lead.add",
            {"fields": {"TITLE": title, "NAME": "Ana", "STATUS_ID": "NEW", **fields}},
        )
    )


def _deals(core: Any, lead_id: int) -> int:
    return len(created(core, "deal").get(lead_id, []))


def _setup(installed: Any, **auto: Any) -> tuple[Any, Jobs]:
    app = installed(seed_leads=5)
    jobs = Jobs(app.settings, immediate=True)
    if auto.pop("enabled", True):
        jobs.services.portal_settings.save_policy(app.member_id, _policy(**auto), by="1")
    return app, jobs


def test_an_event_converts_a_lead_the_rule_picks_once_however_often_it_comes(
    installed: Any,
) -> None:
    app, jobs = _setup(installed, stages=["NEW"])
    core = app.sandbox.portal
    lead = _add_lead(core, "from the web form")

    for _ in range(3):
        jobs.lead_event(app.member_id, lead, "ONCRMLEADADD")

    assert _deals(core, lead) == 1
    assert not duplicates(core)
    assert call(core, "crm.lead.get", {"id": lead})["STATUS_ID"] == "CONVERTED"
    assert jobs.services.portal_settings.observed_mode(app.member_id)[0] == "classic"


def test_the_rule_leaves_other_stages_and_a_disabled_rule_converts_nothing(
    installed: Any,
) -> None:
    app, jobs = _setup(installed, stages=["IN_PROCESS"])
    core = app.sandbox.portal
    lead = _add_lead(core, "still new")
    jobs.lead_event(app.member_id, lead, "ONCRMLEADUPDATE")
    assert _deals(core, lead) == 0

    jobs.services.portal_settings.save_policy(app.member_id, Policy().to_dict(), by="1")
    call(core, "crm.lead.update", {"id": lead, "fields": {"STATUS_ID": "IN_PROCESS"}})
    outcome = listeners.convert_from_event(
        jobs.services, app.member_id, lead_id=lead, event="ONCRMLEADUPDATE"
    )
    assert (outcome.action, outcome.reason) == ("skipped", "auto-convert is off")
    assert _deals(core, lead) == 0


def test_other_events_and_unknown_leads_are_skipped(installed: Any) -> None:
    app, jobs = _setup(installed)
    services = jobs.services
    assert (
        listeners.convert_from_event(
            services, app.member_id, lead_id=1, event="ONCRMDEALADD"
        ).action
        == "skipped"
    )
    missing = listeners.convert_from_event(
        services, app.member_id, lead_id=999999, event="ONCRMLEADADD"
    )
    assert missing.reason == "lead not found"


def test_in_simple_mode_a_lead_bitrix24_left_as_a_lead_is_converted(installed: Any) -> None:
    app, jobs = _setup(installed, stages=["IN_PROCESS"])  # the stage rule is Classic's
    core = app.sandbox.portal
    app.sandbox.set_mode("simple")
    lead = int(call(core, "crm.lead.add", {"fields": {"TITLE": "REST lead without a name"}}))
    assert call(core, "crm.lead.get", {"id": lead})["STATUS_SEMANTIC_ID"] == "P"

    jobs.lead_event(app.member_id, lead, "ONCRMLEADADD")

    assert _deals(core, lead) == 1
    assert jobs.services.portal_settings.observed_mode(app.member_id)[0] == "simple"


def test_a_sweep_converts_leads_whose_events_were_lost_and_records_the_mode(
    installed: Any,
) -> None:
    app, jobs = _setup(installed)
    core = app.sandbox.portal
    lost = [_add_lead(core, f"lost event {i}") for i in range(3)]

    jobs.sweep(app.member_id)

    assert all(_deals(core, lead) == 1 for lead in lost)
    settings_store = jobs.services.portal_settings
    assert settings_store.last_swept(app.member_id) is not None
    assert settings_store.observed_mode(app.member_id)[0] == "classic"
    old = {int(r["ID"]) for r in rows(core, "crm.lead.list", {"STATUS_SEMANTIC_ID": "P"})}
    assert not old & set(lost)


def test_a_sweep_reads_the_offline_queue_beyond_its_time_window(installed: Any) -> None:
    app, jobs = _setup(installed)
    core = app.sandbox.portal
    services = jobs.services
    listeners.sweep_portal(services, app.member_id)  # binds the offline lead events
    assert app.member_id in services.offline_ready
    lead = _add_lead(core, "only the offline queue knows")
    future = utc_now() + dt.timedelta(hours=1)
    services.portal_settings.mark_swept(app.member_id, future)

    outcome = listeners.sweep_portal(services, app.member_id, now=future)

    assert outcome.leads == (lead,)
    assert _deals(core, lead) == 1
    assert listeners.sweep_portal(services, app.member_id, now=future).action == "swept"


def test_a_sweep_with_the_rule_off_only_records_the_mode(installed: Any) -> None:
    app, jobs = _setup(installed, enabled=False)
    lead = _add_lead(app.sandbox.portal, "left alone")
    outcome = listeners.sweep_portal(jobs.services, app.member_id)
    assert (outcome.action, outcome.reason) == ("swept", "auto-convert is off")
    assert _deals(app.sandbox.portal, lead) == 0


def test_the_tick_sweeps_due_portals_and_recovers_nothing_when_all_is_well(
    installed: Any,
) -> None:
    app, jobs = _setup(installed)
    lead = _add_lead(app.sandbox.portal, "tick")
    jobs.tick()
    assert _deals(app.sandbox.portal, lead) == 1
    swept = jobs.services.portal_settings.last_swept(app.member_id)
    jobs.tick()  # not due again yet
    assert jobs.services.portal_settings.last_swept(app.member_id) == swept
    assert jobs.recover() == []


def test_keep_alive_refreshes_only_tokens_rotated_long_ago_once(installed: Any) -> None:
    app, jobs = _setup(installed)
    services = jobs.services
    month = dt.timedelta(days=20)
    assert not listeners.keep_alive(services, app.member_id, max_age=month)
    later = utc_now() + dt.timedelta(days=21)
    assert listeners.keep_alive(services, app.member_id, max_age=month, now=later)
    assert not listeners.keep_alive(services, app.member_id, max_age=month)  # just rotated
    assert app.sandbox.stats()["refreshes"] == 1
    with services.client(app.member_id) as client:
        assert client.call("user.current").result["ID"]
