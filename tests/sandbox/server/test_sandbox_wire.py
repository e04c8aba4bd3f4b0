"""The wire: PHP-style params from GET, forms and JSON; Bitrix24 envelopes, statuses, `time`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from sandbox.server import Sandbox
from sandbox.wire import parse_php_query

from .conftest import call


def test_parse_php_query_nests_brackets_like_php() -> None:
    parsed = parse_php_query(
        "fields%5BTITLE%5D=Hi+there&fields[PHONE][0][VALUE]=%2B49&fields[PHONE][0][VALUE_TYPE]=WORK"
        "&filter[%3EID]=5&select[]=ID&select[]=TITLE&order[ID]=ASC&start=50"
    )
    assert parsed == {
        "fields": {"TITLE": "Hi there", "PHONE": {"0": {"VALUE": "+49", "VALUE_TYPE": "WORK"}}},
        "filter": {">ID": "5"},
        "select": ["ID", "TITLE"],
        "order": {"ID": "ASC"},
        "start": "50",
    }


def test_parse_php_query_quirks() -> None:
    # PHP: a raw "+" is a space; dots in a top-level name become underscores; last value wins;
    # keys without a base name are dropped.
    parsed = parse_php_query("phone=+49&a.b=1&x=1&x=2&[y]=3")
    assert parsed == {"phone": " 49", "a_b": "1", "x": "2"}
    assert parse_php_query("a[]=1&a[5]=2&a[]=3") == {"a": {"0": "1", "5": "2", "6": "3"}}


def test_get_form_and_json_give_identical_results(portal: Sandbox) -> None:
    url = portal.webhook_url + "crm.lead.list"
    by_json = requests.post(
        url,
        json={"filter": {">ID": 5}, "select": ["ID", "TITLE"], "order": {"ID": "ASC"}, "start": 50},
        timeout=10,
    )
    query = "filter[>ID]=5&select[]=ID&select[]=TITLE&order[ID]=ASC&start=50"
    by_get = requests.get(f"{url}?{query}", timeout=10)
    by_form = requests.post(
        url,
        data=query.replace(">", quote(">")),
        timeout=10,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    bodies = [r.json() for r in (by_json, by_get, by_form)]
    assert [r.status_code for r in (by_json, by_get, by_form)] == [200, 200, 200]
    results = [(b["result"], b.get("total"), b.get("next")) for b in bodies]
    assert results[0] == results[1] == results[2]
    assert [row["ID"] for row in bodies[0]["result"]][:2] == ["56", "57"]


def test_answer_envelope_has_result_total_next_and_time(portal: Sandbox) -> None:
    response = call(portal.webhook_url, "crm.lead.list.json", select=["ID"])
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert len(body["result"]) == 50
    assert body["total"] == 120
    assert body["next"] == 50
    time_keys = {
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
        "operating",
        "operating_reset_at",
    }
    assert set(body["time"]) == time_keys
    assert body["time"]["finish"] >= body["time"]["start"]
    assert isinstance(body["time"]["operating_reset_at"], int)
    # One 50-row list "takes" 0.055 s: under 0.1 s a call is not counted
    # (rest/lib/engine/access/loadlimiter.php:27,288-301,331).
    assert body["time"]["operating"] == 0


def test_wrong_webhook_code_is_401_invalid_credentials(portal: Sandbox) -> None:
    """rest/lib/apauth/auth.php:131-135: a webhook whose user/code pair is unknown answers
    INVALID_CREDENTIALS, 401 (OAuthException, rest/lib/oauthexception.php:14-24)."""
    response = call(f"{portal.base_url}/rest/1/wrongcode/", "crm.lead.list")
    assert response.status_code == 401
    assert response.json() == {
        "error": "INVALID_CREDENTIALS",
        "error_description": "Invalid request credentials",
    }
    assert response.headers["Content-Type"].startswith("application/json")


def test_wrong_webhook_code_under_knob_docs_is_no_auth_found(tmp_path: Path) -> None:
    """Knob webhook_auth_error=docs: the docs' system-errors table gives NO_AUTH_FOUND (401)
    for a wrong webhook code (api-reference/_includes/system-errors.md)."""
    with Sandbox(knobs={"webhook_auth_error": "docs"}, db=str(tmp_path / "p.db")) as portal:
        response = call(f"{portal.base_url}/rest/1/wrongcode/", "profile")
    assert response.status_code == 401
    assert response.json() == {
        "error": "NO_AUTH_FOUND",
        "error_description": "Wrong authorization data",
    }


def test_webhook_of_another_user_id_is_refused(portal: Sandbox) -> None:
    response = call(f"{portal.base_url}/rest/2/{portal.webhook_code}/", "profile")
    assert response.status_code == 401


def test_unknown_method_is_404(portal: Sandbox) -> None:
    response = call(portal.webhook_url, "crm.lead.convert")
    assert response.status_code == 404
    assert response.json()["error"] == "ERROR_METHOD_NOT_FOUND"


def test_oauth_route_without_auth_is_401(portal: Sandbox) -> None:
    response = requests.post(f"{portal.base_url}/rest/profile", json={}, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"] == "NO_AUTH_FOUND"


def test_method_names_are_case_insensitive(portal: Sandbox) -> None:
    response = call(portal.webhook_url, "CRM.Settings.Mode.Get")
    assert response.status_code == 200
    assert response.json()["result"] == 1


def test_invalid_json_body_counts_as_no_params(portal: Sandbox) -> None:
    # PHP decodes nothing from a broken JSON body; the query string still applies.
    response = requests.post(
        portal.webhook_url + "crm.lead.list?start=100",
        data="{broken",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    body = response.json()
    assert response.status_code == 200
    assert len(body["result"]) == 20
    assert "next" not in body


def test_user_methods(portal: Sandbox) -> None:
    assert call(portal.webhook_url, "user.admin").json()["result"] is True
    current = call(portal.webhook_url, "user.current").json()["result"]
    assert current["ID"] == "1"
    assert current["NAME"] == "John"
    profile = call(portal.webhook_url, "profile").json()["result"]
    assert profile == {
        "ID": "1",
        "ADMIN": True,
        "NAME": "John",
        "LAST_NAME": "Smith",
        "PERSONAL_GENDER": "M",
        "TIME_ZONE": "",
    }
    ordinary = portal.add_webhook(user_id=3, scope="crm,user")
    assert call(ordinary, "user.admin").json()["result"] is False


@pytest.mark.parametrize("method", ["event.bind", "event.get", "event.offline.get"])
def test_app_only_methods_refuse_webhooks(portal: Sandbox, method: str) -> None:
    response = call(portal.webhook_url, method, event="ONCRMLEADADD", handler="http://x/")
    assert response.status_code == 403
    assert response.json() == {
        "error": "WRONG_AUTH_TYPE",
        "error_description": "Current authorization type is denied for this method",
    }


def test_app_info_needs_application_context(portal: Sandbox) -> None:
    response = call(portal.webhook_url, "app.info")
    assert response.status_code == 400
    assert response.json() == {
        "error": "ACCESS_DENIED",
        "error_description": "Access denied! Application context required",
    }


def test_webhook_without_crm_scope_gets_insufficient_scope(portal: Sandbox) -> None:
    """401 with the webhook's own text: rest/lib/apauth/auth.php:196-202 (docs: 403)."""
    hook = portal.add_webhook(scope="user")
    response = call(hook, "crm.lead.list")
    assert response.status_code == 401
    assert response.json() == {
        "error": "insufficient_scope",
        "error_description": "The request requires higher privileges than provided by the "
        "webhook token",
    }
    assert call(hook, "profile").status_code == 200  # scope basic needs nothing


