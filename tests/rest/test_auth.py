"""OAuth: refresh once per portal, persist before retrying, classify failures, never loop;
portal renames; secrets never shown."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import pytest
from responses import matchers

from b24app import errors as e
from b24app.config import RateLimit
from b24app.rest import OAuthServer, PortalClient, Tokens
from b24app.rest.client import REFRESHES_PER_CALL
from b24app.services import installation_client
from b24app.store import installations as inst
from b24app.store.crypto import Cipher
from b24app.store.db import make_engine, migrate
from tests.rest.conftest import WEBHOOK, fixture, in_threads, make_client, sent_json

OAUTH = "https://oauth.example.test"
TOKEN_URL = OAUTH + "/oauth/token/"
ENDPOINT = "https://portal.bitrix24.com/rest/"
MEMBER = "a223c6b3710f85df22e9377d6c4f7553"


def oauth_server(clock) -> OAuthServer:
    return OAuthServer(
        base_url=OAUTH, client_id="app.123", client_secret="cl1ent-s3cret", clock=clock
    )


def grant(access: str, refresh: str, endpoint: str = ENDPOINT, **extra: Any) -> dict[str, Any]:
    return dict(
        fixture("oauth.token.refresh"),
        access_token=access,
        refresh_token=refresh,
        client_endpoint=endpoint,
        member_id=MEMBER,
        **extra,
    )


def refresh_matcher(refresh_token: str):
    return matchers.query_param_matcher(
        {
            "grant_type": "refresh_token",
            "client_id": "app.123",
            "client_secret": "cl1ent-s3cret",
            "refresh_token": refresh_token,
        }
    )


def memory_client(clock, *, on_rotate=None, expires_at=None) -> PortalClient:
    tokens = Tokens(
        access_token="old-access",
        refresh_token="old-refresh",
        expires_at=expires_at or clock.now() + 3600,
        client_endpoint=ENDPOINT,
        member_id=MEMBER,
    )
    return PortalClient.from_tokens(
        tokens,
        oauth=oauth_server(clock),
        on_rotate=on_rotate,
        clock=clock,
        rate=RateLimit(1000.0, 1000),
        rng=random.Random(1),
    )


EXPIRED = (fixture("error.expired_token"), 401)


def test_expired_token_is_refreshed_once_and_the_call_retried(rsps, clock):
    rotated: list[str] = []
    rsps.add("POST", ENDPOINT + "crm.lead.get", json=EXPIRED[0], status=401)
    rsps.add(
        "GET",
        TOKEN_URL,
        json=grant("new-access", "new-refresh"),
        match=[refresh_matcher("old-refresh")],
    )
    rsps.add("POST", ENDPOINT + "crm.lead.get", json={"result": {"ID": "1"}})
    client = memory_client(clock, on_rotate=lambda t: rotated.append(t.access_token))
    assert client.call("crm.lead.get", {"id": 1}).result == {"ID": "1"}
    assert sent_json(rsps.calls[0]) == {"id": 1, "auth": "old-access"}
    assert sent_json(rsps.calls[2]) == {"id": 1, "auth": "new-access"}
    assert rotated == ["new-access"]
    assert client.requests_made == 2  # REST requests; the refresh went to the OAuth server


def test_a_token_expiring_again_and_again_is_refreshed_a_bounded_number_of_times(rsps, clock):
    rsps.add("POST", ENDPOINT + "crm.lead.get", json=EXPIRED[0], status=401)
    rsps.add("GET", TOKEN_URL, json=grant("new-access", "new-refresh"))
    rsps.add("POST", ENDPOINT + "crm.lead.get", json=EXPIRED[0], status=401)
    client = memory_client(clock)
    with pytest.raises(e.ExpiredToken):
        client.call("crm.lead.get", {"id": 1})
    posts = sum(c.request.method == "POST" for c in rsps.calls)
    refreshes = sum(c.request.method == "GET" for c in rsps.calls)
    assert (posts, refreshes) == (1 + REFRESHES_PER_CALL, REFRESHES_PER_CALL)  # no loop


def test_a_pair_that_lapses_again_during_its_refresh_is_refreshed_again(rsps, clock):
    """An expiry storm (every token expired again while the refresh ran): the call refreshes
    once more instead of failing the batch and the job with it."""
    rsps.add("POST", ENDPOINT + "crm.lead.get", json=EXPIRED[0], status=401)
    rsps.add("GET", TOKEN_URL, json=grant("new-access", "new-refresh"))
    rsps.add("POST", ENDPOINT + "crm.lead.get", json=EXPIRED[0], status=401)
    rsps.add("GET", TOKEN_URL, json=grant("third-access", "third-refresh"))
    rsps.add("POST", ENDPOINT + "crm.lead.get", json={"result": {"ID": "1"}})
    client = memory_client(clock)
    assert client.call("crm.lead.get", {"id": 1}).result == {"ID": "1"}
    sent = [sent_json(c)["auth"] for c in rsps.calls if c.request.method == "POST"]
    assert sent == ["old-access", "new-access", "third-access"]


def test_invalid_grant_is_a_clear_error_and_no_loop(rsps, clock):
    rsps.add("POST", ENDPOINT + "crm.lead.get", json=EXPIRED[0], status=401)
    rsps.add(
        "GET",
        TOKEN_URL,
        status=400,
        json={"error": "invalid_grant", "error_description": "Invalid grant old-refresh"},
    )
    client = memory_client(clock)
    with pytest.raises(e.InvalidGrant) as caught:
        client.call("crm.lead.get", {"id": 1})
    assert len(rsps.calls) == 2
    assert "old-refresh" not in str(caught.value)
    assert "cl1ent-s3cret" not in str(caught.value)


def test_proactive_refresh_when_expires_has_passed(rsps, clock):
    rsps.add("GET", TOKEN_URL, json=grant("new-access", "new-refresh"))
    rsps.add("POST", ENDPOINT + "profile", json={"result": {"ID": 1}})
    client = memory_client(clock, expires_at=clock.now() - 1)
    client.call("profile")
    assert sent_json(rsps.calls[1])["auth"] == "new-access"


def test_threads_share_one_refresh(rsps, clock):
    valid = {"token": "old-access"}

    def portal(request):
        body = json.loads(request.body)
        if body["auth"] != valid["token"]:
            return 401, {}, json.dumps(EXPIRED[0])
        return 200, {}, json.dumps({"result": True})

    def oauth(request):
        valid["token"] = "new-access"
        return 200, {}, json.dumps(grant("new-access", "new-refresh"))

    rsps.add_callback("POST", ENDPOINT + "crm.lead.get", callback=portal)
    rsps.add_callback("GET", TOKEN_URL, callback=oauth)
    client = memory_client(clock)
    client.call("crm.lead.get", {"id": 0})
    valid["token"] = "expired-everywhere"  # the portal now rejects what every thread holds
    errors: list[Exception] = []

    def worker() -> None:
        try:
            client.call("crm.lead.get", {"id": 1})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    in_threads(worker, 8)
    assert errors == []
    assert sum(1 for c in rsps.calls if c.request.method == "GET") == 1


# -- stored installations ------------------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> inst.InstallationStore:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate(url)
    store = inst.InstallationStore(make_engine(url), Cipher(Cipher.generate_key()))
    store.save_installation(
        inst.Installation(
            member_id=MEMBER,
            domain="portal.bitrix24.com",
            client_endpoint=ENDPOINT,
            access_token="old-access",
            refresh_token="old-refresh",
            application_token="app-tok",
            expires_at=2_000_000_000,
            scope="crm",
        )
    )
    return store


def stored_client(store, clock) -> PortalClient:
    from b24app.config import Settings

    settings = Settings(
        client_id="app.123",
        client_secret="cl1ent-s3cret",
        oauth_server=OAUTH,
        rate_limit=RateLimit(1000.0, 1000),
    )
    return installation_client(store, MEMBER, settings=settings, clock=clock, rng=random.Random(1))


def test_stored_tokens_are_persisted_before_the_retry(rsps, clock, store):
    seen_in_db: list[str] = []

    def retried(request):
        seen_in_db.append(store.get_installation(MEMBER).access_token)
        return 200, {}, json.dumps({"result": 5})

    rsps.add("POST", ENDPOINT + "crm.lead.add", json=EXPIRED[0], status=401)
    rsps.add(
        "GET",
        TOKEN_URL,
        json=grant("new-access", "new-refresh", scope="crm,user"),
        match=[refresh_matcher("old-refresh")],
    )
    rsps.add_callback("POST", ENDPOINT + "crm.lead.add", callback=retried)
    client = stored_client(store, clock)
    assert client.call("crm.lead.add", {"fields": {"TITLE": "x"}}).result == 5
    assert seen_in_db == ["new-access"]
    saved = store.get_installation(MEMBER)
    assert (saved.refresh_token, saved.scope, saved.status) == ("new-refresh", "crm,user", "active")
    assert saved.refreshed_at is not None
    assert [h.event for h in store.history(MEMBER)] == ["installed", "rotated"]


def test_tokens_rotated_elsewhere_are_used_without_refreshing(rsps, clock, store):
    client = stored_client(store, clock)
    rsps.add("POST", ENDPOINT + "profile", json={"result": 1})
    client.call("profile")  # caches old-access
    store.rotate_tokens(
        MEMBER, access_token="other-access", refresh_token="other-refresh", expires_at=2_000_000_000
    )
    rsps.add("POST", ENDPOINT + "profile", json=EXPIRED[0], status=401)
    rsps.add("POST", ENDPOINT + "profile", json={"result": 2})
    assert client.call("profile").result == 2
    assert sent_json(rsps.calls[2])["auth"] == "other-access"
    assert store.get_installation(MEMBER).refresh_token == "other-refresh"


def test_a_refreshed_token_expired_again_adopts_a_newer_stored_one(rsps, clock, store):
    def expired_and_rotated_elsewhere(request):
        store.rotate_tokens(
            MEMBER,
            access_token="third-access",
            refresh_token="third-refresh",
            expires_at=2_000_000_000,
        )
        return 401, {}, json.dumps(EXPIRED[0])

    rsps.add("POST", ENDPOINT + "crm.lead.list", json=EXPIRED[0], status=401)
    rsps.add("GET", TOKEN_URL, json=grant("new-access", "new-refresh"))
    rsps.add_callback("POST", ENDPOINT + "crm.lead.list", callback=expired_and_rotated_elsewhere)
    rsps.add("POST", ENDPOINT + "crm.lead.list", json={"result": []})
    stored_client(store, clock).call("crm.lead.list")
    assert [sent_json(c)["auth"] for c in rsps.calls if c.request.method == "POST"] == [
        "old-access",
        "new-access",
        "third-access",
    ]
    assert sum(c.request.method == "GET" for c in rsps.calls) == 1


def test_invalid_token_rereads_the_store_once(rsps, clock, store):
    client = stored_client(store, clock)
    rsps.add("POST", ENDPOINT + "profile", json={"result": 1})
    client.call("profile")
    store.rotate_tokens(
        MEMBER, access_token="other-access", refresh_token="r", expires_at=2_000_000_000
    )
    rsps.add("POST", ENDPOINT + "profile", json=fixture("error.invalid_token"), status=401)
    rsps.add("POST", ENDPOINT + "profile", json={"result": 2})
    assert client.call("profile").result == 2
    rsps.add("POST", ENDPOINT + "profile", json=fixture("error.invalid_token"), status=401)
    with pytest.raises(e.AuthError, match="Unable to get application by token"):
        client.call("profile")  # nothing newer stored: no retry


@pytest.mark.parametrize(
    ("body", "cls", "status"),
    [
        (
            {"error": "invalid_grant", "error_description": "Invalid grant"},
            e.InvalidGrant,
            inst.REINSTALL_NEEDED,
        ),
        (
            {"error": "PORTAL_DELETED", "error_description": "Portal was deleted"},
            e.PortalDeleted,
            inst.DELETED,
        ),
        (fixture("oauth.error.PAYMENT_REQUIRED"), e.PaymentRequired, inst.PAYMENT_REQUIRED),
    ],
)
def test_refresh_failures_mark_the_installation_and_stop(rsps, clock, store, body, cls, status):
    rsps.add("POST", ENDPOINT + "crm.lead.list", json=EXPIRED[0], status=401)
    rsps.add("GET", TOKEN_URL, json=body, status=400)
    client = stored_client(store, clock)
    with pytest.raises(cls):
        client.call("crm.lead.list")
    assert store.get_installation(MEMBER).status == status
    assert store.history(MEMBER)[-1].detail == f"active -> {status}: {body['error']}"
    assert [i.member_id for i in store.list_installations(status=inst.ACTIVE)] == []
    # a later call is refused at once: no request, no refresh
    with pytest.raises(cls, match=f"is {status}; not calling it"):
        stored_client(store, clock).call("crm.lead.list")
    assert len(rsps.calls) == 2


def test_portal_rename_is_followed_for_post_and_stored(rsps, clock, store):
    new = "https://renamed.bitrix24.com/rest/"
    rsps.add(
        "POST", ENDPOINT + "crm.deal.add", status=302, headers={"Location": new + "crm.deal.add"}
    )
    rsps.add("POST", new + "crm.deal.add", json={"result": 9})
    rsps.add("POST", new + "profile", json={"result": 1})
    client = stored_client(store, clock)
    assert client.call("crm.deal.add", {"fields": {"TITLE": "x"}}).result == 9
    assert sent_json(rsps.calls[1]) == {"fields": {"TITLE": "x"}, "auth": "old-access"}
    saved = store.get_installation(MEMBER)
    assert (saved.client_endpoint, saved.domain) == (new, "renamed.bitrix24.com")
    assert store.history(MEMBER)[-1].detail == "portal.bitrix24.com -> renamed.bitrix24.com"
    client.call("profile")  # goes straight to the new address
    assert store.find_installation("renamed.bitrix24.com").member_id == MEMBER


def test_webhook_rename_keeps_the_code_on_the_new_host(rsps, client):
    rsps.add(
        "POST",
        WEBHOOK + "crm.lead.list",
        status=301,
        headers={"Location": "https://renamed.bitrix24.com/rest/1/s3cretc0de/crm.lead.list"},
    )
    rsps.add(
        "POST", "https://renamed.bitrix24.com/rest/1/s3cretc0de/crm.lead.list", json={"result": []}
    )
    assert client.call("crm.lead.list", {"filter": {"ID": 1}}).result == []
    assert sent_json(rsps.calls[1]) == {"filter": {"ID": 1}}
    assert repr(client) == "PortalClient(WebhookAuth(https://renamed.bitrix24.com/rest/1/***/))"


def test_a_redirect_outside_the_rest_api_is_refused(rsps, client):
    rsps.add(
        "POST",
        WEBHOOK + "crm.lead.list",
        status=302,
        headers={"Location": "https://evil.example/collect"},
    )
    with pytest.raises(e.UnexpectedResponse, match="outside its REST API"):
        client.call("crm.lead.list")


# -- redaction ---------------------------------------------------------------------------


def test_secrets_never_reach_logs_messages_or_reprs(rsps, clock, store, caplog):
    caplog.set_level(logging.DEBUG, logger="b24app")
    rsps.add("POST", ENDPOINT + "crm.lead.add", json=EXPIRED[0], status=401)
    rsps.add("GET", TOKEN_URL, json=grant("new-access", "new-refresh"))
    rsps.add("POST", ENDPOINT + "crm.lead.add", json={"result": 5})
    client = stored_client(store, clock)
    client.call("crm.lead.add", {"fields": {"NAME": "Erasmus", "PHONE": [{"VALUE": "+1555"}]}})
    webhook = make_client(clock)
    rsps.add("POST", WEBHOOK + "batch", json={"result": {"result": {"a": 1}}})
    from b24app.rest import Command

    webhook.batch([Command("a", "crm.lead.add", {"fields": {"NAME": "Ignacius"}})])
    shown = (
        caplog.text
        + repr(client)
        + repr(webhook)
        + repr(store)
        + repr(store.get_installation(MEMBER))
        + repr(oauth_server(clock))
    )
    for secret in (
        "old-access",
        "new-access",
        "old-refresh",
        "new-refresh",
        "cl1ent-s3cret",
        "s3cretc0de",
        "app-tok",
    ):
        assert secret not in shown
    info = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert "Erasmus" not in info and "Ignacius" not in info and "+1555" not in info
    assert "crm.lead.add x1" in info  # method names and counts at INFO
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(line.startswith('batch {"halt"') for line in debug)  # the body, redacted


def test_the_debug_preview_of_a_body_is_built_only_when_debug_is_on(
    rsps, clock, caplog, monkeypatch
):
    from b24app.rest import Command
    from b24app.rest import client as client_module

    def refuse(value):
        raise AssertionError("a DEBUG preview was built at INFO")

    caplog.set_level(logging.INFO, logger="b24app")
    monkeypatch.setattr(client_module, "redact_data", refuse)
    rsps.add("POST", WEBHOOK + "batch", json={"result": {"result": {"a": 1}}})
    rsps.add("POST", WEBHOOK + "crm.lead.add", json={"result": 5})
    webhook = make_client(clock)
    assert webhook.batch([Command("a", "crm.lead.add", {"fields": {"NAME": "I"}})]).results
    assert webhook.call("crm.lead.add", {"fields": {"NAME": "I"}}).result == 5


def test_urllib3_request_lines_are_redacted_at_debug(caplog, clock):
    caplog.set_level(logging.DEBUG)
    from sandbox import Sandbox

    with Sandbox(seed_leads=1, plan="fast") as portal:
        client = PortalClient.from_webhook(portal.webhook_url)
        client.call("crm.lead.list")
        details = portal.install_app()
        server = OAuthServer(
            base_url=portal.oauth_server,
            client_id=portal.client_id,
            client_secret=portal.client_secret,
        )
        server.refresh(details["refresh_token"])
        code = portal.webhook_url.rstrip("/").rsplit("/", 1)[1]
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any("/rest/1/***/crm.lead.list" in line for line in lines)
    assert any("client_secret=***" in line for line in lines)
    for secret in (code, portal.client_secret, details["refresh_token"]):
        assert secret not in caplog.text
