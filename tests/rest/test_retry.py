"""Retries: reads repeat on anything transient; writes only when Bitrix24 guarantees nothing ran."""

from __future__ import annotations

from http.client import RemoteDisconnected

import pytest
import requests
import urllib3.exceptions

from b24app import errors as e
from b24app.config import RateLimit
from b24app.rest import Command, RetryPolicy
from b24app.rest.retry import is_read
from tests.rest.conftest import WEBHOOK, fixture, make_client, sent_json

OK = {"result": True, "time": {"duration": 0.01, "operating": 0}}
QLE = (fixture("error.QUERY_LIMIT_EXCEEDED"), 503)
ISE = ({"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}, 500)


def dropped() -> requests.ConnectionError:
    """The connection died after the request went out."""
    return requests.ConnectionError(
        urllib3.exceptions.ProtocolError(
            "Connection aborted.", RemoteDisconnected("Remote end closed connection")
        )
    )


def refused() -> requests.ConnectionError:
    """No connection was ever made."""
    return requests.ConnectionError(
        urllib3.exceptions.MaxRetryError(
            None, "/rest/", urllib3.exceptions.NewConnectionError(None, "Connection refused")
        )
    )


def _add(rsps, method, *answers):
    for answer in answers:
        if isinstance(answer, Exception):
            rsps.add("POST", WEBHOOK + method, body=answer)
        elif isinstance(answer, tuple):
            rsps.add("POST", WEBHOOK + method, json=answer[0], status=answer[1])
        elif isinstance(answer, str):
            rsps.add("POST", WEBHOOK + method, body=answer, status=502, content_type="text/html")
        else:
            rsps.add("POST", WEBHOOK + method, json=answer)


@pytest.mark.parametrize(
    "failure",
    [
        QLE,
        ISE,
        "<html>502 Bad Gateway</html>",
        requests.ReadTimeout("read timed out"),
        dropped(),
        refused(),
    ],
    ids=["503-QLE", "500", "502-html", "timeout", "dropped", "refused"],
)
def test_reads_are_retried_on_anything_transient(rsps, client, clock, failure):
    _add(rsps, "crm.lead.list", failure, failure, OK)
    assert client.call("crm.lead.list").result is True
    assert client.requests_made == 3
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize("failure", [QLE, refused()], ids=["503-QLE", "refused"])
def test_writes_are_retried_when_nothing_ran(rsps, client, failure):
    _add(rsps, "crm.deal.add", failure, {"result": 42})
    assert client.call("crm.deal.add", {"fields": {"TITLE": "x"}}).result == 42
    assert client.requests_made == 2


@pytest.mark.parametrize(
    "failure",
    [ISE, "<html>502 Bad Gateway</html>", requests.ReadTimeout("read timed out"), dropped()],
    ids=["500", "502-html", "timeout", "dropped"],
)
def test_writes_with_unknown_outcome_are_not_repeated(rsps, client, failure):
    _add(rsps, "crm.deal.add", failure)
    with pytest.raises(e.OutcomeUnknown) as caught:
        client.call("crm.deal.add", {"fields": {"TITLE": "x", "ORIGIN_ID": "lead-1"}})
    assert client.requests_made == 1
    assert caught.value.method == "crm.deal.add"
    assert caught.value.commands == (("", "crm.deal.add"),)
    assert "may or may not have run" in str(caught.value)


def test_an_idempotent_write_may_be_repeated(rsps, client):
    _add(rsps, "crm.lead.update", ISE, requests.ReadTimeout("slow"), OK)
    client.call("crm.lead.update", {"id": 5, "fields": {"STATUS_ID": "CONVERTED"}}, idempotent=True)
    assert client.requests_made == 3


def test_a_batch_of_reads_is_a_read_and_a_mixed_batch_is_a_write(rsps, client):
    ok = {
        "result": {
            "result": {"a": [], "b": []},
            "result_error": [],
            "result_total": [],
            "result_next": [],
            "result_time": [],
        }
    }
    _add(rsps, "batch", requests.ReadTimeout("slow"), ok, requests.ReadTimeout("slow"))
    reads = [Command("a", "crm.lead.list"), Command("b", "crm.status.list")]
    assert client.batch(reads).results == {"a": [], "b": []}
    mixed = [Command("a", "crm.lead.list"), Command("w", "crm.deal.add", {"fields": {}})]
    with pytest.raises(e.OutcomeUnknown) as caught:
        client.batch(mixed)
    assert caught.value.commands == (("a", "crm.lead.list"), ("w", "crm.deal.add"))
    assert client.requests_made == 3


def test_backoff_is_capped_exponential_with_jitter_and_per_request(rsps, clock):
    client = make_client(clock, retry=RetryPolicy(attempts=6, base=0.5, cap=3.0))
    _add(rsps, "crm.lead.list", *([requests.ReadTimeout("t")] * 5), OK)
    _add(rsps, "crm.deal.list", *([requests.ReadTimeout("t")] * 5), OK)
    client.call("crm.lead.list")
    first = list(clock.sleeps)
    clock.sleeps.clear()
    client.call("crm.deal.list")  # its own five failures: the budget is not shared
    for sleeps in (first, clock.sleeps):
        assert len(sleeps) == 5
        for attempt, slept in enumerate(sleeps, start=1):
            ceiling = min(3.0, 0.5 * 2 ** (attempt - 1))
            assert ceiling / 2 <= slept <= ceiling
    assert client.requests_made == 12


def test_a_busy_portal_costs_no_attempts(rsps, clock):
    client = make_client(clock, retry=RetryPolicy(attempts=2))
    _add(rsps, "crm.deal.add", QLE, QLE, QLE, QLE, QLE, {"result": 7})
    assert client.call("crm.deal.add", {"fields": {"TITLE": "x"}}).result == 7
    assert (client.requests_made, client.requests_refused) == (6, 5)


def test_a_batch_of_writes_refused_with_503_is_sent_again_once_unchanged(rsps, client):
    done = {
        "result": {
            "result": {"d1": 11, "d2": 12},
            "result_error": [],
            "result_total": [],
            "result_next": [],
            "result_time": [],
        }
    }
    _add(rsps, "batch", QLE, done)
    writes = [
        Command("d1", "crm.deal.add", {"fields": {"TITLE": "a", "ORIGIN_ID": "1"}}),
        Command("d2", "crm.deal.add", {"fields": {"TITLE": "b", "ORIGIN_ID": "2"}}),
    ]
    assert client.batch(writes).results == {"d1": 11, "d2": 12}
    assert (client.requests_made, client.requests_refused) == (2, 1)
    assert sent_json(rsps.calls[0]) == sent_json(rsps.calls[1])  # the very same batch, once


def test_a_portal_that_lets_nothing_through_for_max_busy_wait_raises(rsps, clock):
    client = make_client(
        clock, rate=RateLimit(per_second=2.0, burst=50), retry=RetryPolicy(max_busy_wait=120)
    )
    rsps.add("POST", WEBHOOK + "crm.lead.list", json=QLE[0], status=503)  # answers every call
    start = clock.monotonic()
    with pytest.raises(e.QueryLimitExceeded):
        client.call("crm.lead.list")
    assert clock.monotonic() - start >= 120
    assert client.requests_refused == client.requests_made > 1


def test_overload_and_client_errors_are_not_retried(rsps, client):
    _add(rsps, "crm.lead.list", ({"error": "OVERLOAD_LIMIT", "error_description": "blocked"}, 503))
    with pytest.raises(e.Overloaded):
        client.call("crm.lead.list")
    _add(rsps, "crm.lead.get", ({"error": "", "error_description": "Not found"}, 400))
    with pytest.raises(e.NotFound):
        client.call("crm.lead.get", {"id": 1})
    assert client.requests_made == 2


def test_429_waits_until_operating_reset_at_then_retries_even_a_write(rsps, client, clock):
    reset_at = clock.now() + 95
    body = dict(fixture("error.OPERATION_TIME_LIMIT"), time={"operating_reset_at": reset_at})
    _add(rsps, "crm.item.update", (body, 429), OK)
    client.call("crm.item.update", {"entityTypeId": 1, "id": 3, "fields": {"title": "t"}})
    assert client.requests_made == 2
    assert clock.now() >= reset_at
    assert any(s == pytest.approx(95, abs=0.01) for s in clock.sleeps)


def test_429_without_reset_uses_the_last_known_reset(rsps, client, clock):
    reset_at = clock.now() + 40
    _add(
        rsps,
        "crm.item.list",
        {"result": {"items": []}, "time": {"operating": 12.0, "operating_reset_at": reset_at}},
        (fixture("error.OPERATION_TIME_LIMIT"), 429),
        OK,
    )
    client.call("crm.item.list", {"entityTypeId": 1})
    client.call("crm.item.list", {"entityTypeId": 1})
    assert clock.now() >= reset_at


def test_a_block_longer_than_the_limit_is_raised_without_sleeping_and_remembered(rsps, clock):
    client = make_client(clock, retry=RetryPolicy(max_block_wait=60))
    reset_at = clock.now() + 500
    body = dict(fixture("error.OPERATION_TIME_LIMIT"), time={"operating_reset_at": reset_at})
    _add(rsps, "crm.lead.update", (body, 429))
    with pytest.raises(e.OperationTimeLimit) as caught:
        client.call("crm.lead.update", {"id": 1, "fields": {}})
    assert caught.value.reset_at == pytest.approx(reset_at)
    with pytest.raises(e.OperationTimeLimit, match="blocked for another 500 s"):
        client.call("crm.lead.update", {"id": 1, "fields": {}})
    assert client.requests_made == 1  # the second call never left
    assert clock.sleeps == []


def test_the_client_slows_down_before_the_operating_limit(rsps, client, clock):
    reset_at = clock.now() + 30
    _add(
        rsps,
        "crm.lead.list",
        {
            "result": [],
            "time": {"duration": 2.0, "operating": 470.0, "operating_reset_at": reset_at},
        },
        OK,
    )
    _add(rsps, "crm.deal.list", OK)
    client.call("crm.lead.list")
    client.call("crm.deal.list")  # another method: no wait
    assert clock.sleeps == []
    client.call("crm.lead.list")  # near 480 s: wait for the reset instead of drawing a 429
    assert clock.sleeps == [pytest.approx(30)]


def test_batch_sub_call_times_feed_the_budget_per_inner_method(rsps, client, clock):
    heavy = {"duration": 440.0}
    _add(
        rsps,
        "batch",
        {
            "result": {
                "result": {"a": 1},
                "result_error": [],
                "result_total": [],
                "result_next": [],
                "result_time": {"a": heavy},
            }
        },
    )
    _add(rsps, "crm.deal.list", OK)
    _add(rsps, "crm.lead.list", OK)
    client.batch([Command("a", "crm.lead.list")])
    client.call("crm.deal.list")
    assert clock.sleeps == []
    client.call("crm.lead.list")  # 440 s of crm.lead.list in the window: wait it out
    assert clock.sleeps and clock.sleeps[0] == pytest.approx(600)


def test_a_503_fills_the_mirrored_bucket_and_lowers_the_rate(rsps, clock):
    client = make_client(clock, rate=RateLimit(per_second=2.0, burst=50))
    _add(rsps, "crm.lead.list", OK, QLE, OK, OK)
    client.call("crm.lead.list")
    assert clock.sleeps == []
    # past one drain time (50 / 2 s) of the client's start: a 503 now is a neighbour's share,
    # not the level a burst before the client's first request left (tests/rest/test_adaptive.py)
    clock.advance(30)
    client.call("crm.lead.list")
    # The first 503 comes with nothing learned yet: the cut is the largest allowed (30%), and
    # the request waits until the full portal bucket has drained 3 requests (2 of headroom).
    assert client.bucket.rate == pytest.approx(1.4, abs=0.001)  # + growth while it waited
    assert 3 / 1.4 <= sum(clock.sleeps) < 4 / 1.4  # plus a jitter under one interval
    client.call("crm.lead.list")
    # the next one catches up on the jitter: 4 intervals in all, plus its own jitter
    assert 4 / 1.4 <= sum(clock.sleeps) < 5 / 1.4


@pytest.mark.parametrize(
    ("method", "read"),
    [
        ("crm.lead.list", True),
        ("crm.item.get", True),
        ("crm.deal.fields", True),
        ("crm.settings.mode.get", True),
        ("crm.status.list", True),
        ("user.current", True),
        ("user.get", True),
        ("profile", True),
        ("app.info", True),
        ("crm.enum.settings.mode", True),
        ("crm.duplicate.findbycomm", True),
        ("crm.lead.add", False),
        ("crm.lead.update", False),
        ("crm.activity.binding.add", False),
        ("event.offline.get", False),
        ("user.add", False),
        ("crm.deal.productrows.set", False),
        ("batch", False),
    ],
)
def test_read_classification(method, read):
    assert is_read(method) is read
