"""Keyset listing: every row of a list method with no COUNT, about 2,500 rows per request.

Pages are ordered by ID ascending and filtered `>ID` = the last ID seen, with `start=-1` (no
COUNT); fifty such pages are chained inside one batch, each taking the last ID of the page before
through `$result[prev][49][ID]`. It stops at the first short page, and refuses to loop: a page whose
IDs do not advance, or a listing past its `max_pages`, fails with ListingError.
https://apidocs.bitrix24.com/settings/performance/huge-data.html

`Listings` reads several such listings side by side, their pages sharing each batch (what the
conversion's reads use); `iterate` is its simplest case: one listing, rows yielded as they come.
A listing that fails (a page refused, ids that do not advance, past its page cap) ends with its
error in `Listings.errors`, the rows before the failure returned.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from b24app.errors import (
    B24Error,
    ListingError,
    OperationTimeLimit,
    QueryLimitExceeded,
    UsageError,
)
from b24app.rest.command import Command
from b24app.rest.response import link_id
from b24app.vocabulary import MAX_BATCH, PAGE_SIZE, PAGES_PER_REQUEST

if TYPE_CHECKING:
    from b24app.rest.portal import Portal

log = logging.getLogger("b24app.rest")

DEFAULT_MAX_PAGES = 40_000  # two million rows
_RETRY_LIMITED = 5  # times a page refused by a limit is asked again before giving up


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
        return [row for row in result or [] if isinstance(row, dict)]  # JSON objects

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


def iterate(
    client: Portal,
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    shape: ListShape | None = None,
    max_pages: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield every row of list `method` (see the module doc); `params` may hold filter/select.

    The simplest case of `Listings`: one listing of fifty pages a request, its rows yielded
    request by request; a failed listing raises its error once the rows before it are out."""
    listing = single(method, params, shape=shape, max_pages=max_pages)
    listings = Listings(client, [listing])
    first_request = client.requests_made
    rows_seen = 0
    while not listings.done:
        for row in listings.step().get(listing.name, ()):
            rows_seen += 1
            yield dict(row)
    for error in listings.errors.values():
        raise error
    log.info(
        "%s: listed %d rows in %d requests", method, rows_seen, client.requests_made - first_request
    )


def single(
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    shape: ListShape | None = None,
    max_pages: int | None = None,
) -> Listing:
    """`iterate`'s one listing from a list method's `params`: `filter` (a `>ID` in it is where
    the listing starts), `select`, the others sent as they are (`entityTypeId`); fifty pages a
    request; at most `max_pages` pages (DEFAULT_MAX_PAGES)."""
    shape = shape or shape_of(method)
    rest = dict(params or {})
    name = shape.filter_field
    order = rest.pop("order", None)
    if order and {str(k).upper(): str(v).upper() for k, v in dict(order).items()} != {
        name.upper(): "ASC"
    }:
        raise UsageError(f"{method}: keyset listing orders by {name} ascending; drop `order`")
    if "start" in rest:
        raise UsageError(f"{method}: keyset listing sets `start` itself; drop it")
    flt = dict(rest.pop("filter", None) or {})
    after = flt.pop(f">{name}", None)
    select = rest.pop("select", None)
    return Listing(
        "p",
        method,
        flt,
        tuple(select) if select else None,
        pages=PAGES_PER_REQUEST,
        params=rest,
        after=None if after is None else link_id(after),
        shape=shape,
        max_pages=max_pages or DEFAULT_MAX_PAGES,
    )


@dataclass(frozen=True)
class Listing:
    """One keyset listing: `method` with `filter`/`select`; `pages`: how many pages to ask for
    in the first request (its expected size); `count`: ask the first page for the total;
    `params`: other parameters, sent as they are; `after`: the id it starts after; `shape`: where
    rows and ids are (else the method's); `max_pages`: past this many pages it fails."""

    name: str
    method: str
    filter: Mapping[str, Any] = field(default_factory=dict)
    select: tuple[str, ...] | None = None
    pages: int = 1
    count: bool = False
    repeats: bool = False  # a row may come again (a join): equal ids are skipped, not an error
    params: Mapping[str, Any] = field(default_factory=dict)
    after: int | None = None
    shape: ListShape | None = None
    max_pages: int | None = None


@dataclass
class _Cursor:
    listing: Listing
    shape: ListShape
    last: int | None = None
    done: bool = False
    started: bool = False
    limited: int = 0
    total: int | None = None
    error: B24Error | None = None
    pages: int = 0  # pages read


