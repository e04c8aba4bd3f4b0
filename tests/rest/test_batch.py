"""Batch: every command's result and error side by side, doc shapes, chunking, validation."""

from __future__ import annotations

import pytest

from b24app import errors as e
from b24app.rest import BatchResult, Command
from tests.rest.conftest import WEBHOOK, fixture, sent_json

USER = Command("get_user", "user.current", {})
DEPARTMENT = Command("get_department", "department.get", {"ID": USER.ref("UF_DEPARTMENT", 0)})


def test_success_fixture_exposes_results_totals_and_nested_times(rsps, client):
    rsps.add("POST", WEBHOOK + "batch", json=fixture("batch.success"))
    result = client.batch([USER, DEPARTMENT])
    assert result["get_user"]["NAME"] == "John"
    assert result["get_department"] == [{"ID": "1", "NAME": "DEMO", "SORT": 500}]
    assert result.errors == {}
    assert result.totals == {"get_department": 1}
    assert result.nexts == {}
    # result_time sits under `result` (fast-bitrix24 looked for it at the top level)
    assert result.times["get_user"].duration == pytest.approx(0.0032150745391845703)
    assert result.time.duration == pytest.approx(0.05011296272277832)
    assert sent_json(rsps.calls[0]) == {
        "halt": 0,
        "cmd": {
            "get_user": "user.current",
            "get_department": "department.get?ID=$result[get_user][UF_DEPARTMENT][0]",
        },
    }


def test_halt0_fixture_returns_every_error_typed(rsps, client):
    rsps.add("POST", WEBHOOK + "batch", json=fixture("batch.result_error.halt0"))
    result = client.batch([USER, DEPARTMENT])
    assert result.results == {}
    assert set(result.errors) == {"get_user", "get_department"}
    for key, method in (("get_user", "user.current"), ("get_department", "department.get")):
        error = result.errors[key]
        assert type(error) is e.InsufficientScope
        assert (error.code, error.method, error.status) == ("insufficient_scope", method, None)
    assert result.skipped == ()
    assert (result.totals, result.nexts, result.times) == ({}, {}, {})


def test_halt1_fixture_marks_the_rest_as_not_run(rsps, client):
    rsps.add("POST", WEBHOOK + "batch", json=fixture("batch.result_error.halt1"))
    result = client.batch([USER, DEPARTMENT], halt=True)
    assert list(result.errors) == ["get_user"]
    assert result.skipped == ("get_department",)
    with pytest.raises(KeyError):
        result["get_department"]
    with pytest.raises(e.InsufficientScope):
        result.raise_first()
    assert sent_json(rsps.calls[0])["halt"] == 1


def test_partial_failure_keeps_successes_and_errors(rsps, client):
    rsps.add(
        "POST",
        WEBHOOK + "batch",
        json={
            "result": {
                "result": {"c": 11, "d": 12},
                "result_error": {
                    "x": {"error": "", "error_description": "Not found"},
                    "q": {
                        "error": "OPERATION_TIME_LIMIT",
                        "error_description": "Method is blocked due to operation time limit.",
                    },
                },
                "result_total": [],
                "result_next": [],
                "result_time": [],
            },
            "time": {"duration": 0.1},
        },
    )
    commands = [
        Command("c", "crm.contact.add", {"fields": {"NAME": "A"}}),
        Command("x", "crm.lead.update", {"id": 999, "fields": {"STATUS_ID": "X"}}),
        Command("d", "crm.deal.add", {"fields": {"CONTACT_ID": "$result[c]"}}),
        Command("q", "crm.item.update", {"id": 1}),
    ]
    result = client.batch(commands)
    assert result.results == {"c": 11, "d": 12}
    assert type(result.errors["x"]) is e.NotFound
    assert result.errors["x"].method == "crm.lead.update"
    assert type(result.errors["q"]) is e.OperationTimeLimit
    assert result.ok("c") and not result.ok("x")
    assert result["d"] == 12
    with pytest.raises(e.NotFound):
        result["x"]


