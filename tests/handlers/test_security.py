"""Security of the Market app's entry points: forged events and installs change nothing, tokens
go nowhere a request names, and no secret reaches a log line, a response or the database file."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import pytest
from sqlalchemy import select

from b24app.store import installations as inst
from b24app.store.installations import installation_history
from b24app.store.portal_settings import portal_settings
from handlers import create_app
from handlers.devserver import ThreadedServer
from sandbox import Sandbox
from tests.rest.sandbox_app import install_into
from tests.scenarios.market_app import (
    DOC_MEMBER,
    RecordingJobs,
    event_form,
    market_request,
    post_install,
    raw_installation_rows,
    settings_for,
)


@pytest.fixture
def portals():
    """Two portals: `a` installs the app through /install, `b` is someone else's."""
    with Sandbox(seed=1) as a, Sandbox(seed=2) as b:
        yield a, b


@pytest.fixture
def jobs() -> RecordingJobs:
    return RecordingJobs()


@pytest.fixture
def app(tmp_path, portals, jobs):
    a, _ = portals
    return create_app(settings_for(tmp_path, a), jobs=jobs)


def _store(app) -> inst.InstallationStore:
    return app.extensions["b24app"].installations


def _install_a(app, a: Sandbox) -> dict[str, Any]:
    grant = a.install_app()
    assert post_install(app.test_client(), *market_request(a, grant)).status_code == 200
    return grant


def _install_b_directly(app, b: Sandbox) -> dict[str, Any]:
    """Portal b's installation, stored as if b had installed the app too."""
    return install_into(_store(app), b)


def _snapshot(app) -> dict[str, list]:
    engine = app.extensions["b24app"].engine
    with engine.connect() as conn:
        return {
            "installations": raw_installation_rows(engine),
            "history": [tuple(r) for r in conn.execute(select(installation_history))],
            "settings": [tuple(r) for r in conn.execute(select(portal_settings))],
        }


def _deliver(app, form: dict[str, str]):  # type: ignore[no-untyped-def]
    return app.test_client().post("/events", data=form)


# -- forged events --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "forge",
    ["wrong_token", "missing_token", "empty_token", "unknown_member", "other_portals_token"],
)
@pytest.mark.parametrize("event", ["ONCRMLEADADD", "ONAPPUNINSTALL"])
def test_forged_events_are_401_and_change_nothing(app, portals, jobs, forge, event) -> None:
    a, b = portals
    mine = _install_a(app, a)
    theirs = _install_b_directly(app, b)
    app.extensions["b24app"].portal_settings.save_policy(mine["member_id"], {"x": 1}, by="1")
    member_id, token = {
        "wrong_token": (mine["member_id"], secrets.token_hex(16)),
        "missing_token": (mine["member_id"], None),
        "empty_token": (mine["member_id"], ""),
        "unknown_member": (secrets.token_hex(16), mine["application_token"]),
        "other_portals_token": (mine["member_id"], theirs["application_token"]),
    }[forge]
    before = _snapshot(app)

    response = _deliver(
        app,
        event_form(event, member_id=member_id, application_token=token, lead_id=7, clean=True),
    )

    assert response.status_code == 401
    assert response.get_json() == {"error": "rejected"}
    assert jobs.lead_events == []
    assert _snapshot(app) == before


def test_the_genuine_event_passes_where_the_forgeries_fail(app, portals, jobs) -> None:
    a, b = portals
    mine = _install_a(app, a)
    theirs = _install_b_directly(app, b)
    for grant in (mine, theirs):
        form = event_form(
            "ONCRMLEADADD",
            member_id=grant["member_id"],
            application_token=grant["application_token"],
            lead_id=7,
        )
        assert _deliver(app, form).status_code == 200
    assert jobs.lead_events == [
        (mine["member_id"], 7, "ONCRMLEADADD"),
        (theirs["member_id"], 7, "ONCRMLEADADD"),
    ]


def test_replay_after_uninstall_is_401_and_changes_nothing(app, portals, jobs) -> None:
    a, _ = portals
    grant = _install_a(app, a)
    token, member_id = grant["application_token"], grant["member_id"]
    lead = event_form("ONCRMLEADADD", member_id=member_id, application_token=token, lead_id=3)
    uninstall = event_form("ONAPPUNINSTALL", member_id=member_id, application_token=token)
    assert _deliver(app, lead).status_code == 200
    assert _deliver(app, uninstall).status_code == 200
    before = _snapshot(app)

    assert _deliver(app, lead).status_code == 401
    assert _deliver(app, uninstall).status_code == 401

    assert jobs.lead_events == [(member_id, 3, "ONCRMLEADADD")]  # only the one before
    assert _snapshot(app) == before


