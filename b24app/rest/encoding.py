"""Parameters as Bitrix24 reads them: JSON bodies, and PHP query strings for batch sub-calls.

Bitrix24 is PHP: booleans are the strings "Y"/"N", and a batch command is a query string that the
portal parses with PHP's rules (`fields[PHONE][0][VALUE]=...`), inside the JSON body.
https://apidocs.bitrix24.com/settings/how-to-call-rest-api/data-encoding.html
https://apidocs.bitrix24.com/settings/how-to-call-rest-api/batch.html
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from b24app.errors import UsageError

# `$result[key][0][ID]` (and `$result_next[...]` etc.): substituted by the portal, so never escaped.
_REF = re.compile(r"^\$result(?:_[a-z]+)?(?:\[[\w.\-]*\])+$")


def to_json(value: Any, path: str = "params") -> Any:
    """`value` made JSON-ready the way Bitrix24 reads it: bools as "Y"/"N", None as null."""
    if isinstance(value, bool):
        return "Y" if value else "N"
    if value is None or isinstance(value, int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_json(v, f"{path}[{k}]") for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return _scalar(value, path)


def _scalar(value: Any, path: str) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise UsageError(f"{path}: cannot send a {type(value).__name__} to Bitrix24")


def _text(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "Y" if value else "N"
    if value is None:
        # PHP query strings have no null: an empty value is what a cleared form field sends.
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return _scalar(value, path)


# What `quote(text, safe="")` leaves as it is (RFC 3986 unreserved): most keys and values.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def _quoted(text: str) -> str:
    return text if _UNRESERVED.fullmatch(text) else quote(text, safe="")


def _pairs(value: Any, key: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):  # the common case first: no other check needed
        yield key, value if value.startswith("$result") and _REF.match(value) else _quoted(value)
    elif isinstance(value, Mapping):
        for sub, item in value.items():
            yield from _pairs(item, f"{key}[{_quoted(str(sub))}]")
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            yield from _pairs(item, f"{key}[{index}]")
    else:
        yield key, _quoted(_text(value, key))


def php_query(params: Mapping[str, Any]) -> str:
    """`params` as a PHP query string: nested keys in brackets, every value percent-encoded
    (so `+` stays a plus), `$result[...]` references left as they are."""
    return "&".join(
        f"{key}={value}"
        for name, item in params.items()
        for key, value in _pairs(item, _quoted(str(name)))
    )


def command_string(method: str, params: Mapping[str, Any]) -> str:
    """One batch command: `method?query`."""
    query = php_query(params)
    return f"{method}?{query}" if query else method
