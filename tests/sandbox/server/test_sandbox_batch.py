"""`batch`: shapes, `$result` chaining, halt, limits, and the inconvenient PHP details."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from sandbox.batch import substitute
from sandbox.server import Sandbox

from .conftest import call


def batch(portal: Sandbox, cmd: Any, halt: Any = 0) -> dict[str, Any]:
    response = call(portal.webhook_url, "batch", halt=halt, cmd=cmd)
    assert response.status_code == 200
    return response.json()


def test_batch_answer_nests_result_error_total_next_time(portal: Sandbox) -> None:
    body = batch(portal, {"page": "crm.lead.list?select[]=ID&start=100", "me": "user.current"})
    result = body["result"]
    assert set(result) == {"result", "result_error", "result_total", "result_next", "result_time"}
    assert [row["ID"] for row in result["result"]["page"]] == [str(i) for i in range(101, 121)]
    assert result["result"]["me"]["ID"] == "1"
    assert result["result_error"] == []
    assert result["result_total"] == {"page": 120}
    assert result["result_next"] == []  # the last page: no next
    assert set(result["result_time"]) == {"page", "me"}
    # Each command's time carries its method's `operating` (fast_bitrix24
    # tests/real_responses/batch_list_empty.py); `batch` itself is never charged
    # (rest/lib/engine/access/loadlimiter.php:31-33), so its own `operating` stays 0.
    assert set(result["result_time"]["me"]) == {
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
        "operating",
    }
    assert body["time"]["operating"] == 0


def test_result_chaining_with_field_and_list_index(portal: Sandbox) -> None:
    body = batch(
        portal,
        {
            "add": "crm.lead.add?fields[TITLE]=Chained",
            "get": "crm.lead.get?id=$result[add]",
            "first": "crm.lead.list?filter[>ID]=10&select[]=ID",
            "again": "crm.lead.get?id=$result[first][0][ID]",
        },
    )
    result = body["result"]["result"]
    new_id = result["add"]
    assert result["get"]["TITLE"] == "Chained"
    assert result["get"]["ID"] == str(new_id)
    assert result["again"]["ID"] == "11"
    assert body["result"]["result_next"] == {"first": 50}


def test_halt_zero_runs_everything_halt_one_stops_at_first_error(portal: Sandbox) -> None:
    cmd = {
        "bad": "crm.lead.get?id=999999",
        "good": "crm.lead.get?id=1",
        "also_bad": "no.such.method",
    }
    relaxed = batch(portal, cmd, halt=0)["result"]
    assert set(relaxed["result_error"]) == {"bad", "also_bad"}
    assert relaxed["result_error"]["also_bad"]["error"] == "ERROR_METHOD_NOT_FOUND"
    assert set(relaxed["result"]) == {"good"}
    strict = batch(portal, cmd, halt=1)["result"]
    assert set(strict["result_error"]) == {"bad"}
    assert strict["result"] == []
    assert strict["result_time"] == []


def test_halt_false_as_a_form_string_halts(portal: Sandbox) -> None:
    # PHP's (bool)"false" is true: a form that sends halt=false gets halting.
    form = "halt=false&cmd[bad]=crm.lead.get%3Fid%3D999999&cmd[good]=crm.lead.get%3Fid%3D1"
    response = requests.post(
        portal.webhook_url + "batch",
        data=form,
        timeout=10,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    result = response.json()["result"]
    assert set(result["result_error"]) == {"bad"}
    assert result["result"] == []


def test_double_encoded_form_commands(portal: Sandbox) -> None:
    inner = "crm.lead.add?" + "fields[TITLE]=" + quote("A & B = 100%")
    form = (
        "halt=0&cmd[add]="
        + quote(inner, safe="")
        + "&cmd[get]="
        + quote("crm.lead.get?id=$result[add]", safe="")
    )
    response = requests.post(
        portal.webhook_url + "batch",
        data=form,
        timeout=10,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    result = response.json()["result"]["result"]
    assert result["get"]["TITLE"] == "A & B = 100%"


def test_raw_plus_in_a_json_command_becomes_a_space(portal: Sandbox) -> None:
    body = batch(
        portal, {"add": "crm.lead.add?fields[TITLE]=+49 555", "get": "crm.lead.get?id=$result[add]"}
    )
    assert body["result"]["result"]["get"]["TITLE"] == " 49 555"


def test_list_cmd_gives_list_containers(portal: Sandbox) -> None:
    body = batch(portal, ["crm.lead.get?id=1", "crm.lead.get?id=2"])
    assert [row["ID"] for row in body["result"]["result"]] == ["1", "2"]


def test_more_than_fifty_commands_run_fifty(portal: Sandbox) -> None:
    cmd = {f"c{i:02}": f"crm.lead.add?fields[TITLE]=Bulk {i}" for i in range(53)}
    before = portal.portal.counts()["lead"]
    result = batch(portal, cmd)["result"]
    assert len(result["result"]) == 50
    assert set(result["result_error"]) == {"c50", "c51", "c52"}
    assert result["result_error"]["c50"]["error"] == "ERROR_BATCH_LENGTH_EXCEEDED"
    assert portal.portal.counts()["lead"] == before + 50


def test_nested_batch_is_not_allowed(portal: Sandbox) -> None:
    result = batch(portal, {"inner": "batch?cmd[x]=profile", "ok": "profile"})["result"]
    assert result["result_error"]["inner"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    assert result["result"]["ok"]["ID"] == "1"


def test_reference_to_a_failed_command_passes_what_it_reached(portal: Sandbox) -> None:
    # Bitrix24 stops walking at the first missing key: the parameter becomes the whole map of
    # successful results, not an error -- the dependent call fails on its own terms.
    body = batch(
        portal,
        {
            "ok": "crm.lead.get?id=1",
            "bad": "crm.lead.get?id=999999",
            "dependent": "crm.lead.add?fields[TITLE]=x$result[bad][ID]y",
        },
    )
    result = body["result"]
    created = result["result"]["dependent"]
    assert set(result["result_error"]) == {"bad"}
    lead = call(portal.webhook_url, "crm.lead.get", id=created).json()["result"]
    # The reference regex also swallows the non-space tail ("y"), as Bitrix24's does.
    assert lead["TITLE"] == "xArray"


def test_substitute_walks_like_php() -> None:
    answers = {
        "result": {"a": {"ID": "7", "LIST": [{"ID": "9"}], "NONE": None}},
        "next": {"a": 50},
        "total": {},
        "time": {},
        "error": {},
    }
    assert substitute("$result[a][ID]", answers) == "7"
    assert substitute("$result[a][LIST][0][ID]", answers) == "9"
    assert substitute("id-$result[a][ID]", answers) == "id-7"
    assert substitute("$next[a]", answers) == 50
    assert substitute("$result[a][NONE]", answers) == answers["result"]["a"]
    assert substitute("$result[missing][ID]", answers) == answers["result"]
    assert substitute("$total[x]", answers) == []
    assert substitute("$Result[a][ID]", answers) is None
    assert substitute("no reference $ here", answers) == "no reference $ here"


def test_batch_is_one_request_and_each_sub_call_is_counted(portal: Sandbox) -> None:
    before = portal.stats()
    batch(portal, {f"g{i}": "crm.lead.get?id=1" for i in range(10)})
    after = portal.stats()
    assert after["http_requests"] == before["http_requests"] + 1
    gets = after["sub_calls"]["crm.lead.get"] - before["sub_calls"].get("crm.lead.get", 0)
    assert gets == 10


def test_sub_calls_respect_scopes(portal: Sandbox) -> None:
    hook = portal.add_webhook(scope="crm")
    response = requests.post(
        hook + "batch",
        json={"cmd": {"me": "user.current", "mode": "crm.settings.mode.get"}},
        timeout=10,
    )
    result = response.json()["result"]
    assert result["result_error"]["me"]["error"] == "insufficient_scope"
    assert result["result"] == {"mode": 1}


def test_numeric_keys_give_json_lists_as_recorded(portal: Sandbox) -> None:
    """fast_bitrix24 tests/real_responses/crm_get_batch_mix_success_and_errors.py: with `cmd`
    keys 0, 1 and an ID, the errors of 0 and 1 form a JSON list while the ID-keyed result stays an
    object; empty sections are [] (rest/classes/general/rest_provider.php:366-377,386-392)."""
    cmd = {"0": "crm.lead.get?ID=0", "1": "crm.lead.get?ID=999999", "35": "crm.lead.get?ID=35"}
    result = batch(portal, cmd)["result"]
    assert list(result["result"]) == ["35"]
    assert result["result_error"] == [
        {"error": "", "error_description": "ID is not defined or invalid."},
        {"error": "", "error_description": "Not found"},
    ]
    assert result["result_total"] == [] and result["result_next"] == []
    assert list(result["result_time"]) == ["35"]
    # crm_get_batch_of_two_error.py: nothing succeeded, every other section is [].
    only_errors = batch(portal, {"0": "crm.lead.get?ID=0", "1": "crm.lead.get?ID=999999"})
    assert only_errors["result"]["result"] == []
    assert only_errors["result"]["result_time"] == []
    assert len(only_errors["result"]["result_error"]) == 2
    # All keys 0..n-1 succeeding: every section that has entries is a list.
    lists = batch(portal, ["crm.lead.list?select[]=ID", "crm.lead.get?id=2"])["result"]
    assert isinstance(lists["result"], list) and isinstance(lists["result_time"], list)
    assert lists["result_total"] == [120]  # key 0 alone is 0..0: a list too
    assert lists["result_next"] == [50]
    # Key 1 alone is not 0..n-1: an object.
    second = batch(portal, ["crm.lead.get?id=1", "crm.lead.list?select[]=ID"])["result"]
    assert second["result_total"] == {"1": 120}


def test_a_command_that_is_not_a_string_is_skipped_silently(portal: Sandbox) -> None:
    """rest/classes/general/rest_provider.php:287-292: no result, no error - but it counts
    towards the 50."""
    cmd: dict[str, Any] = {"nested": {"x": "profile"}, "number": 5, "ok": "profile"}
    result = batch(portal, cmd)["result"]
    assert list(result["result"]) == ["ok"]
    assert result["result_error"] == []
    many: dict[str, Any] = {f"n{i}": [i] for i in range(50)}
    many["late"] = "profile"
    late = batch(portal, many)["result"]
    assert late["result"] == []
    assert late["result_error"]["late"]["error"] == "ERROR_BATCH_LENGTH_EXCEEDED"


def test_batch_download_and_upload_are_refused_per_command(portal: Sandbox) -> None:
    """rest/classes/general/rest_provider.php:304-314: HTTP 200, the others still run."""
    response = call(
        portal.webhook_url,
        "batch",
        cmd={"b": "batch?cmd[x]=profile", "d": "download", "u": "upload", "ok": "profile"},
    )
    assert response.status_code == 200
    result = response.json()["result"]
    assert {k: v["error"] for k, v in result["result_error"].items()} == {
        "b": "ERROR_BATCH_METHOD_NOT_ALLOWED",
        "d": "ERROR_BATCH_METHOD_NOT_ALLOWED",
        "u": "ERROR_BATCH_METHOD_NOT_ALLOWED",
    }
    assert result["result_error"]["b"]["error_description"] == (
        "Method is not allowed for batch usage"
    )
    assert list(result["result"]) == ["ok"]


def test_halt_stops_at_the_fifty_first_command(portal: Sandbox) -> None:
    """rest/classes/general/rest_provider.php:358-363,379-382: HTTP 200, 50 run, the 51st gets
    ERROR_BATCH_LENGTH_EXCEEDED and halt=1 stops there."""
    cmd = {f"c{i:02}": "profile" for i in range(53)}
    result = batch(portal, cmd, halt=1)["result"]
    assert len(result["result"]) == 50
    assert result["result_error"] == {
        "c50": {
            "error": "ERROR_BATCH_LENGTH_EXCEEDED",
            "error_description": "Max batch length exceeded",
        }
    }


def test_a_command_without_scope_gets_insufficient_scope_with_no_text(portal: Sandbox) -> None:
    """rest/classes/general/rest.php:970-976: CRestServerBatchItem raises
    OAuthException(['error' => 'insufficient_scope']) - the code, an empty description."""
    hook = portal.add_webhook(scope="crm")
    response = requests.post(hook + "batch", json={"cmd": {"me": "user.current"}}, timeout=10)
    assert response.status_code == 200
    assert response.json()["result"]["result_error"] == {
        "me": {"error": "insufficient_scope", "error_description": ""}
    }
