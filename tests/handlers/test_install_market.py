"""`/install`: the Market installer request is proven at the OAuth server, stored encrypted, and
its event handlers bound once, however often it comes."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from b24app.store.installations import ACTIVE
from handlers import create_app
from sandbox import Sandbox
from tests.scenarios.market_app import (
    DOC_MEMBER,
    EVENT_FIXTURES,
    PUBLIC_URL,
    RecordingJobs,
    body,
    doc,
    free_port,
    history_events,
    market_request,
    post_install,
    settings_for,
)

WANTED = ["ONCRMLEADADD", "ONCRMLEADUPDATE", "ONAPPUNINSTALL"]
PORTAL_REST = "https://portal.bitrix24.com/rest/"
TOKEN_URL = re.compile(r"https://oauth\.bitrix\.info/oauth/token/.*")


def _bindings(ctx, member_id: str) -> list[tuple[str, str]]:
    rows = ctx.client(member_id).call("event.get").result
    return sorted((row["event"], row["handler"]) for row in rows)


@pytest.fixture
def portal():
    with Sandbox() as running:
        yield running


@pytest.fixture
def app(tmp_path, portal):
    return create_app(settings_for(tmp_path, portal), jobs=RecordingJobs())


# -- the documented request, against mocked Bitrix24 servers ----------------------------------


def _mock_bitrix24(*, bound: list[dict] | None = None, batch: dict | None = None) -> None:
    refresh = doc("oauth.token.refresh") | {"expires": int(time.time()) + 3600}
    responses.get(TOKEN_URL, json=refresh)
    responses.post(PORTAL_REST + "app.info", json=doc("app.info"))
    responses.post(PORTAL_REST + "event.get", json={"result": bound or []})
    default = {"result": {"result": {f"bind{i}": True for i in range(3)}, "result_error": []}}
    responses.post(PORTAL_REST + "batch", json=batch or default)


def _post_documented(tmp_path):
    settings = settings_for(tmp_path)
    app = create_app(settings, jobs=RecordingJobs())
    query = (EVENT_FIXTURES / "install.query").read_text()
    response = app.test_client().post(
        f"/install?{query}",
        data=body("install.form"),
        content_type="application/x-www-form-urlencoded",
    )
    return app, settings, response


def _sent(url_part: str) -> list:
    return [call.request for call in responses.calls if url_part in call.request.url]


@responses.activate
def test_the_documented_request_is_proven_stored_and_bound(tmp_path) -> None:
    _mock_bitrix24()
    app, settings, response = _post_documented(tmp_path)

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<script src="//api.bitrix24.com/api/v1/"></script>' in page
    assert "BX24.installFinish()" in page

    (refresh,) = _sent("/oauth/token/")
    query = parse_qs(urlsplit(refresh.url).query)
    assert query["grant_type"] == ["refresh_token"]
    assert query["refresh_token"] == ["2lg086mxijlpvwh0h7r4nl19udm4try5"]  # the form's REFRESH_ID
    assert query["client_id"] == [settings.client_id]

    stored = app.extensions["b24app"].installations.get_installation(DOC_MEMBER)
    assert stored.status == ACTIVE
    assert stored.client_endpoint == PORTAL_REST  # the OAuth server's word, not the form's
    assert stored.access_token == doc("oauth.token.refresh")["access_token"]  # the proven pair
    assert stored.application_token == "ec1b2074a9d3f5c81b6e40d27a95cf38"

    methods = [urlsplit(call.request.url).path.rsplit("/", 1)[-1] for call in responses.calls]
    assert methods == ["", "app.info", "event.get", "batch"]  # token, confirm, list, bind
    (batch,) = _sent("/rest/batch")
    commands = json.loads(batch.body)["cmd"]
    assert sorted(commands.values()) == sorted(
        f"event.bind?event={event}&handler={PUBLIC_URL.replace(':', '%3A').replace('/', '%2F')}"
        "%2Fevents"
        for event in WANTED
    )


@responses.activate
def test_handlers_already_bound_are_not_bound_again(tmp_path) -> None:
    handler = f"{PUBLIC_URL}/events"
    bound = [{"event": e, "handler": handler, "auth_type": "0", "offline": 0} for e in WANTED]
    _mock_bitrix24(bound=bound)
    _, _, response = _post_documented(tmp_path)

    assert response.status_code == 200
    assert _sent("/rest/batch") == []


@responses.activate
def test_handler_already_exists_counts_as_bound(tmp_path) -> None:
    exists = {"error": "ERROR_HANDLER_ALREADY_EXIST", "error_description": "Handler already binded"}
    results = {"bind0": True, "bind2": True}
    _mock_bitrix24(batch={"result": {"result": results, "result_error": {"bind1": exists}}})
    _, _, response = _post_documented(tmp_path)

    assert response.status_code == 200
    assert "ONCRMLEADUPDATE" in response.get_data(as_text=True)


@responses.activate
def test_a_binding_failure_keeps_the_installation_and_says_so(tmp_path) -> None:
    denied = {"error": "ACCESS_DENIED", "error_description": "Access denied"}
    _mock_bitrix24(
        batch={"result": {"result": [], "result_error": {f"bind{i}": denied for i in range(3)}}}
    )
    app, _, response = _post_documented(tmp_path)

    assert response.status_code == 502
    page = response.get_data(as_text=True)
    assert "installFinish" not in page and "event handlers could not be bound" in page
    assert app.extensions["b24app"].installations.get_installation(DOC_MEMBER) is not None


# -- against the sandbox portal ---------------------------------------------------------------


def test_sandbox_install_binds_the_three_events(app, portal) -> None:
    grant = portal.install_app()
    response = post_install(app.test_client(), *market_request(portal, grant))

    assert response.status_code == 200
    ctx = app.extensions["b24app"]
    stored = ctx.installations.get_installation(grant["member_id"])
    assert stored.client_endpoint == portal.client_endpoint
    assert stored.access_token != grant["access_token"]  # the pair the proof's refresh issued
    assert history_events(ctx.engine, grant["member_id"]) == ["installed"]
    handler = f"{PUBLIC_URL}/events"
    assert _bindings(ctx, grant["member_id"]) == sorted((e, handler) for e in WANTED)


def test_a_repeated_request_changes_nothing(app, portal) -> None:
    grant = portal.install_app()
    request = market_request(portal, grant)
    post_install(app.test_client(), *request)
    refreshes = portal.stats()["refreshes"]

    again = post_install(app.test_client(), *request)

    assert again.status_code == 200 and "BX24.installFinish()" in again.get_data(as_text=True)
    ctx = app.extensions["b24app"]
    assert history_events(ctx.engine, grant["member_id"]) == ["installed"]
    assert portal.stats()["refreshes"] == refreshes
    assert len(_bindings(ctx, grant["member_id"])) == 3


def test_an_app_update_stores_the_fresh_tokens_and_binds_again(app, portal) -> None:
    grant = portal.install_app()
    post_install(app.test_client(), *market_request(portal, grant))
    portal.hub.forget_bindings()  # Bitrix24 drops an app's handlers when it is updated
    pair = portal.authority.issue(1)  # the installer of the new version gets fresh tokens
    fresh = grant | {"access_token": pair.access_token, "refresh_token": pair.refresh_token}

    response = post_install(app.test_client(), *market_request(portal, fresh))

    assert response.status_code == 200
    ctx = app.extensions["b24app"]
    assert history_events(ctx.engine, grant["member_id"]) == ["installed", "reinstalled"]
    assert len(_bindings(ctx, grant["member_id"])) == 3


def test_a_reinstall_replaces_the_tokens_and_binds_again(app, portal) -> None:
    first = portal.install_app()
    post_install(app.test_client(), *market_request(portal, first))
    second = portal.install_app()  # Bitrix24 drops the handlers and issues a new app token

    response = post_install(app.test_client(), *market_request(portal, second))

    assert response.status_code == 200
    ctx = app.extensions["b24app"]
    store = ctx.installations
    assert store.verify_application_token(second["member_id"], second["application_token"])
    assert not store.verify_application_token(first["member_id"], first["application_token"])
    assert history_events(ctx.engine, second["member_id"]) == ["installed", "reinstalled"]
    assert len(_bindings(ctx, second["member_id"])) == 3


def test_get_explains_the_page_without_finishing_anything(app) -> None:
    response = app.test_client().get("/install")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "installFinish" not in page and "api.bitrix24.com" not in page
    assert "Bitrix24 Market" in page


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("member_id", "", "member_id"),
        ("REFRESH_ID", "", "refresh token"),
        ("AUTH_ID", "", "access token"),
        ("APPLICATION_TOKEN", "", "application token"),
        ("member_id", "x" * 65, "member_id"),
        ("DOMAIN", "evil.example.com/path?x=1", "DOMAIN"),
    ],
)
def test_an_incomplete_request_is_400_and_stores_nothing(
    app, portal, field, value, message
) -> None:
    grant = portal.install_app()
    query, form = market_request(portal, grant)
    (query if field == "DOMAIN" else form)[field] = value

    response = post_install(app.test_client(), query, form)

    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert app.extensions["b24app"].installations.list_installations() == []
    assert portal.stats()["oauth_requests"] == 0


def test_an_unreachable_oauth_server_is_503_and_stores_nothing(tmp_path, portal) -> None:
    settings = settings_for(tmp_path, portal, oauth_server=f"http://127.0.0.1:{free_port()}")
    app = create_app(settings, jobs=RecordingJobs())
    grant = portal.install_app()

    response = post_install(app.test_client(), *market_request(portal, grant))

    assert response.status_code == 503
    assert app.extensions["b24app"].installations.list_installations() == []


def test_without_a_public_url_nothing_is_stored(tmp_path, portal) -> None:
    app = create_app(settings_for(tmp_path, portal, public_url=None), jobs=RecordingJobs())
    grant = portal.install_app()

    response = post_install(app.test_client(), *market_request(portal, grant))

    assert response.status_code == 500
    assert "misconfigured" in response.get_data(as_text=True)
    assert app.extensions["b24app"].installations.list_installations() == []


def test_the_page_speaks_brazilian_portuguese_for_lang_br(app) -> None:
    response = app.test_client().get("/install?LANG=br")
    page = response.get_data(as_text=True)
    assert 'lang="pt-BR"' in page and "Instale o aplicativo" in page


def test_request_values_are_never_echoed_unescaped(app, portal) -> None:
    grant = portal.install_app()
    query, form = market_request(portal, grant)
    query["LANG"] = '"><script>alert(1)</script>'
    form["member_id"] = "<script>alert(2)</script>"

    response = post_install(app.test_client(), query, form)

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "<script>alert" not in page and "alert(" not in page
