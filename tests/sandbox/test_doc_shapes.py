"""Every doc example in fixtures/bitrix24-docs parses, and the sandbox answers the same calls in
the same shape: same keys, same nesting, same JSON types, `[]` for empty batch containers.

Deliberate, documented differences (each asserted below, so it cannot widen silently):
* `time`: the docs say not every key is always present; ours may carry more, never fewer;
  abridged examples that omit `time` altogether still get one from the sandbox.
* `crm.lead.list` rows: `UF_CRM_*` are one portal's custom fields; the sandbox has none.
* ONCRMLEADADD `auth.refresh_token`: the events overview says handlers normally get no refresh
  token (the lead-event example shows one); the sandbox sends none.
* `event.offline.get` `EVENT_DATA`: the doc example shows `false`; the sandbox carries the
  event's data (`{"FIELDS": {"ID": ..}}`), without which an app cannot sync the object.
* Event and installer payloads are forms: every value arrives as a string.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from sandbox.limits import Plan
from sandbox.server import Sandbox
from sandbox.wire import parse_php_query

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "bitrix24-docs"
ALL = sorted(p.stem for p in FIXTURES.glob("*.json"))
NUMBER = (int, float)


def doc(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, NUMBER):
        return "number"
    return type(value).__name__


def assert_same_shape(expected: Any, actual: Any, path: str = "$") -> None:
    """Keys, nesting and JSON types of `actual` match the doc example `expected`.

    null in the example means a nullable value and matches anything; `time` objects may carry
    more keys than the example.
    """
    if expected is None:
        return
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {json_type(actual)}"
        missing = set(expected) - set(actual)
        assert not missing, f"{path}: missing keys {sorted(missing)}"
        # A batch command's time is a `time` object too; recorded ones carry `operating`
        # (fast_bitrix24 tests/real_responses/crm_get_batch_mix_success_and_errors.py).
        if not path.endswith(".time") and ".result_time." not in path:
            # Some examples are abridged and omit the `time` every answer carries.
            unexpected = set(actual) - set(expected) - ({"time"} if path == "$" else set())
            assert not unexpected, f"{path}: unexpected keys {sorted(unexpected)}"
        for key in set(expected) & set(actual):
            assert_same_shape(expected[key], actual[key], f"{path}.{key}")
        return
    if isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected an array, got {json_type(actual)}"
        if not expected:
            assert actual == [], f"{path}: expected []"
        elif actual:
            assert_same_shape(expected[0], actual[0], f"{path}[0]")
        return
    assert json_type(actual) in (json_type(expected), "null"), (
        f"{path}: expected {json_type(expected)}, got {json_type(actual)} ({actual!r})"
    )


def assert_form_shape(expected: Any, actual: Any, path: str = "$") -> None:
    """Form payloads: same nested keys; every leaf a string."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        assert set(actual) == set(expected), f"{path}: {sorted(set(actual) ^ set(expected))}"
        for key in expected:
            assert_form_shape(expected[key], actual[key], f"{path}.{key}")
    else:
        assert isinstance(actual, str), f"{path}: {actual!r}"


# What each kind of example is: a REST answer, an error body, an OAuth grant, a posted form.
KINDS = {
    "error": {"error", "error_description"},
    "event": {"event", "data", "ts", "auth"},
    "oauth": {"access_token", "refresh_token", "expires_in", "member_id", "client_endpoint"},
    "install": {"AUTH_ID", "REFRESH_ID", "member_id", "DOMAIN", "APPLICATION_TOKEN"},
}


def kind_of(example: dict[str, Any]) -> str:
    if "result" in example:
        return "result"
    return next(kind for kind, keys in KINDS.items() if keys <= set(example))


@pytest.mark.parametrize("name", ALL)
def test_every_doc_example_is_a_known_kind(name: str) -> None:
    example = doc(name)
    kind = kind_of(example)
    if name.startswith(("error.", "oauth.error.")) or name.endswith("access-denied"):
        assert kind == "error"
        # a legacy error (crm.lead.list's access denied) has an empty code and a description
        assert isinstance(example["error"], str) and isinstance(example["error_description"], str)
        assert example["error"] or example["error_description"]
    elif name.startswith("event.") and name != "event.offline.get":
        assert (kind, example["event"]) == ("event", name.removeprefix("event."))
    elif name.startswith("oauth."):
        assert kind == "oauth"
    elif name.startswith("install."):
        assert kind == "install"
    else:
        assert kind == "result"


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    path = tmp_path_factory.mktemp("shapes") / "portal.db"
    with Sandbox(plan="fast", seed_leads=60, seed=11, db=str(path)) as running:
        yield running