def test_events_never_make_the_app_call_the_address_they_name(app, portals, jobs) -> None:
    a, _ = portals
    grant = _install_a(app, a)
    hits: list[str] = []

    def trap(environ, start_response):  # type: ignore[no-untyped-def]
        hits.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    with ThreadedServer() as attacker:
        attacker.mount(trap)
        domain = attacker.url.removeprefix("http://")
        for event in ("ONCRMLEADADD", "ONAPPUNINSTALL"):
            form = event_form(
                event,
                member_id=grant["member_id"],
                application_token=grant["application_token"],
                lead_id=5,
                domain=domain,
            )
            assert _deliver(app, form).status_code == 200
    assert hits == []
    stored = _store(app).get_installation(grant["member_id"])
    assert stored.client_endpoint == a.client_endpoint and stored.domain == a.domain


# -- forged installs ------------------------------------------------------------------------


def test_a_real_token_cannot_claim_another_portal(app, portals) -> None:
    a, b = portals
    victim = _install_b_directly(app, b)
    before = _snapshot(app)
    grant = a.install_app()
    query, form = market_request(a, grant)
    form["member_id"] = victim["member_id"]  # a's genuine tokens, b's identity
    query["DOMAIN"] = b.domain

    response = post_install(app.test_client(), query, form)

    assert response.status_code == 403
    assert "installFinish" not in response.get_data(as_text=True)
    assert _snapshot(app) == before


@pytest.mark.parametrize("forge", ["random_tokens", "wrong_domain", "doc_example"])
def test_a_forged_install_stores_nothing(app, portals, forge) -> None:
    a, _ = portals
    grant = a.install_app()
    query, form = market_request(a, grant)
    if forge == "random_tokens":
        form["AUTH_ID"], form["REFRESH_ID"] = secrets.token_hex(16), secrets.token_hex(16)
    elif forge == "wrong_domain":
        query["DOMAIN"] = "127.0.0.1:9"
    else:  # the documented example, replayed as is
        form |= {"AUTH_ID": "ahodg4h37n89vo17gbkgq0x1l825nnb5", "member_id": DOC_MEMBER}
        form["REFRESH_ID"] = "2lg086mxijlpvwh0h7r4nl19udm4try5"

    response = post_install(app.test_client(), query, form)

    assert response.status_code == 403
    assert _store(app).list_installations() == []
    assert raw_installation_rows(app.extensions["b24app"].engine) == []


def test_a_forged_onappinstall_stores_nothing(app, portals) -> None:
    a, _ = portals
    form = event_form("ONAPPINSTALL", member_id=a.member_id, application_token="f" * 32)
    form["auth[refresh_token]"] = secrets.token_hex(16)

    response = _deliver(app, form)

    assert response.status_code == 401
    assert _store(app).list_installations() == []


def test_install_tokens_never_go_where_the_request_says(app, portals) -> None:
    a, _ = portals
    hits: list[str] = []

    def trap(environ, start_response):  # type: ignore[no-untyped-def]
        hits.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"result": {}}']

    with ThreadedServer() as attacker:
        attacker.mount(trap)
        grant = a.install_app()
        query, form = market_request(a, grant)
        form["SERVER_ENDPOINT"] = f"{attacker.url}/rest/"
        assert post_install(app.test_client(), query, form).status_code == 200
        query["DOMAIN"] = attacker.url.removeprefix("http://")
        assert post_install(app.test_client(), query, form).status_code in (200, 403)
    assert hits == []
    stored = _store(app).get_installation(grant["member_id"])
    assert stored.server_endpoint == a.server_endpoint and stored.domain == a.domain


# -- secrets stay secret --------------------------------------------------------------------


def test_no_secret_in_logs_responses_or_the_database_file(tmp_path, portals, jobs, caplog) -> None:
    a, _ = portals
    caplog.set_level(logging.DEBUG)
    settings = settings_for(tmp_path, a, name="secret.db")
    app = create_app(settings, jobs=jobs)
    client = app.test_client()
    grant = a.install_app()
    answers = [post_install(client, *market_request(a, grant))]
    member_id, token = grant["member_id"], grant["application_token"]
    for form in (
        event_form("ONCRMLEADADD", member_id=member_id, application_token=token, lead_id=1),
        event_form("ONCRMLEADADD", member_id=member_id, application_token=token[::-1], lead_id=1),
        event_form("ONAPPINSTALL", member_id=member_id, application_token=token[:-1] + "x"),
    ):
        answers.append(client.post("/events", data=form))
    stored = _store(app).get_installation(member_id)
    secrets_ = {
        grant["access_token"],
        grant["refresh_token"],
        token,
        token[::-1],
        stored.access_token,
        stored.refresh_token,
        settings.client_secret,
    }
    assert all(len(s) >= 16 for s in secrets_)

    logged = caplog.text
    assert [s for s in secrets_ if s in logged] == []
    for answer in answers:
        text = answer.get_data(as_text=True) + str(answer.headers)
        assert [s for s in secrets_ if s in text] == []
    app.extensions["b24app"].engine.dispose()
    stored_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("secret.db*"))
    assert stored_bytes  # the database file (and its WAL) was read
    assert [s for s in secrets_ if s.encode() in stored_bytes] == []
    row = raw_installation_rows(app.extensions["b24app"].engine)[0]
    assert row["access_token"] != stored.access_token and row["access_token"].startswith("gAAAAA")
