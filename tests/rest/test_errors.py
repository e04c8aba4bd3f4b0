"""Every Bitrix24 error code becomes its typed class, keyed on the code, never the HTTP status."""

from __future__ import annotations

import pickle

import pytest
import requests

from b24app import errors as e
from b24app.rest import RetryPolicy
from tests.rest.conftest import WEBHOOK, fixture, make_client, sent_json

# The platform doc's system-error table (section 7) plus the codes the SDKs know, with the
# status the docs give; the class must not depend on it.
TABLE = [
    ("INTERNAL_SERVER_ERROR", 500, e.ServerError),
    ("ERROR_UNEXPECTED_ANSWER", 500, e.ServerError),
    ("QUERY_LIMIT_EXCEEDED", 503, e.QueryLimitExceeded),
    ("OPERATION_TIME_LIMIT", 429, e.OperationTimeLimit),
    ("ERROR_BATCH_METHOD_NOT_ALLOWED", 405, e.InvalidRequest),
    ("ERROR_BATCH_LENGTH_EXCEEDED", 400, e.InvalidRequest),
    ("NO_AUTH_FOUND", 401, e.AuthError),
    ("INVALID_REQUEST", 400, e.InvalidRequest),
    ("OVERLOAD_LIMIT", 503, e.Overloaded),
    ("ACCESS_DENIED", 403, e.AccessDenied),
    ("INVALID_CREDENTIALS", 403, e.AuthError),
    ("ERROR_MANIFEST_IS_NOT_AVAILABLE", 404, e.NotFound),
    ("insufficient_scope", 403, e.InsufficientScope),
    ("expired_token", 401, e.ExpiredToken),
    ("user_access_error", 403, e.AccessDenied),
    ("PORTAL_DELETED", 500, e.PortalDeleted),
    ("ERROR_METHOD_NOT_FOUND", 404, e.MethodNotFound),
    ("invalid_token", 401, e.AuthError),
    ("AUTHORIZATION_ERROR", 401, e.AuthError),
    ("APPLICATION_NOT_FOUND", 401, e.AuthError),
    ("ERROR_OAUTH", 401, e.AuthError),
    ("METHOD_CONFIRM_WAITING", 401, e.AccessDenied),
    ("PAYMENT_REQUIRED", 402, e.PaymentRequired),
    ("WRONG_AUTH_TYPE", 401, e.AuthError),
    ("ALLOWED_ONLY_INTRANET_USER", 403, e.AccessDenied),
    ("NOT_FOUND", 404, e.NotFound),
    ("ERROR_HANDLER_ALREADY_EXIST", 400, e.AlreadyExists),
    ("ACTIVITY_IS_ALREADY_BOUND", 400, e.AlreadyExists),
    # OAuth server codes (settings/oauth/error-codes.md)
    ("invalid_request", 400, e.InvalidRequest),
    ("invalid_client", 401, e.InvalidClient),
    ("wrong_client", 401, e.InvalidClient),
    ("invalid_grant", 400, e.InvalidGrant),
    ("invalid_scope", 400, e.InsufficientScope),
]


@pytest.mark.parametrize(("code", "status", "cls"), TABLE)
def test_every_code_maps_to_its_class_whatever_the_status(rsps, clock, code, status, cls):
    client = make_client(clock, retry=RetryPolicy(attempts=1))
    # The same error at the documented status and at 200 (the 2024 docs' variant).
    for http_status in (status, 200):
        rsps.add(
            "POST",
            WEBHOOK + "crm.deal.get",
            json={"error": code, "error_description": "Some words."},
            status=http_status,
        )
        with pytest.raises(e.B24Error) as caught:
            client.call("crm.deal.get", {"id": 1})
        rsps.reset()
        error = caught.value
        assert type(error) is cls
        assert (error.code, error.description, error.method) == (
            code,
            "Some words.",
            "crm.deal.get",
        )
        assert error.status == http_status
        assert isinstance(error, e.B24AppError)