@pytest.fixture(scope="module")
def token(portal: Sandbox) -> str:
    return str(portal.install_app(scope="crm,user,department")["access_token"])


def rest(portal: Sandbox, method: str, token: str | None = None, **params: Any) -> Any:
    url = f"{portal.base_url}/rest/{method}" if token else portal.webhook_url + method
    body = {**params, "auth": token} if token else params
    return requests.post(url, json=body, timeout=10).json()


def test_app_info(portal: Sandbox, token: str) -> None:
    assert_same_shape(doc("app.info"), rest(portal, "app.info", token))


def test_batch_success(portal: Sandbox) -> None:
    answer = rest(
        portal,
        "batch",
        halt=0,
        cmd={
            "get_user": "user.current",
            "get_department": "department.get?ID=$result[get_user][UF_DEPARTMENT][0]",
        },
    )
    assert_same_shape(doc("batch.success"), answer)


@pytest.mark.parametrize(
    ("halt", "name"), [(0, "batch.result_error.halt0"), (1, "batch.result_error.halt1")]
)
def test_batch_errors(portal: Sandbox, halt: int, name: str) -> None:
    narrow = portal.add_webhook(scope="crm")
    answer = requests.post(
        narrow + "batch",
        timeout=10,
        json={
            "halt": halt,
            "cmd": {"get_user": "user.current", "get_department": "department.get?ID=1"},
        },
    ).json()
    assert_same_shape(doc(name), answer)
    assert set(answer["result"]["result_error"]) == set(doc(name)["result"]["result_error"])


def test_crm_answers(portal: Sandbox) -> None:
    activity = rest(portal, "crm.activity.list", select=["ID"])["result"][0]["ID"]
    assert_same_shape(
        doc("crm.activity.binding.list"),
        rest(portal, "crm.activity.binding.list", activityId=activity),
    )
    assert_same_shape(
        doc("crm.category.list.deal"), rest(portal, "crm.category.list", entityTypeId=2)
    )
    assert_same_shape(doc("crm.enum.settings.mode"), rest(portal, "crm.enum.settings.mode"))
    mode = rest(portal, "crm.settings.mode.get")
    assert_same_shape(doc("crm.settings.mode.get"), mode)
    assert mode["result"] == 1  # a new sandbox portal is in Classic mode, as Bitrix24's are
    stages = doc("crm.status.list.lead-stages")
    answer = rest(portal, "crm.status.list", filter={"ENTITY_ID": "STATUS"})
    assert_same_shape(stages, answer)
    assert {row["ENTITY_ID"] for row in answer["result"]} == {"STATUS"}
    assert answer["total"] == len(answer["result"])
    assert {"S", "F"} <= {row.get("SEMANTICS") for row in answer["result"]}


def test_lead_list_page(portal: Sandbox) -> None:
    page = doc("crm.lead.list.page")
    custom = frozenset(k for k in page["result"][0] if k.startswith("UF_CRM_"))
    trimmed = {
        **page,
        "result": [{k: v for k, v in row.items() if k not in custom} for row in page["result"]],
    }
    answer = rest(portal, "crm.lead.list", select=["*"])
    assert_same_shape(trimmed, answer)
    assert not custom & set(answer["result"][0])
    # 60 seeded leads (the tests before may add some): a full first page, then `next`.
    assert len(answer["result"]) == 50 and answer["next"] == 50
    assert answer["total"] >= 60
    ids = [int(row["ID"]) for row in answer["result"]]
    assert ids == sorted(ids) and len(set(ids)) == 50


def test_lead_list_access_denied(portal: Sandbox) -> None:
    no_crm = portal.add_webhook(user_id=3, scope="crm")
    answer = requests.post(no_crm + "crm.lead.list", json={}, timeout=10).json()
    assert answer == doc("crm.lead.list.error-access-denied")


