"""List methods: filter prefixes, order, select and 50-row paging as Bitrix24 list methods do them.

https://apidocs.bitrix24.com/settings/how-to-call-rest-api/list-methods-pecularities.html
https://apidocs.bitrix24.com/settings/performance/huge-data.html

A filter is compiled once into a predicate plus hints (an ID range and equalities on indexed
fields), so keyset enumeration (`>ID` + `order {ID: ASC}` + `start=-1`) reads 50 rows from a
bisected ID list instead of scanning the table.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.store import Row, Table

PAGE_SIZE = 50

# Longest prefixes first, so "!=%" is not read as "!" + "=%".
_PREFIXES = ("!%=", "!=%", "!@", "!%", "!=", ">=", "<=", "=%", "%=", ">", "<", "@", "%", "=", "!")
_OPS = {
    "": "eq",
    "=": "eq",
    "!": "ne",
    "!=": "ne",
    ">": "gt",
    ">=": "ge",
    "<": "lt",
    "<=": "le",
    "@": "in",
    "!@": "nin",
    "%": "like",
    "!%": "nlike",
    "=%": "pattern",
    "%=": "pattern",
    "!=%": "npattern",
    "!%=": "npattern",
}
_RANGE_OPS = frozenset({"gt", "ge", "lt", "le"})


class QueryError(Exception):
    """A filter or order the method refuses (the caller turns it into its own ApiError)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Accessor:
    """How a list method reads one field of a stored row and compares filter values with it."""

    get: Callable[[Row], Any]
    coerce: Callable[[Any], Any] = str
    fold: bool = False  # case-insensitive text, as MySQL's default collation compares
    multiple: bool = False  # the stored value is a list; a condition matches any element
    sortable: bool = True


Resolver = Callable[[str], Accessor | None]


@dataclass(frozen=True)
class Condition:
    """One filter key: field, operation and the coerced value (a tuple for IN)."""

    field: str
    op: str
    value: Any
    accessor: Accessor = field(repr=False, compare=False)

    def test(self, row: Row) -> bool:
        """Whether `row` satisfies this condition."""
        stored = self.accessor.get(row)
        if self.accessor.multiple:
            values = stored or ()
            if self.op in ("ne", "nin", "nlike", "npattern"):
                return not any(_positive(self.op, v, self.value, self.accessor) for v in values)
            return any(_compare(self.op, v, self.value, self.accessor) for v in values)
        return _compare(self.op, stored, self.value, self.accessor)


@dataclass(frozen=True)
class Group:
    """Conditions joined by AND or OR; groups nest."""

    logic: str
    parts: tuple[Condition | Group, ...]

    def test(self, row: Row) -> bool:
        """Whether `row` satisfies the group."""
        if self.logic == "OR":
            return any(part.test(row) for part in self.parts) if self.parts else True
        return all(part.test(row) for part in self.parts)

    def top_conditions(self) -> list[Condition]:
        """Conditions every matching row must meet (top-level AND only)."""
        if self.logic != "AND":
            return []
        return [part for part in self.parts if isinstance(part, Condition)]


@dataclass(frozen=True)
class Order:
    """One sort key."""

    field: str
    accessor: Accessor
    descending: bool = False


@dataclass(frozen=True)
class Page:
    """One page of a list method: rows as rendered, `total` unless start=-1, `next` if more."""

    result: Any
    total: int | None = None
    next: int | None = None