def test_the_table_covers_every_listed_code():
    for code, _, cls in TABLE:
        assert e.error_class(code) is cls
    assert e.error_class("SOMETHING_NEW") is e.B24Error


@pytest.mark.parametrize(
    ("description", "cls"),
    [
        ("Access denied.", e.AccessDenied),
        ("Not found", e.NotFound),
        ("Invalid parameters.", e.InvalidRequest),
        ("ID is not defined or invalid.", e.InvalidRequest),
    ],
)
def test_legacy_empty_code_is_classified_by_description(rsps, client, description, cls):
    rsps.add(
        "POST",
        WEBHOOK + "crm.lead.list",
        json={"error": "", "error_description": description},
        status=400,
    )
    with pytest.raises(cls) as caught:
        client.call("crm.lead.list")
    assert caught.value.description == description
    assert caught.value.code == ""


def test_doc_fixture_access_denied(rsps, client):
    rsps.add(
        "POST",
        WEBHOOK + "crm.lead.list",
        json=fixture("crm.lead.list.error-access-denied"),
        status=403,
    )
    with pytest.raises(e.AccessDenied, match=r"crm\.lead\.list: Access denied\."):
        client.call("crm.lead.list")


@pytest.mark.parametrize(
    "name", ["error.expired_token", "error.insufficient_scope", "error.invalid_token"]
)
def test_doc_fixture_auth_errors(rsps, client, name):
    body = fixture(name)
    rsps.add("POST", WEBHOOK + "user.get", json=body, status=401)
    with pytest.raises(e.B24Error) as caught:
        client.call("user.get")
    assert type(caught.value) is e.error_class(body["error"])
    assert caught.value.description == body["error_description"]


def test_html_error_page_is_a_clear_error_with_status(rsps, client):
    rsps.add(
        "POST",
        WEBHOOK + "crm.lead.add",
        body="<html><body>Not Found</body></html>",
        status=404,
        content_type="text/html",
    )
    with pytest.raises(e.UnexpectedResponse) as caught:
        client.call("crm.lead.add", {"fields": {"TITLE": "x"}})
    assert caught.value.status == 404
    assert "text/html, not Bitrix24 JSON" in str(caught.value)
    assert "HTTP 404" in str(caught.value)


def test_error_messages_never_hold_the_webhook_code(rsps, client):
    rsps.add(
        "POST",
        WEBHOOK + "crm.lead.add",
        json={"error": "ERROR_CORE", "error_description": f"bad call to {WEBHOOK}crm.lead.add"},
        status=400,
    )
    rsps.add(
        "POST",
        WEBHOOK + "crm.lead.add",
        body=requests.ConnectionError(
            f"HTTPSConnectionPool: Max retries exceeded with url: {WEBHOOK}crm.lead.add"
        ),
    )
    with pytest.raises(e.InvalidRequest) as first:
        client.call("crm.lead.add", {"fields": {"TITLE": "x"}})
    with pytest.raises(e.OutcomeUnknown) as second:
        client.call("crm.lead.add", {"fields": {"TITLE": "x"}})
    for error in (first.value, second.value):
        assert "s3cretc0de" not in str(error)
        assert "s3cretc0de" not in repr(error)
        assert error.__cause__ is None or "s3cretc0de" not in str(error.__cause__)
    assert "/rest/1/***/" in str(first.value)
    assert sent_json(rsps.calls[0]) == {"fields": {"TITLE": "x"}}


def test_errors_survive_pickling_across_processes():
    error = e.make_error(
        "OPERATION_TIME_LIMIT", "blocked", method="crm.lead.list", status=429, reset_at=123.0
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is e.OperationTimeLimit
    assert (copy.code, copy.method, copy.status, copy.reset_at) == (
        "OPERATION_TIME_LIMIT",
        "crm.lead.list",
        429,
        123.0,
    )
    assert str(copy) == str(error)