def test_numeric_keys_come_back_as_a_json_list(rsps, client):
    # A PHP array keyed 0..n-1 is encoded as a JSON list.
    rsps.add(
        "POST",
        WEBHOOK + "batch",
        json={
            "result": {
                "result": [{"ID": "1"}, {"ID": "2"}],
                "result_error": [],
                "result_total": [3, 4],
                "result_next": [50],
                "result_time": [],
            }
        },
    )
    result = client.batch(
        [Command("0", "crm.lead.get", {"id": 1}), Command("1", "crm.lead.get", {"id": 2})]
    )
    assert result.results == {"0": {"ID": "1"}, "1": {"ID": "2"}}
    assert result.totals == {"0": 3, "1": 4}
    assert result.nexts == {"0": 50}


def test_batch_validation(rsps, client):
    with pytest.raises(e.UsageError, match="at most 50"):
        client.batch([Command(f"k{i}", "crm.lead.get", {"id": i}) for i in range(51)])
    with pytest.raises(e.UsageError, match="used twice"):
        client.batch([Command("a", "crm.lead.get"), Command("a", "crm.deal.get")])
    with pytest.raises(e.UsageError, match="another batch"):
        client.batch([Command("a", "batch", {"cmd": {}})])
    with pytest.raises(e.UsageError, match="letters, digits"):
        client.batch([Command("a]b", "crm.lead.get")])
    assert client.batch([]) == BatchResult()
    assert client.requests_made == 0


def _echo_batch(request):
    """A portal that adds every command and answers its key back; fails keys starting 'bad'."""
    import json

    cmd = json.loads(request.body)["cmd"]
    result = {k: f"id-{k}" for k in cmd if not k.startswith("bad")}
    errors = {
        k: {"error": "ERROR_CORE", "error_description": "no"} for k in cmd if k.startswith("bad")
    }
    return (
        200,
        {},
        json.dumps(
            {
                "result": {
                    "result": result or [],
                    "result_error": errors or [],
                    "result_total": [],
                    "result_next": [],
                    "result_time": [],
                }
            }
        ),
    )


def test_batch_many_chunks_into_as_few_requests_as_possible(rsps, client):
    rsps.add_callback("POST", WEBHOOK + "batch", callback=_echo_batch)
    commands = [
        Command(f"bad{i}" if i == 70 else f"c{i}", "crm.deal.add", {"fields": {"TITLE": str(i)}})
        for i in range(120)
    ]
    result = client.batch_many(commands)
    assert client.requests_made == 3
    assert [len(sent_json(c)["cmd"]) for c in rsps.calls] == [50, 50, 20]
    assert len(result.results) == 119
    assert list(result.errors) == ["bad70"]
    assert result.keys == tuple(c.key for c in commands)


def test_batch_many_records_an_unknown_chunk_and_goes_on(rsps, client):
    import requests

    rsps.add("POST", WEBHOOK + "batch", body=requests.ReadTimeout("slow"))
    rsps.add_callback("POST", WEBHOOK + "batch", callback=_echo_batch)
    commands = [Command(f"c{i}", "crm.deal.add", {"fields": {"TITLE": str(i)}}) for i in range(60)]
    result = client.batch_many(commands)
    assert client.requests_made == 2  # the timed-out write chunk was not repeated
    assert len(result.errors) == 50
    unknown = result.errors["c0"]
    assert type(unknown) is e.OutcomeUnknown
    assert unknown.commands[:2] == (("c0", "crm.deal.add"), ("c1", "crm.deal.add"))
    assert sorted(result.results) == sorted(f"c{i}" for i in range(50, 60))


def test_batch_many_halt_stops_after_the_failing_chunk(rsps, client):
    rsps.add_callback("POST", WEBHOOK + "batch", callback=_echo_batch)
    commands = [Command("bad0", "crm.deal.add", {})] + [
        Command(f"c{i}", "crm.deal.add", {}) for i in range(1, 80)
    ]
    result = client.batch_many(commands, halt=True)
    assert client.requests_made == 1
    assert list(result.errors) == ["bad0"]
    assert len(result.skipped) == 30


def test_batch_many_refuses_references_across_chunks(rsps, client):
    first = Command("c0", "crm.contact.add", {})
    commands = (
        [first]
        + [Command(f"c{i}", "crm.deal.add", {}) for i in range(1, 50)]
        + [Command("late", "crm.deal.add", {"fields": {"CONTACT_ID": first.ref()}})]
    )
    with pytest.raises(e.UsageError, match=r"\$result\[c0\], which is not in the same batch"):
        client.batch_many(commands)
    assert client.requests_made == 0
