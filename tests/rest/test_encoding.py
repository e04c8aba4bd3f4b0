"""Parameters reach Bitrix24 the way PHP reads them: JSON bodies and batch query strings."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from urllib.parse import parse_qsl, unquote

import pytest

from b24app.errors import UsageError
from b24app.rest import Command
from b24app.rest.encoding import command_string, php_query, to_json
from tests.rest.conftest import WEBHOOK, fixture, sent_json


def test_call_sends_json_with_bitrix_booleans_and_nulls(rsps, client):
    rsps.add("POST", WEBHOOK + "crm.lead.add", json={"result": 17, "time": {"operating": 0}})
    response = client.call(
        "crm.lead.add",
        {
            "fields": {
                "TITLE": "A & B",
                "OPENED": True,
                "IS_RETURN_CUSTOMER": False,
                "COMMENTS": None,
                "PHONE": [{"VALUE": "+1 555 0100", "VALUE_TYPE": "WORK"}],
                "OPPORTUNITY": Decimal("15000.50"),
                "BIRTHDATE": dt.date(1990, 5, 17),
            }
        },
    )
    assert response.result == 17
    body = sent_json(rsps.calls[0])
    assert body == {
        "fields": {
            "TITLE": "A & B",
            "OPENED": "Y",
            "IS_RETURN_CUSTOMER": "N",
            "COMMENTS": None,
            "PHONE": [{"VALUE": "+1 555 0100", "VALUE_TYPE": "WORK"}],
            "OPPORTUNITY": "15000.50",
            "BIRTHDATE": "1990-05-17",
        }
    }
    assert "None" not in rsps.calls[0].request.body.decode()
    assert rsps.calls[0].request.headers["Content-Type"] == "application/json"


def test_call_keeps_plus_and_filter_prefixes_in_json(rsps, client):
    rsps.add("POST", WEBHOOK + "crm.lead.list", json=fixture("crm.lead.list.page"))
    response = client.call(
        "crm.lead.list",
        {
            "filter": {
                "PHONE": "+15454777777",
                ">ID": 5,
                "!STATUS_ID": "JUNK",
                "@STATUS_ID": ["NEW", "IN_PROCESS"],
                "<=DATE_CREATE": "2024-01-01",
            }
        },
    )
    assert sent_json(rsps.calls[0])["filter"] == {
        "PHONE": "+15454777777",
        ">ID": 5,
        "!STATUS_ID": "JUNK",
        "@STATUS_ID": ["NEW", "IN_PROCESS"],
        "<=DATE_CREATE": "2024-01-01",
    }
    assert (response.total, response.next) == (654, 50)
    assert [row["ID"] for row in response.result] == ["5", "6"]
    assert response.time.operating == 0


def _decoded(query: str) -> list[tuple[str, str]]:
    """What PHP's parse_str sees: every key and value percent-decoded (no '+' as space)."""
    return [(unquote(k), unquote(v)) for k, v in (p.split("=", 1) for p in query.split("&"))]


def test_php_query_nests_brackets_and_encodes_every_value():
    query = php_query(
        {
            "fields": {
                "TITLE": "John&Martin = 100%",
                "PHONE": [{"VALUE": "+7 (900) 1", "VALUE_TYPE": "WORK"}],
                "OPENED": True,
                "CLOSED": False,
                "COMMENTS": None,
            }
        }
    )
    assert query == (
        "fields[TITLE]=John%26Martin%20%3D%20100%25"
        "&fields[PHONE][0][VALUE]=%2B7%20%28900%29%201"
        "&fields[PHONE][0][VALUE_TYPE]=WORK"
        "&fields[OPENED]=Y&fields[CLOSED]=N&fields[COMMENTS]="
    )
    assert dict(_decoded(query))["fields[PHONE][0][VALUE]"] == "+7 (900) 1"
    # a form decoder that reads '+' as space still gets the plus back
    assert dict(parse_qsl(query))["fields[PHONE][0][VALUE]"] == "+7 (900) 1"


def test_php_query_filter_prefixes_survive():
    query = php_query(
        {
            "filter": {
                ">ID": 10,
                "!STATUS_ID": "JUNK",
                "@ID": [1, 2],
                "%TITLE": "a b",
                "=PHONE": "+1",
            }
        }
    )
    assert _decoded(query) == [
        ("filter[>ID]", "10"),
        ("filter[!STATUS_ID]", "JUNK"),
        ("filter[@ID][0]", "1"),
        ("filter[@ID][1]", "2"),
        ("filter[%TITLE]", "a b"),
        ("filter[=PHONE]", "+1"),
    ]
    assert "filter[%3EID]=10" in query


def test_result_references_are_left_intact():
    page = Command("p0", "crm.lead.list", {})
    text = command_string("crm.lead.list", {"filter": {">ID": page.ref(49, "ID")}, "start": -1})
    assert text == "crm.lead.list?filter[%3EID]=$result[p0][49][ID]&start=-1"
    assert php_query({"id": "$result[c][items][0][id]"}) == "id=$result[c][items][0][id]"
    # text that merely contains a reference is data, and encoded as such
    assert php_query({"t": "see $result[x] & more"}) == "t=see%20%24result%5Bx%5D%20%26%20more"


def test_method_alone_when_no_params():
    assert command_string("user.current", {}) == "user.current"
    assert command_string("crm.lead.list", {"select": []}) == "crm.lead.list"


def test_unsendable_values_are_a_usage_error():
    with pytest.raises(UsageError, match=r"params\[fields\]\[X\]: cannot send a object"):
        to_json({"fields": {"X": object()}})
    with pytest.raises(UsageError):
        php_query({"x": object()})


def test_batch_sends_php_query_strings_inside_json(rsps, client):
    rsps.add(
        "POST",
        WEBHOOK + "batch",
        json={
            "result": {
                "result": {"lead": 7, "get": {"ID": "7"}},
                "result_error": [],
                "result_total": [],
                "result_next": [],
                "result_time": [],
            }
        },
    )
    add = Command(
        "lead",
        "crm.lead.add",
        {
            "fields": {
                "TITLE": "Tom & Jerry",
                "PHONE": [{"VALUE": "+1 333", "VALUE_TYPE": "WORK"}],
                "OPENED": True,
                "COMMENTS": None,
            }
        },
    )
    get = Command("get", "crm.lead.get", {"id": add.ref()})
    assert client.batch([add, get], halt=True).results == {"lead": 7, "get": {"ID": "7"}}
    assert sent_json(rsps.calls[0]) == {
        "halt": 1,
        "cmd": {
            "lead": "crm.lead.add?fields[TITLE]=Tom%20%26%20Jerry"
            "&fields[PHONE][0][VALUE]=%2B1%20333"
            "&fields[PHONE][0][VALUE_TYPE]=WORK&fields[OPENED]=Y&fields[COMMENTS]=",
            "get": "crm.lead.get?id=$result[lead]",
        },
    }
