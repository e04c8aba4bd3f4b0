"""`/events` with the documented delivery bodies: lead events are enqueued, an uninstall marks
the portal (and purges its data with CLEAN=1), ONAPPINSTALL installs, bad forms are 400."""

from __future__ import annotations

import re
import time

import pytest
import responses

from b24app.store import installations as inst
from b24app.store.journal import Journal, LeadEntry
from handlers import create_app
from tests.scenarios.market_app import (
    DOC_APP_TOKEN,
    DOC_MEMBER,
    PUBLIC_URL,
    RecordingJobs,
    body,
    doc,
    history_events,
    raw_installation_rows,
    settings_for,
)

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def jobs() -> RecordingJobs:
    return RecordingJobs()


@pytest.fixture
def app(tmp_path, jobs):
    app = create_app(settings_for(tmp_path), jobs=jobs)
    app.extensions["b24app"].installations.save_installation(
        inst.Installation(
            member_id=DOC_MEMBER,
            domain="some-domain.bitrix24.com",
            client_endpoint="https://some-domain.bitrix24.com/rest/",
            access_token="a" * 32,
            refresh_token="r" * 32,
            application_token=DOC_APP_TOKEN,
        )
    )
    return app


def _deliver(app, raw: bytes | str):  # type: ignore[no-untyped-def]
    return app.test_client().post("/events", data=raw, content_type=FORM)


@pytest.mark.parametrize("name", ["ONCRMLEADADD", "ONCRMLEADUPDATE"])
def test_a_lead_event_is_enqueued_and_answered_at_once(app, jobs, name: str) -> None:
    response = _deliver(app, body(f"{name}.form"))

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "action": "enqueued"}
    assert jobs.lead_events == [(DOC_MEMBER, 1000983, name)]


def test_a_duplicate_delivery_is_accepted_again(app, jobs) -> None:
    for _ in range(2):
        assert _deliver(app, body("ONCRMLEADADD.form")).status_code == 200
    # The conversion itself is exactly-once in the journal; the queue may see the lead twice.
    assert jobs.lead_events == [(DOC_MEMBER, 1000983, "ONCRMLEADADD")] * 2


def test_an_event_the_app_does_not_use_is_verified_then_ignored(app, jobs) -> None:
    deal = body("ONCRMLEADADD.form").replace(b"event=ONCRMLEADADD", b"event=ONCRMDEALADD")
    response = _deliver(app, deal)
    assert response.status_code == 200 and response.get_json()["action"] == "ignored"
    assert jobs.lead_events == []


def _fill_portal_data(app) -> None:
    ctx = app.extensions["b24app"]
    ctx.portal_settings.save_policy(DOC_MEMBER, {"auto": {"enabled": True}}, by="1")
    journal = Journal(ctx.engine, portal=DOC_MEMBER)
    job = journal.start_job(kind="event", policy={}, lead_ids=[5])
    journal.save(job.id, [LeadEntry(lead_id=5, status="converted", deal_id=9)], taken=True)


def test_uninstall_with_clean_purges_the_portals_data(app) -> None:
    _fill_portal_data(app)
    ctx = app.extensions["b24app"]

    response = _deliver(app, body("ONAPPUNINSTALL.form"))  # the documented body has CLEAN=1

    assert response.status_code == 200 and response.get_json()["action"] == "uninstalled"
    stored = ctx.installations.get_installation(DOC_MEMBER)
    assert stored.status == inst.UNINSTALLED
    assert (stored.access_token, stored.refresh_token) == ("", "")
    assert ctx.portal_settings.policy_data(DOC_MEMBER) is None
    journal = Journal(ctx.engine, portal=DOC_MEMBER)
    assert journal.jobs() == [] and journal.states([5]) == {}
    assert history_events(ctx.engine, DOC_MEMBER)[-1] == "uninstalled"


def test_uninstall_without_clean_keeps_the_portals_data(app) -> None:
    _fill_portal_data(app)
    ctx = app.extensions["b24app"]
    keep = body("ONAPPUNINSTALL.form").replace(b"%5BCLEAN%5D=1", b"%5BCLEAN%5D=0")

    assert _deliver(app, keep).status_code == 200

    assert ctx.installations.get_installation(DOC_MEMBER).status == inst.UNINSTALLED
    assert ctx.portal_settings.policy_data(DOC_MEMBER) == {"auto": {"enabled": True}}
    assert len(Journal(ctx.engine, portal=DOC_MEMBER).jobs()) == 1


def test_a_second_uninstall_delivery_changes_nothing(app) -> None:
    assert _deliver(app, body("ONAPPUNINSTALL.form")).status_code == 200
    before = raw_installation_rows(app.extensions["b24app"].engine)

    again = _deliver(app, body("ONAPPUNINSTALL.form"))

    assert again.status_code == 401
    assert raw_installation_rows(app.extensions["b24app"].engine) == before


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"event=ONCRMLEADADD",
        b"event=ONCRMLEADADD&auth%5Bmember_id%5D=m1&data%5BFIELDS%5D%5BID%5D=abc",
        b'{"event": "ONCRMLEADADD", "auth": {"member_id": "m1"}}',
        b"\xff\xfe\xfd",
        b"event=ONCRMLEADADD&auth%5Bmember_id%5D="
        + DOC_MEMBER.encode()
        + b"&auth%5Bmember_id%5D=x",
    ],
)
def test_a_malformed_delivery_is_400_and_enqueues_nothing(app, jobs, raw: bytes) -> None:
    response = _deliver(app, raw)
    assert response.status_code == 400
    assert response.get_json()["error"] == "malformed_event"
    assert jobs.lead_events == []


def test_a_body_over_the_size_cap_is_refused(app, jobs) -> None:
    response = _deliver(app, b"event=X&pad=" + b"x" * (2 * 1024 * 1024))
    assert response.status_code in (400, 413)
    assert jobs.lead_events == []


def test_only_post_is_served(app) -> None:
    assert app.test_client().get("/events").status_code == 405


@responses.activate
def test_onappinstall_installs_after_the_oauth_server_vouches(tmp_path, jobs) -> None:
    app = create_app(settings_for(tmp_path), jobs=jobs)
    portal_rest = "https://some-domain.bitrix24.com/rest/"
    refresh = doc("oauth.token.refresh") | {
        "client_endpoint": portal_rest,
        "expires": int(time.time()) + 3600,
    }
    responses.get(re.compile(r"https://oauth\.bitrix\.info/oauth/token/.*"), json=refresh)
    responses.post(portal_rest + "app.info", json=doc("app.info"))
    responses.post(portal_rest + "event.get", json={"result": []})
    bound = {f"bind{i}": True for i in range(3)}
    responses.post(portal_rest + "batch", json={"result": {"result": bound, "result_error": []}})

    response = _deliver(app, body("ONAPPINSTALL.form"))

    assert response.status_code == 200 and response.get_json()["action"] == "installed"
    store = app.extensions["b24app"].installations
    assert store.verify_application_token(DOC_MEMBER, DOC_APP_TOKEN)
    assert store.get_installation(DOC_MEMBER).access_token == refresh["access_token"]
    assert f"{PUBLIC_URL}/events".replace(":", "%3A").replace("/", "%2F") in str(
        responses.calls[-1].request.body
    )