def test_multifield_writes_by_form_and_json_store_the_same(portal: Sandbox) -> None:
    form = (
        "fields[TITLE]=Form+lead&fields[PHONE][0][VALUE]=%2B4930123&"
        "fields[PHONE][0][VALUE_TYPE]=WORK"
    )
    by_form = requests.post(
        portal.webhook_url + "crm.lead.add",
        data=form,
        timeout=10,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    by_json = call(
        portal.webhook_url,
        "crm.lead.add",
        fields={"TITLE": "Form lead", "PHONE": [{"VALUE": "+4930123", "VALUE_TYPE": "WORK"}]},
    )
    stored = [
        call(portal.webhook_url, "crm.lead.get", id=r.json()["result"]).json()["result"]
        for r in (by_form, by_json)
    ]
    assert [lead["TITLE"] for lead in stored] == ["Form lead", "Form lead"]
    phones = [[(p["VALUE"], p["VALUE_TYPE"]) for p in lead["PHONE"]] for lead in stored]
    assert phones == [[("+4930123", "WORK")], [("+4930123", "WORK")]]


def test_a_crash_inside_a_method_is_a_json_500(portal: Sandbox) -> None:
    def boom(params: dict[str, object], ctx: object) -> object:
        raise RuntimeError("bug")

    portal.portal.register("server.time", boom)
    response = call(portal.webhook_url, "server.time")
    assert response.status_code == 500
    assert response.json() == {
        "error": "INTERNAL_SERVER_ERROR",
        "error_description": "Internal server error",
    }
