"""Keyset listing: every row of a list method with no COUNT, about 2,500 rows per request.

Pages are ordered by ID ascending and filtered `>ID` = the last ID seen, with `start=-1` (no
COUNT); fifty such pages are chained inside one batch, each taking the last ID of the page before
through `$result[prev][49][ID]`. It stops at the first short page, and refuses to loop: a page whose
IDs do not advance, or a listing past `max_pages`, raises ListingError.
https://apidocs.bitrix24.com/settings/performance/huge-data.html
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from b24app.errors import ListingError, OperationTimeLimit, UsageError
from b24app.rest.command import Command
from b24app.rest.response import BatchResult
from b24app.vocabulary import PAGE_SIZE, PAGES_PER_REQUEST

if TYPE_CHECKING:
    from b24app.rest.client import PortalClient

log = logging.getLogger("b24app.rest")

DEFAULT_MAX_PAGES = 40_000  # two million rows


@dataclass(frozen=True)
class ListShape:
    """Where a list method keeps its rows and IDs: `id_field` in each row, `filter_field` in
    `filter`/`order`, rows under `result[items_key]` (None: `result` is the list)."""

    id_field: str = "ID"
    filter_field: str = "ID"
    items_key: str | None = None

    def rows(self, result: Any) -> list[dict[str, Any]]:
        """The rows of one page's result."""
        if self.items_key is not None:
            result = result.get(self.items_key) if isinstance(result, Mapping) else None
        if isinstance(result, Mapping):  # a PHP array with non-sequential keys
            result = list(result.values())
        return [row for row in result or [] if isinstance(row, Mapping)]

    def ref(self, key: str) -> str:
        """`$result[key]...[49][ID]`: the last ID of page `key`."""
        path = [self.items_key] if self.items_key else []
        return f"$result[{key}]" + "".join(f"[{p}]" for p in [*path, PAGE_SIZE - 1, self.id_field])


# Methods whose rows are not a bare list under `result` (b24jssdk#185: tasks use `id` in rows
# but `ID` in filters).
SHAPES: dict[str, ListShape] = {
    "crm.item.list": ListShape("id", "id", "items"),
    "crm.item.productrow.list": ListShape("id", "id", "productRows"),
    "crm.type.list": ListShape("id", "id", "types"),
    "tasks.task.list": ListShape("id", "ID", "tasks"),
}


def shape_of(method: str) -> ListShape:
    """The known shape of `method`, else the legacy one (`ID`, rows in `result`)."""
    return SHAPES.get(method.lower(), ListShape())


def _id(row: Mapping[str, Any], field: str, method: str) -> int | str:
    value = row.get(field)
    if value is None:
        raise ListingError(
            f"a row has no {field!r}; add it to select", code="LISTING", method=method
        )
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


def _prepare(
    method: str, params: Mapping[str, Any] | None, shape: ListShape
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    params = dict(params or {})
    field = shape.filter_field
    order = params.pop("order", None)
    if order and {str(k).upper(): str(v).upper() for k, v in dict(order).items()} != {
        field.upper(): "ASC"
    }:
        raise UsageError(f"{method}: keyset listing orders by {field} ascending; drop `order`")
    if "start" in params:
        raise UsageError(f"{method}: keyset listing sets `start` itself; drop it")
    flt = dict(params.pop("filter", None) or {})
    last = flt.pop(f">{field}", None)
    select = params.get("select")
    if select and "*" not in select and field not in select and shape.id_field not in select:
        params["select"] = [*select, shape.id_field]
    return {**params, "order": {field: "ASC"}, "start": -1}, flt, last


def iterate(
    client: PortalClient,
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    shape: ListShape | None = None,
    max_pages: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield every row of list `method` (see the module doc); `params` may hold filter/select."""
    shape = shape or shape_of(method)
    base, flt, last = _prepare(method, params, shape)
    cap = max_pages or DEFAULT_MAX_PAGES
    field = f">{shape.filter_field}"
    pages = rows_seen = blocked = 0
    first_request = client.requests_made
    while True:
        if pages >= cap:
            raise ListingError(
                f"more than {cap} pages; pass a larger max_pages", code="LISTING", method=method
            )
        commands: list[Command] = []
        for i in range(min(PAGES_PER_REQUEST, cap - pages)):
            after = last if i == 0 else shape.ref(commands[-1].key)
            page_filter = {**flt, field: after} if after is not None else flt
            commands.append(Command(f"p{i}", method, {**base, "filter": page_filter}))
        result = client.batch(commands, idempotent=True)
        for command in commands:
            rows, error = _page(result, command.key, shape)
            if isinstance(error, OperationTimeLimit) and blocked < 5:
                blocked += 1  # the client waits for the budget before the next batch
                break
            if error is not None:
                raise error
            blocked = 0
            pages += 1
            for row in rows:
                current = _id(row, shape.id_field, method)
                if last is not None and _not_after(current, last):
                    raise ListingError(
                        f"ids did not advance past {last} (got {current}); is the `>` filter "
                        f"on {shape.filter_field} honoured?",
                        code="LISTING",
                        method=method,
                    )
                last = current
                yield dict(row)
            rows_seen += len(rows)
            if len(rows) < PAGE_SIZE:
                log.info(
                    "%s: listed %d rows in %d pages, %d requests",
                    method,
                    rows_seen,
                    pages,
                    client.requests_made - first_request,
                )
                return


def _page(
    result: BatchResult, key: str, shape: ListShape
) -> tuple[list[dict[str, Any]], Exception | None]:
    if key in result.errors:
        return [], result.errors[key]
    return shape.rows(result.results.get(key)), None


def _not_after(current: int | str, last: int | str) -> bool:
    if isinstance(current, int) and isinstance(last, int):
        return current <= last
    return str(current) <= str(last)