def test_error_bodies(portal: Sandbox, token: str) -> None:
    assert rest(portal, "profile", "0" * 32) == doc("error.invalid_token")
    narrow = portal.install_app(scope="user")["access_token"]
    assert rest(portal, "crm.lead.list", narrow) == doc("error.insufficient_scope")
    portal.expire_tokens()
    assert rest(portal, "profile", narrow) == doc("error.expired_token")


def test_limit_error_bodies() -> None:
    tight = Plan("tight", rate=0.001, burst=3, operating_limit=0.0)
    # Calls under 0.1 s are not counted (rest/lib/engine/access/loadlimiter.php:331): a slow one.
    with Sandbox(plan=tight, seed_leads=1, cost=lambda method, result: 0.2) as portal:
        rest(portal, "crm.lead.get", id=1)
        blocked = rest(portal, "crm.lead.get", id=1)
        rest(portal, "profile")
        limited = rest(portal, "profile")
    assert {k: blocked[k] for k in ("error", "error_description")} == doc(
        "error.OPERATION_TIME_LIMIT"
    )
    assert limited == doc("error.QUERY_LIMIT_EXCEEDED")


def test_oauth_answers(portal: Sandbox) -> None:
    install = portal.install_app()
    params = {
        "grant_type": "refresh_token",
        "client_id": portal.client_id,
        "client_secret": portal.client_secret,
        "refresh_token": install["refresh_token"],
    }
    url = f"{portal.oauth_server}/oauth/token/"
    assert_same_shape(
        doc("oauth.token.refresh"), requests.get(url, params=params, timeout=10).json()
    )
    fresh = portal.install_app()
    portal.set_portal_state("unpaid")
    try:
        unpaid = requests.get(
            url, timeout=10, params={**params, "refresh_token": fresh["refresh_token"]}
        ).json()
    finally:
        portal.set_portal_state("active")
    assert unpaid == doc("oauth.error.PAYMENT_REQUIRED")


def test_offline_get(portal: Sandbox) -> None:
    token = portal.install_app()["access_token"]
    rest(portal, "event.bind", token, event="ONCRMLEADADD", event_type="offline")
    rest(portal, "crm.lead.add", fields={"TITLE": "Offline"})
    answer = rest(portal, "event.offline.get", token)
    event = answer["result"]["events"][0]
    assert isinstance(event["EVENT_DATA"], dict)  # documented difference, see module doc
    event["EVENT_DATA"] = False
    assert_same_shape(doc("event.offline.get"), answer)


@pytest.fixture
def received() -> Iterator[tuple[str, list[tuple[dict[str, Any], dict[str, Any]]]]]:
    """A local handler URL and the (query, form) pairs it received."""
    got: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        raw = Request(environ).get_data(as_text=True)
        got.append((parse_php_query(environ.get("QUERY_STRING", "")), parse_php_query(raw)))
        return Response("ok")(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", got
    finally:
        server.shutdown()
        server.server_close()


def test_event_and_installer_payloads(
    portal: Sandbox, received: tuple[str, list[tuple[dict[str, Any], dict[str, Any]]]]
) -> None:
    url, got = received
    install = portal.install_app(app_url=url, event_handler_url=url)
    rest(portal, "event.bind", install["access_token"], event="ONCRMLEADADD", handler=url)
    rest(portal, "crm.lead.add", fields={"TITLE": "Shape"})
    assert portal.wait_events()
    portal.uninstall_app()
    assert portal.wait_events()
    query, installer = got[0]
    documented = doc("install.handler.request-fields")
    assert_form_shape(
        documented, {k: v for k, v in {**query, **installer}.items() if k != "PLACEMENT_OPTIONS"}
    )
    forms = {form["event"]: form for _, form in got[1:]}
    assert_form_shape(doc("event.ONAPPINSTALL"), forms["ONAPPINSTALL"])
    assert_form_shape(doc("event.ONAPPUNINSTALL"), forms["ONAPPUNINSTALL"])
    lead_event = doc("event.ONCRMLEADADD")
    del lead_event["auth"]["refresh_token"]  # documented difference, see module doc
    assert_form_shape(lead_event, forms["ONCRMLEADADD"])
