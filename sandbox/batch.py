"""The `batch` method: up to 50 sub-calls in one HTTP request, with `$result[...]` chaining.

https://apidocs.bitrix24.com/settings/how-to-call-rest-api/batch.html

Where the docs are silent this mirrors Bitrix24's own code (read in a public mirror of its REST
module, `CRestProvider::methodsBatch` and `CRestUtil::processBatchElement`):

* Top-level keys are case-insensitive (`cmd`/`CMD`, `halt`/`HALT`), and `halt` is PHP-truthy: only
  an empty string, "0", 0 and false mean "don't halt" -- so a form sending `halt=false` halts.
* Commands past the 50th are not run; each gets `ERROR_BATCH_LENGTH_EXCEEDED` in `result_error`,
  and `halt=1` stops at the 51st (rest/classes/general/rest_provider.php:287,358-363,379-382).
* A command that is not a string is skipped without a trace, but counts towards the 50
  (rest_provider.php:287-292).
* Each section (result, result_error, result_total, result_next, result_time) is a PHP array
  json_encode'd: `[]` when empty, a JSON list when its keys are 0..n-1 in order (numeric `cmd`
  keys, e.g. fast_bitrix24's `get_by_ID`), an object otherwise (rest_provider.php:366-377,386-392;
  recorded: fast_bitrix24 tests/real_responses/crm_get_batch_of_two_error.py,
  crm_get_batch_mix_success_and_errors.py, batch_list_empty.py).
* OPERATION_TIME_LIMIT and every other error of a command arrive in `result_error` with HTTP 200
  for the batch (rest_provider.php:366-377).
* A sub-call's query string is parsed like PHP's parse_str, so a raw `+` in a JSON-body command
  becomes a space, and anything after `#` is dropped (parse_url's fragment).
* `$result[key][field]...` (also `$next`, `$total`, `$time`, `$error`) walks the earlier answers one
  key at a time and STOPS at the first key that is missing or null, keeping what it reached. A
  reference to a failed or unknown command therefore does not fail: when the whole parameter is
  the reference it becomes the entire map of successful results so far (an empty list if there
  are none); inside a longer string an array becomes "Array". Clients must check result_error
  themselves, exactly as on Bitrix24.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.errors import ApiError
from sandbox.wire import parse_php_query, php_json_container, time_object

MAX_COMMANDS = 50
_REFERENCE = re.compile(r"\$(result|next|total|time|error)(\S*)", re.IGNORECASE)
_PATH = re.compile(r"\[([^\]]+)\]")


@dataclass(frozen=True)
class SubCall:
    """One parsed command of a batch."""

    key: str
    method: str
    params: dict[str, Any]


@dataclass(frozen=True)
class SubResult:
    """What one sub-call produced: a result (+total/next) or an error."""

    result: Any = None
    total: int | None = None
    next: int | None = None
    error: ApiError | None = None
    operating: float | None = None  # the method's `time.operating` after this command


# Runs one sub-call: (method, params) -> SubResult. The server supplies auth, scopes and limits.
Runner = Callable[[str, dict[str, Any]], SubResult]


def php_truthy(value: Any) -> bool:
    """PHP's (bool) cast: "", "0", 0, 0.0, false, null and empty arrays are false."""
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, dict | list):
        return bool(value)
    return bool(value)


def php_string(value: Any) -> str:
    """PHP's string conversion, used when a reference sits inside a longer string."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, dict | list):
        return "Array"
    return str(value)


def _walk(node: Any, path: list[str]) -> Any:
    for key in path:
        if isinstance(node, dict) and node.get(key) is not None:
            node = node[key]
        elif (
            isinstance(node, list)
            and key.isdigit()
            and int(key) < len(node)
            and node[int(key)] is not None
        ):
            node = node[int(key)]
        else:
            break
    return node


def substitute(value: str, answers: dict[str, dict[str, Any]]) -> Any:
    """Replace `$result[key][...]` references in one parameter value (see the module doc)."""
    for match in _REFERENCE.finditer(value):
        path = _PATH.findall(match.group(2))
        if not path:
            continue
        # PHP indexes its answers array by the matched name as written ("Result" is not there).
        found = answers.get(match.group(1))
        reached = _walk(found if found else [], path) if found is not None else None
        if match.group(0) == value:
            return reached
        value = value.replace(match.group(0), php_string(reached))
    return value


def _substitute_all(params: Any, answers: dict[str, dict[str, Any]]) -> Any:
    if isinstance(params, dict):
        return {k: _substitute_all(v, answers) for k, v in params.items()}
    if isinstance(params, list):
        return [_substitute_all(v, answers) for v in params]
    if isinstance(params, str) and "$" in params:
        return substitute(params, answers)
    return params


def split_command(command: str) -> tuple[str, str]:
    """("crm.lead.list", "start=50&...") from "crm.lead.list?start=50&...#fragment"."""
    method, _, query = command.partition("?")
    return method.strip(), query.partition("#")[0]


def _upper_keys(params: dict[str, Any]) -> dict[str, Any]:
    return {str(k).upper(): v for k, v in params.items()}


def run_batch(params: dict[str, Any], run: Runner, clock: Callable[[], float]) -> dict[str, Any]:
    """Execute a batch; the `result` object of its answer."""
    top = _upper_keys(params)
    halt = php_truthy(top.get("HALT", False))
    commands = top.get("CMD")
    if isinstance(commands, list):
        commands = {str(i): c for i, c in enumerate(commands)}
    if not isinstance(commands, dict):
        commands = {}
    # PHP's answers array: result/next/total/time/error, each keyed by command key.
    answers: dict[str, dict[str, Any]] = {
        "result": {},
        "next": {},
        "total": {},
        "time": {},
        "error": {},
    }
    for count, (key, command) in enumerate(commands.items()):
        key = str(key)
        if count < MAX_COMMANDS and not isinstance(command, str):
            continue
        if count >= MAX_COMMANDS:
            outcome = SubResult(
                error=ApiError("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded", 400)
            )
            started = clock()
            tick = time.perf_counter()
        else:
            method, query = split_command(str(command))
            sub_params = _substitute_all(parse_php_query(query), answers) if query else {}
            started = clock()
            tick = time.perf_counter()
            outcome = run(method, sub_params)
        if outcome.error is not None:
            answers["error"][key] = outcome.error.body()
            if halt:
                break
            continue
        elapsed = time.perf_counter() - tick
        answers["result"][key] = outcome.result
        answers["time"][key] = time_object(
            started, started + elapsed, elapsed, operating=outcome.operating
        )
        if outcome.total is not None:
            answers["total"][key] = outcome.total
        if outcome.next is not None:
            answers["next"][key] = outcome.next
    return {
        "result": php_json_container(answers["result"]),
        "result_error": php_json_container(answers["error"]),
        "result_total": php_json_container(answers["total"]),
        "result_next": php_json_container(answers["next"]),
        "result_time": php_json_container(answers["time"]),
    }
