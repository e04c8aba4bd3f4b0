"""Keyset listing: ~2,500 rows per request, no COUNT, bounded, right id key per method."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

import pytest

from b24app import errors as e
from b24app.rest import ListShape
from b24app.rest.listing import Listing, Listings
from tests.rest.conftest import WEBHOOK, sent_json

REF = re.compile(r"^\$result\[(\w+)\]((?:\[[^\]]*\])+)$")


def parse_php(query: str) -> dict[str, Any]:
    """A PHP parse_str for the test portal."""
    out: dict[str, Any] = {}
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        path = re.findall(r"[^\[\]]+|\[\]", unquote(key))
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = unquote(value)
    return out


class ListPortal:
    """Answers batches of keyset pages over `n` rows, resolving `$result` references."""

    def __init__(
        self,
        n: int,
        *,
        shape: str = "legacy",
        honour_filter: bool = True,
        fail: dict[int, dict[str, str]] | None = None,
        ignore_filter: set[str] | None = None,
    ) -> None:
        self.ids = list(range(1, n + 1))
        self.shape = shape
        self.honour_filter = honour_filter
        self.ignore_filter = ignore_filter or set()  # keys whose `>ID` filter is not honoured
        self.fail = fail or {}  # batch number -> {key: error code}
        self.batches: list[dict[str, str]] = []
        self.select_seen: list[Any] = []

    def _resolve(self, value: str, results: dict[str, Any]) -> Any:
        match = REF.match(value)
        if not match:
            return value
        node: Any = results.get(match.group(1))
        for part in re.findall(r"\[([^\]]*)\]", match.group(2)):
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, TypeError):
                return ""  # an unresolvable reference: Bitrix24 sends an empty value
        return node

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        cmd = json.loads(request.body)["cmd"]
        number = len(self.batches)
        self.batches.append(cmd)
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        id_key = "id" if self.shape != "legacy" else "ID"
        for key, text in cmd.items():
            query = text.partition("?")[2]
            params = parse_php(query)
            if key in self.fail.get(number, {}):
                errors[key] = {"error": self.fail[number][key], "error_description": "x"}
                continue
            assert params["start"] == "-1"
            assert params["order"] == {id_key: "ASC"} or params["order"] == {"ID": "ASC"}
            self.select_seen.append(params.get("select"))
            after = self._resolve(params.get("filter", {}).get(f">{id_key}", ""), results)
            honour = self.honour_filter and key not in self.ignore_filter
            after = int(after) if after not in ("", None) and honour else 0
            rows = [
                {id_key: i if self.shape != "legacy" else str(i), "TITLE": f"Lead {i}"}
                for i in self.ids
                if i > after
            ][:50]
            results[key] = {"items": rows} if self.shape == "item" else rows
        body = {
            "result": {
                "result": results or [],
                "result_error": errors or [],
                "result_total": [],
                "result_next": [],
                "result_time": [],
            },
            "time": {"duration": 0.01},
        }
        return 200, {}, json.dumps(body)


def test_10000_leads_take_five_requests_in_order_without_duplicates(rsps, client):
    portal = ListPortal(10_000)
    rsps.add_callback("POST", WEBHOOK + "batch", callback=portal)
    ids = [int(row["ID"]) for row in client.iterate("crm.lead.list")]
    assert ids == list(range(1, 10_001))
    assert client.requests_made == 5
    first = portal.batches[0]
    assert len(first) == 50
    assert first["p_0"] == "crm.lead.list?order[ID]=ASC&start=-1"
    assert first["p_1"] == "crm.lead.list?filter[%3EID]=$result[p_0][49][ID]&order[ID]=ASC&start=-1"
    assert portal.batches[1]["p_0"] == "crm.lead.list?filter[%3EID]=2500&order[ID]=ASC&start=-1"


@pytest.mark.parametrize(
    ("n", "requests"), [(0, 1), (49, 1), (50, 1), (2_499, 1), (2_500, 2), (2_501, 2)]
)
def test_stops_at_the_first_short_page(rsps, client, n, requests):
    rsps.add_callback("POST", WEBHOOK + "batch", callback=ListPortal(n))
    assert len(list(client.iterate("crm.lead.list"))) == n
    assert client.requests_made == requests


def test_caller_filter_and_select_pass_through_with_the_id_added(rsps, client):
    portal = ListPortal(3)
    rsps.add_callback("POST", WEBHOOK + "batch", callback=portal)
    rows = list(
        client.iterate(
            "crm.lead.list",
            {
                "filter": {"STATUS_SEMANTIC_ID": "P", "!SOURCE_ID": "WEB", ">ID": 1},
                "select": ["TITLE", "PHONE"],
            },
        )
    )
    assert [r["ID"] for r in rows] == ["2", "3"]
    command = parse_php(sent_json(rsps.calls[0])["cmd"]["p_0"].partition("?")[2])
    assert command["filter"] == {"STATUS_SEMANTIC_ID": "P", "!SOURCE_ID": "WEB", ">ID": "1"}
    assert command["select"] == {"0": "TITLE", "1": "PHONE", "2": "ID"}


def test_order_and_start_belong_to_the_listing(client):
    with pytest.raises(e.UsageError, match="orders by ID ascending"):
        next(client.iterate("crm.lead.list", {"order": {"DATE_CREATE": "DESC"}}))
    with pytest.raises(e.UsageError, match="sets `start` itself"):
        next(client.iterate("crm.lead.list", {"start": 50}))
    assert client.requests_made == 0


def test_crm_item_list_uses_items_and_lowercase_id(rsps, client):
    portal = ListPortal(2_600, shape="item")
    rsps.add_callback("POST", WEBHOOK + "batch", callback=portal)
    ids = [row["id"] for row in client.iterate("crm.item.list", {"entityTypeId": 1})]
    assert ids == list(range(1, 2_601))
    assert portal.batches[0]["p_1"] == (
        "crm.item.list?entityTypeId=1&filter[%3Eid]=$result[p_0][items][49][id]"
        "&order[id]=ASC&start=-1"
    )
    assert client.requests_made == 2


def test_a_portal_ignoring_the_filter_is_caught_not_looped(rsps, client):
    rsps.add_callback("POST", WEBHOOK + "batch", callback=ListPortal(5_000, honour_filter=False))
    rows = []
    with pytest.raises(e.ListingError, match="ids did not advance past 50"):
        rows.extend(client.iterate("crm.lead.list"))
    assert len(rows) == 50
    assert client.requests_made == 1


def test_the_page_cap_ends_an_endless_listing(rsps, client):
    rsps.add_callback("POST", WEBHOOK + "batch", callback=ListPortal(10_000))
    with pytest.raises(e.ListingError, match="more than 60 pages"):
        list(client.iterate("crm.lead.list", max_pages=60))
    assert client.requests_made == 2  # 50 pages, then the 10 left under the cap


def test_an_operating_limit_mid_batch_waits_and_resumes_without_duplicates(rsps, client, clock):
    portal = ListPortal(3_000, fail={0: {"p_20": "OPERATION_TIME_LIMIT"}})
    rsps.add_callback("POST", WEBHOOK + "batch", callback=portal)
    ids = [int(row["ID"]) for row in client.iterate("crm.lead.list")]
    assert ids == list(range(1, 3_001))
    assert portal.batches[1]["p_0"].startswith("crm.lead.list?filter[%3EID]=1000&")
    assert clock.sleeps  # waited for the budget before resuming


def test_other_page_errors_are_raised_typed(rsps, client):
    rsps.add_callback(
        "POST", WEBHOOK + "batch", callback=ListPortal(100, fail={0: {"p_0": "ACCESS_DENIED"}})
    )
    with pytest.raises(e.AccessDenied):
        list(client.iterate("crm.lead.list"))


def test_a_custom_shape(rsps, client):
    portal = ListPortal(60, shape="item")
    rsps.add_callback("POST", WEBHOOK + "batch", callback=portal)
    rows = list(client.iterate("crm.something.list", shape=ListShape("id", "id", "items")))
    assert len(rows) == 60


def test_iterate_is_one_listing_of_the_engine_that_reads_several(rsps, client):
    """`Listings` with two listings: their pages share each request; one that does not advance
    fails alone, its rows before the failure kept, the other read to its end."""
    portal = ListPortal(120, ignore_filter={"s_1", "s_2"})  # the pages after s_0 ignore `>ID`
    rsps.add_callback("POST", WEBHOOK + "batch", callback=portal)
    stuck = Listing("s", "crm.lead.list", {}, pages=2)
    whole = Listing("w", "crm.lead.list", {}, pages=1)
    lists = Listings(client, [stuck, whole])
    found = lists.read()
    assert [int(r["ID"]) for r in found["s"]] == list(range(1, 51))
    assert [int(r["ID"]) for r in found["w"]] == list(range(1, 121))
    assert set(lists.errors) == {"s"}
    assert isinstance(lists.errors["s"], e.ListingError)
    assert "did not advance past 50" in str(lists.errors["s"])
    assert len(portal.batches[0]) == 3  # s_0, s_1 and w_0 in the first request


def test_a_listing_past_its_page_cap_fails_with_its_rows_kept(rsps, client):
    rsps.add_callback("POST", WEBHOOK + "batch", callback=ListPortal(500))
    lists = Listings(client, [Listing("c", "crm.lead.list", {}, pages=50, max_pages=3)])
    found = lists.read()
    assert [int(r["ID"]) for r in found["c"]] == list(range(1, 151))
    assert "more than 3 pages" in str(lists.errors["c"])
    assert client.requests_made == 1
