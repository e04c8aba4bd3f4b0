"""The REST wire format: PHP-style request parameters in, Bitrix24 JSON envelopes out.

Bitrix24 is PHP: a GET query, a form body (`fields[PHONE][0][VALUE]=..`, `select[]=ID`) and a JSON
body all end up as one PHP array, so all three must give the same params here.
https://apidocs.bitrix24.com/settings/how-to-call-rest-api/data-encoding.html
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from werkzeug.wrappers import Request, Response

from sandbox.errors import ApiError

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
_PHP_INT = re.compile(r"-?[1-9][0-9]*|0")


class _PhpArray:
    """A PHP array under construction: ordered keys plus PHP's "next integer index" counter."""

    __slots__ = ("explicit", "items", "next_index")

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}
        self.next_index = 0
        self.explicit = False  # True once a key was given (`a[x]`, `a[0]`), not only `a[]`

    def child(self, key: str | None) -> _PhpArray:
        """The nested array at `key` (None = `[]`, append), created when missing or scalar."""
        key = self._key(key)
        node = self.items.get(key)
        if not isinstance(node, _PhpArray):
            node = _PhpArray()
            self.items[key] = node
        return node

    def set(self, key: str | None, value: str) -> None:
        """Store a scalar at `key` (None = append)."""
        self.items[self._key(key)] = value

    def _key(self, key: str | None) -> str:
        if key is None:
            key = str(self.next_index)
            self.next_index += 1
            return key
        self.explicit = True
        if _PHP_INT.fullmatch(key):
            self.next_index = max(self.next_index, int(key) + 1)
        return key

    def export(self) -> dict[str, Any] | list[Any]:
        """A JSON-like value: a list when built only by `[]`, else a dict with string keys."""
        values = {k: v.export() if isinstance(v, _PhpArray) else v for k, v in self.items.items()}
        return list(values.values()) if not self.explicit else values


def _split_key(raw: str) -> tuple[str, list[str | None]] | None:
    """Split `fields[PHONE][0][]` into ("fields", ["PHONE", "0", None]) like PHP's parse_str."""
    raw = raw.lstrip(" ")
    bracket = raw.find("[")
    if bracket < 0 or raw.find("]", bracket) < 0:
        # PHP turns spaces and dots of a plain variable name into underscores.
        base = raw.replace(".", "_").replace(" ", "_")
        if bracket >= 0:
            base = base[:bracket] + "_" + base[bracket + 1 :]
        return (base, []) if base else None
    base = raw[:bracket].replace(".", "_").replace(" ", "_")
    if not base:
        return None
    segments: list[str | None] = []
    pos = bracket
    while pos < len(raw) and raw[pos] == "[":
        end = raw.find("]", pos)
        if end < 0:
            break
        inner = raw[pos + 1 : end]
        segments.append(inner if inner != "" else None)
        pos = end + 1
    return base, segments


def nest_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Build PHP's nested array from decoded (key, value) pairs; later keys win."""
    root = _PhpArray()
    root.explicit = True
    for raw_key, value in pairs:
        split = _split_key(raw_key)
        if split is None:
            continue
        base, segments = split
        if not segments:
            root.set(base, value)
            continue
        node = root.child(base)
        for segment in segments[:-1]:
            node = node.child(segment)
        node.set(segments[-1], value)
    exported = root.export()
    assert isinstance(exported, dict)
    return exported


def parse_php_query(query: str) -> dict[str, Any]:
    """Parse a query string as PHP's parse_str does (`+` is a space, brackets nest)."""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((unquote_plus(key), unquote_plus(value)))
    return nest_pairs(pairs)


def parse_request(request: Request) -> dict[str, Any]:
    """Every parameter of a REST request: query string, then the form or JSON body on top.

    Like Bitrix24 (PHP), a JSON body is read only when the Content-Type says so, and a body that
    is not valid JSON counts as no body at all.
    """
    params = parse_php_query(request.environ.get("QUERY_STRING", ""))
    if request.method != "POST":
        return params
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        params.update(nest_pairs(request.form.items(multi=True)))
        return params
    raw = request.get_data(cache=False)
    if not raw.strip():
        return params
    if mimetype == "application/json":
        try:
            body = json.loads(raw)
        except ValueError:
            return params
        if isinstance(body, dict):
            params.update(body)
        return params
    params.update(parse_php_query(raw.decode("utf-8", errors="replace")))
    return params


def iso_time(moment: float) -> str:
    """Bitrix24's `date_start`/`date_finish` format: ISO 8601 seconds with an offset."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def time_object(
    start: float,
    finish: float,
    processing: float,
    *,
    operating: float | None = None,
    operating_reset_at: int | None = None,
) -> dict[str, Any]:
    """The `time` object of every REST answer.

    https://apidocs.bitrix24.com/api-reference/data-types.html#time
    """
    body: dict[str, Any] = {
        "start": start,
        "finish": finish,
        "duration": finish - start,
        "processing": processing,
        "date_start": iso_time(start),
        "date_finish": iso_time(finish),
    }
    if operating_reset_at is not None:
        body["operating_reset_at"] = operating_reset_at
    if operating is not None:
        body["operating"] = operating
    return body


def php_json_container(mapping: dict[str, Any]) -> dict[str, Any] | list[Any]:
    """Render a PHP array as json_encode would: `[]` when empty or keyed 0..n-1, else an object."""
    if not mapping:
        return []
    if all(key == str(index) for index, key in enumerate(mapping)):
        return list(mapping.values())
    return mapping


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer with `Content-Type: application/json`, as every Bitrix24 answer has."""
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(payload, status=status, headers=headers, content_type=JSON_CONTENT_TYPE)


def error_response(error: ApiError, extra: dict[str, Any] | None = None) -> Response:
    """An error envelope `{"error", "error_description"}` with the error's HTTP status."""
    body: dict[str, Any] = error.body()
    if extra:
        body.update(extra)
    return json_response(body, error.status)