def as_list(value: Any) -> list[Any] | None:
    """A PHP-style array as a list: lists as they are, digit-keyed dicts in key order."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and all(isinstance(k, str) and k.isdigit() for k in value):
        return list(value.values())
    return None


def split_key(key: str) -> tuple[str, str]:
    """Split a filter key into (operation, field name)."""
    for prefix in _PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            return _OPS[prefix], key[len(prefix) :]
    return "eq", key


def compile_filter(raw: Any, resolve: Resolver, *, unknown: str = "drop") -> Group:
    """Compile a Bitrix24 filter object; unknown fields are dropped (legacy) or raise (`error`)."""
    if raw is None or raw == "" or raw == []:
        return Group("AND", ())
    if isinstance(raw, list):
        parts = [p for p in raw if isinstance(p, (Mapping, list)) or unknown == "error"]
        return Group("AND", tuple(compile_filter(p, resolve, unknown=unknown) for p in parts))
    if not isinstance(raw, Mapping):
        raise QueryError("Invalid filter: an object is expected", field="filter")
    logic = "AND"
    parts: list[Condition | Group] = []
    for key, value in raw.items():
        if str(key).upper() == "LOGIC":
            logic = "OR" if str(value).upper() == "OR" else "AND"
            continue
        if str(key).isdigit() and isinstance(value, (Mapping, list)):
            parts.append(compile_filter(value, resolve, unknown=unknown))
            continue
        condition = _condition(str(key), value, resolve, unknown)
        if condition is not None:
            parts.append(condition)
    return Group(logic, tuple(parts))


def compile_order(
    raw: Any, resolve: Resolver, *, unknown: str = "drop", default: str = "ID"
) -> list[Order]:
    """Compile an `order` object; unknown fields are dropped (legacy) or raise (`error`)."""
    orders: list[Order] = []
    if isinstance(raw, Mapping):
        for name, direction in raw.items():
            accessor = resolve(str(name))
            if accessor is None or not accessor.sortable:
                if unknown == "error":
                    raise QueryError(
                        f"Invalid order: field '{name}' is not allowed in order", field=str(name)
                    )
                continue
            text = str(direction).upper()
            if unknown == "error" and text not in ("ASC", "DESC"):
                raise QueryError(
                    "Invalid order: allowed sort directions are ASC, DESC. "
                    f"But got '{direction}' for field '{name}'",
                    field=str(name),
                )
            orders.append(Order(str(name), accessor, text == "DESC"))
    if not orders and default:
        accessor = resolve(default)
        if accessor is not None:
            orders.append(Order(default, accessor))
    return orders


def parse_offset(raw: Any) -> int:
    """The `start` parameter as an exact offset (ORM lists: crm.address.list,
    crm/classes/general/restservice.php:14381), or -1 for one page without counting."""
    try:
        start = int(str(raw).strip()) if raw is not None and raw != "" else 0
    except ValueError:
        start = 0
    return -1 if start < 0 else start


def parse_start(raw: Any) -> int:
    """The `start` parameter of a list method: rounded down to a page of 50, since the page
    number is start / 50 + 1 (rest/classes/general/rest.php:987-1010 getNavData, the D7
    controllers' rest/lib/engine/restmanager.php:202-210); -1 for one page without counting."""
    start = parse_offset(raw)
    return start if start < 0 else start - start % PAGE_SIZE


def find(
    table: Table,
    where: Group,
    orders: list[Order],
    start: int,
    *,
    indexes: Mapping[str, str] | None = None,
    candidates: Iterable[int] | None = None,
) -> tuple[list[Row], int | None, int | None]:
    """Run a list query: (page rows, total or None when start=-1, next start or None).

    `indexes` maps a field name to a table index that holds the coerced field values, so an
    equality on that field narrows the scan; `candidates` narrows it further (callers' joins).
    """
    ids = _candidate_ids(table, where, indexes or {}, candidates)
    return _run(ids, table.rows.__getitem__, where, orders, start)


def find_in(
    rows: list[Row], where: Group, orders: list[Order], start: int
) -> tuple[list[Row], int | None, int | None]:
    """`find` over rows held in a list (ascending "ID" order), e.g. a fixed directory."""
    return _run(range(len(rows)), rows.__getitem__, where, orders, start)


def _run(
    ids: Sequence[int],
    row_of: Callable[[int], Row],
    where: Group,
    orders: list[Order],
    start: int,
) -> tuple[list[Row], int | None, int | None]:
    by_id = _id_order(orders)
    if by_id is not None:
        ordered = reversed(ids) if by_id else iter(ids)
        if start < 0:
            page = []
            for key in ordered:
                row = row_of(key)
                if where.test(row):
                    page.append(row)
                    if len(page) == PAGE_SIZE:
                        break
            return page, None, None
        matches = [row for row in map(row_of, ordered) if where.test(row)]
    else:
        matches = [row for row in map(row_of, ids) if where.test(row)]
        for order in reversed(orders):
            matches.sort(key=_sort_key(order.accessor), reverse=order.descending)
    if start < 0:
        return matches[:PAGE_SIZE], None, None
    total = len(matches)
    page = matches[start : start + PAGE_SIZE]
    following = start + PAGE_SIZE
    return page, total, following if following < total else None


class _IdWindow(Sequence[int]):
    """A window of the sorted ID list, without copying it."""

    def __init__(self, ids: list[int], low: int, high: int) -> None:
        self._ids, self._low, self._high = ids, low, high

    def __len__(self) -> int:
        return self._high - self._low

    def __getitem__(self, position: Any) -> Any:
        if isinstance(position, slice):
            return [self._ids[i] for i in range(self._low, self._high)[position]]
        if position < 0:
            position += len(self)
        if not 0 <= position < len(self):
            raise IndexError(position)
        return self._ids[self._low + position]

    def __iter__(self) -> Iterator[int]:
        ids = self._ids
        for position in range(self._low, self._high):
            yield ids[position]

    def __reversed__(self) -> Iterator[int]:
        ids = self._ids
        for position in range(self._high - 1, self._low - 1, -1):
            yield ids[position]


def select_fields(raw: Any) -> list[str]:
    """The `select` parameter as a list of names (empty when absent)."""
    values = as_list(raw)
    if values is None:
        return [] if raw in (None, "") else [str(raw)]
    return [str(v) for v in values]


def int_value(value: Any) -> int:
    """PHP intval(): leading digits of a string, 0 when there are none."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    match = re.match(r"\s*([+-]?\d+)", str(value if value is not None else ""))
    return int(match.group(1)) if match else 0


def float_value(value: Any) -> float:
    """PHP floatval(): the leading number of a string, 0.0 when there is none."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = re.match(r"\s*([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)", str(value or ""))
    return float(match.group(1)) if match else 0.0


def _condition(key: str, value: Any, resolve: Resolver, unknown: str) -> Condition | None:
    op, name = split_key(key)
    accessor = resolve(name)
    if accessor is None:
        if unknown == "error":
            raise QueryError(f"Invalid filter: field '{name}' is not allowed in filter", field=name)
        return None
    values = as_list(value)
    if values is not None:
        if op in ("eq", "in"):
            op = "in"
        elif op in ("ne", "nin"):
            op = "nin"
        elif unknown == "error":
            raise QueryError(f"Invalid filter: field '{name}' has invalid value", field=name)
        else:
            values = values[:1]
            if not values:
                return None
            return _condition(key, values[0], resolve, unknown)
        coerced: Any = tuple(_coerce(accessor, v) for v in values)
    elif op in ("in", "nin"):
        coerced = (_coerce(accessor, value),)
    elif op in ("like", "nlike", "pattern", "npattern"):
        coerced = str(value if value is not None else "")
    else:
        coerced = _coerce(accessor, value)
    return Condition(name, op, coerced, accessor)


def _coerce(accessor: Accessor, value: Any) -> Any:
    coerced = accessor.coerce(value)
    if accessor.fold and isinstance(coerced, str):
        return coerced.casefold()
    return coerced


def _positive(op: str, stored: Any, wanted: Any, accessor: Accessor) -> bool:
    """The condition an inverted op (`!`, `!@`, `!%`) negates, tested on one element."""
    positive = {"ne": "eq", "nin": "in", "nlike": "like", "npattern": "pattern"}[op]
    return _compare(positive, stored, wanted, accessor)


def _compare(op: str, stored: Any, wanted: Any, accessor: Accessor) -> bool:
    if accessor.fold and isinstance(stored, str):
        stored = stored.casefold()
    if op == "eq":
        return _blank(stored) if _blank(wanted) else stored == wanted
    if op == "ne":
        return not _compare("eq", stored, wanted, accessor)
    if op == "in":
        return any(_compare("eq", stored, w, accessor) for w in wanted)
    if op == "nin":
        return not _compare("in", stored, wanted, accessor)
    if op in _RANGE_OPS:
        if _blank(stored) and not isinstance(stored, (int, float)):
            return False
        try:
            if op == "gt":
                return stored > wanted
            if op == "ge":
                return stored >= wanted
            if op == "lt":
                return stored < wanted
            return stored <= wanted
        except TypeError:
            return False
    text = "" if stored is None else str(stored).casefold()
    if op == "like":
        return wanted.casefold() in text
    if op == "nlike":
        return wanted.casefold() not in text
    matched = _like_pattern(wanted).fullmatch(text) is not None
    return matched if op == "pattern" else not matched


def _blank(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, (int, float)) and value == 0)


def _like_pattern(pattern: str) -> re.Pattern[str]:
    parts = [re.escape(chunk) for chunk in pattern.casefold().split("%")]
    return re.compile(".*".join(parts).replace("_", "."), re.DOTALL)


def _candidate_ids(
    table: Table,
    where: Group,
    indexes: Mapping[str, str],
    candidates: Iterable[int] | None,
) -> Sequence[int]:
    low: int | None = None
    high: int | None = None
    narrowed: set[int] | None = None if candidates is None else set(candidates)
    for condition in where.top_conditions():
        if condition.field == "ID" and condition.op in _RANGE_OPS:
            bound = condition.value
            if condition.op == "gt":
                low = bound + 1 if low is None else max(low, bound + 1)
            elif condition.op == "ge":
                low = bound if low is None else max(low, bound)
            elif condition.op == "lt":
                high = bound - 1 if high is None else min(high, bound - 1)
            else:
                high = bound if high is None else min(high, bound)
            continue
        keys: tuple[Hashable, ...]
        if condition.op == "eq" and not _blank(condition.value):
            keys = (condition.value,)
        elif condition.op == "in":
            keys = tuple(v for v in condition.value if not _blank(v))
            if len(keys) != len(condition.value):
                continue
        else:
            continue
        if condition.field == "ID":
            found = {k for k in keys if isinstance(k, int) and k in table.rows}
        elif condition.field in indexes:
            found = set()
            for key in keys:
                found |= table.lookup(indexes[condition.field], key)
        else:
            continue
        narrowed = found if narrowed is None else narrowed & found
    if narrowed is None:
        first = 0 if low is None else bisect.bisect_left(table.ids, low)
        stop = len(table.ids) if high is None else bisect.bisect_right(table.ids, high)
        return _IdWindow(table.ids, first, max(first, stop))
    return sorted(
        row_id
        for row_id in narrowed
        if (low is None or row_id >= low) and (high is None or row_id <= high)
    )


def _id_order(orders: list[Order]) -> bool | None:
    """None unless the order is by ID alone; then True for descending."""
    if len(orders) == 1 and orders[0].field == "ID":
        return orders[0].descending
    return None


def _sort_key(accessor: Accessor) -> Callable[[Row], tuple[int, Any]]:
    def key(row: Row) -> tuple[int, Any]:
        value = accessor.get(row)
        if value is None or value == "":
            return (0, 0)
        if isinstance(value, str):
            return (1, value.casefold())
        if isinstance(value, (int, float)):
            return (2, value)
        return (3, str(value))

    return key