class Listings:
    """Several keyset listings read side by side, their pages chained in shared batches."""

    def __init__(self, portal: Portal, listings: Sequence[Listing]) -> None:
        if len({listing.name for listing in listings}) != len(listings):
            raise ValueError("listing names must be unique")
        self._portal = portal
        self._cursors = [
            _Cursor(listing, listing.shape or shape_of(listing.method), last=listing.after)
            for listing in listings
        ]

    @property
    def done(self) -> bool:
        """Whether every listing has ended (or failed)."""
        return all(cursor.done for cursor in self._cursors)

    @property
    def errors(self) -> dict[str, B24Error]:
        """Listings that failed, by name, with the error."""
        return {c.listing.name: c.error for c in self._cursors if c.error is not None}

    @property
    def totals(self) -> dict[str, int]:
        """Totals reported by the first page of listings that asked (`count`)."""
        return {c.listing.name: c.total for c in self._cursors if c.total is not None}

    def step(self) -> dict[str, list[dict[str, Any]]]:
        """Send one request and return the rows it brought, by listing name."""
        if self.done:
            return {}
        return self.step_with(())[0]

    def step_with(self, riders: Sequence[Command]) -> tuple[dict[str, list[dict[str, Any]]], Any]:
        """`step`, with `riders` (other read-only commands; their keys must not look like a
        page's, `<name>_<n>`) sent first in the same request, the pages filling the room they
        leave: the rows by listing name, and the batch result (the riders' answers are in it)."""
        active = [c for c in self._cursors if not c.done]
        commands: list[Command] = list(riders)
        sent: list[tuple[_Cursor, list[str]]] = []
        for cursor, pages in zip(active, _share(active, MAX_BATCH - len(riders)), strict=True):
            if pages:
                keys = self._pages(cursor, pages, commands)
                sent.append((cursor, keys))
        result = self._portal.batch(commands, halt=False, idempotent=True)
        rows: dict[str, list[dict[str, Any]]] = {}
        for cursor, keys in sent:
            rows[cursor.listing.name] = self._take(cursor, keys, result)
        return rows, result

    def read(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every listing (failed listings are in `errors`)."""
        found: dict[str, list[dict[str, Any]]] = {c.listing.name: [] for c in self._cursors}
        while not self.done:
            for name, rows in self.step().items():
                found[name].extend(rows)
        return found

    def _pages(self, cursor: _Cursor, pages: int, commands: list[Command]) -> list[str]:
        listing, shape = cursor.listing, cursor.shape
        field_name = shape.filter_field
        keys: list[str] = []
        if listing.max_pages is not None:
            pages = min(pages, listing.max_pages - cursor.pages)
        for index in range(pages):
            key = f"{listing.name}_{index}"
            after: Any = cursor.last if index == 0 else shape.ref(keys[-1])
            page_filter = dict(listing.filter)
            if after is not None:
                page_filter[f">{field_name}"] = after
            params: dict[str, Any] = {
                **listing.params,
                "filter": page_filter,
                "order": {field_name: "ASC"},
                "start": 0 if listing.count and not cursor.started and index == 0 else -1,
            }
            if listing.select is not None:
                select = list(listing.select)
                if shape.id_field not in select and "*" not in select:
                    select.append(shape.id_field)
                params["select"] = select
            commands.append(Command(key, listing.method, params))
            keys.append(key)
        return keys

    def _take(self, cursor: _Cursor, keys: list[str], result: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        shape = cursor.shape
        for index, key in enumerate(keys):
            error = result.errors.get(key)
            if error is not None:
                limited = isinstance(error, QueryLimitExceeded | OperationTimeLimit)
                if limited and cursor.limited < _RETRY_LIMITED:
                    cursor.limited += 1  # not run: ask for this page again next request
                    return found
                cursor.error, cursor.done = error, True
                return found
            cursor.limited = 0
            if index == 0 and not cursor.started:
                cursor.started = True
                cursor.total = result.totals.get(key)
            rows = shape.rows(result.results.get(key))
            for row in rows:
                row_id = link_id(row.get(shape.id_field))
                if cursor.listing.repeats and row_id is not None and row_id == cursor.last:
                    continue  # the same row again (an activity bound to two leads of a group)
                if row_id is None or (cursor.last is not None and row_id <= cursor.last):
                    # a portal that ignores the `>` filter would loop: the listing fails here,
                    # with the rows before this one kept
                    what = (
                        f"a row has no {shape.id_field!r}; add it to select"
                        if row.get(shape.id_field) is None
                        else f"ids did not advance past {cursor.last} (got {row_id}); is the "
                        f"`>` filter on {shape.filter_field} honoured?"
                    )
                    return self._fail(cursor, found, what)
                cursor.last = row_id
                found.append(row)
            cursor.pages += 1
            if len(rows) < PAGE_SIZE:
                cursor.done = True  # later pages chained on this one are not meaningful
                return found
        cap = cursor.listing.max_pages
        if cap is not None and cursor.pages >= cap:
            return self._fail(cursor, found, f"more than {cap} pages; pass a larger max_pages")
        return found

    @staticmethod
    def _fail(cursor: _Cursor, found: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
        cursor.error = ListingError(what, code="LISTING", method=cursor.listing.method)
        cursor.done = True
        return found


def _share(active: Sequence[_Cursor], room: int = MAX_BATCH) -> list[int]:
    """Pages per listing in the next request (`room` commands): first requests by estimate,
    then an equal share; every listing gets at least one page while there is room."""
    if not active:
        return []
    wanted = [
        max(1, c.listing.pages) if not c.started else max(1, room // len(active)) for c in active
    ]
    total = sum(wanted)
    if total > room:
        wanted = [max(1, w * room // total) for w in wanted]
    shares = []
    for want in wanted:
        take = max(0, min(want, room))
        shares.append(take)
        room -= take
    return shares
