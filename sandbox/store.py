"""Entity storage for the sandbox portal: in memory, written through to SQLite when a path is given.

Each kind of row ("lead", "activity", ...) lives in a `Table` keyed by integer ID with a sorted ID
list (for keyset paging by bisect) and optional secondary indexes. Writes are buffered per call and
`Store.flush()` writes them to the SQLite file in one transaction, so a restarted portal with the
same file holds the same rows and continues the ID sequences.
"""

from __future__ import annotations

import bisect
import gc
import json
import sqlite3
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

Row = dict[str, Any]
KeysFn = Callable[[Row], Iterable[Hashable]]

_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rows ("
    " kind TEXT NOT NULL, id INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, id)"
    ") WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


@contextmanager
def bulk() -> Iterator[None]:
    """Pause the cyclic garbage collector while hundreds of thousands of rows are made.

    Rows are plain dicts without cycles, so reference counting frees them anyway; the collector
    would only re-scan them over and over.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Index:
    """A secondary index: key -> set of row IDs, remembering each row's keys for removal."""

    def __init__(self, keys_fn: KeysFn) -> None:
        self.keys_fn = keys_fn
        self.ids_by_key: dict[Hashable, set[int]] = {}
        self.keys_by_id: dict[int, tuple[Hashable, ...]] = {}

    def add(self, row_id: int, row: Row) -> None:
        """Index `row` under every key its keys function yields."""
        keys = tuple(self.keys_fn(row))
        if not keys:
            return
        self.keys_by_id[row_id] = keys
        buckets = self.ids_by_key
        for key in keys:
            bucket = buckets.get(key)
            if bucket is None:
                buckets[key] = {row_id}
            else:
                bucket.add(row_id)

    def remove(self, row_id: int) -> None:
        """Forget the keys recorded for `row_id`."""
        for key in self.keys_by_id.pop(row_id, ()):
            bucket = self.ids_by_key.get(key)
            if bucket is not None:
                bucket.discard(row_id)
                if not bucket:
                    del self.ids_by_key[key]


class Table:
    """Rows of one kind, by ID, with a sorted ID list and secondary indexes."""

    def __init__(self, kind: str, store: Store) -> None:
        self.kind = kind
        self._store = store
        self.rows: dict[int, Row] = {}
        self.ids: list[int] = []
        self.indexes: dict[str, Index] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, row_id: int) -> Row | None:
        """The stored row (do not mutate it; `put` a changed copy)."""
        return self.rows.get(row_id)

    def put(self, row: Row) -> None:
        """Insert or replace `row` (keyed by its "ID")."""
        row_id = row["ID"]
        if row_id in self.rows:
            for index in self.indexes.values():
                index.remove(row_id)
        elif not self.ids or row_id > self.ids[-1]:
            self.ids.append(row_id)
        else:
            bisect.insort(self.ids, row_id)
        self.rows[row_id] = row
        for index in self.indexes.values():
            index.add(row_id, row)
        self._store.mark(self.kind, row_id)

    def delete(self, row_id: int) -> None:
        """Remove a row if present."""
        if self.rows.pop(row_id, None) is None:
            return
        for index in self.indexes.values():
            index.remove(row_id)
        pos = bisect.bisect_left(self.ids, row_id)
        del self.ids[pos]
        self._store.mark(self.kind, row_id)

    def add_index(self, name: str, keys_fn: KeysFn) -> None:
        """Create (or rebuild) the index `name` over the rows already held."""
        index = Index(keys_fn)
        for row_id, row in self.rows.items():
            index.add(row_id, row)
        self.indexes[name] = index

    def lookup(self, index: str, key: Hashable) -> set[int]:
        """IDs of rows indexed under `key` (an empty set when none)."""
        return self.indexes[index].ids_by_key.get(key, set())

    def scan(self) -> Iterator[Row]:
        """All rows in ascending ID order."""
        rows = self.rows
        for row_id in self.ids:
            yield rows[row_id]

    def load(self, row: Row) -> None:
        """Put a row read back from disk (not marked dirty); IDs must arrive ascending."""
        self.rows[row["ID"]] = row
        self.ids.append(row["ID"])


class Store:
    """All tables, ID counters and settings of one portal."""

    def __init__(self, db_path: str | None = None) -> None:
        self.tables: dict[str, Table] = {}
        self._meta: dict[str, str] = {}
        self._sequences: dict[str, int] = {}
        self._dirty_rows: set[tuple[str, int]] = set()
        self._dirty_meta: set[str] = set()
        self._db: sqlite3.Connection | None = None
        if db_path is not None:
            self._db = sqlite3.connect(db_path, check_same_thread=False)
            # WAL without a sync per commit: every call is one transaction, and a sandbox
            # need not survive a power cut, only a restart.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._db.commit()
            with bulk():
                self._read_back()

    @property
    def is_fresh(self) -> bool:
        """True when nothing was ever stored (a new portal)."""
        return not self._meta and not self._sequences and not any(self.tables.values())

    def table(self, kind: str) -> Table:
        """The table for `kind`, created on first use."""
        table = self.tables.get(kind)
        if table is None:
            table = self.tables[kind] = Table(kind, self)
        return table

    def next_id(self, counter: str) -> int:
        """The next value of an ID sequence; IDs are never reused, as in Bitrix24."""
        value = self._sequences.get(counter, 0) + 1
        self._sequences[counter] = value
        self._dirty_meta.add(f"seq:{counter}")
        return value

    def meta(self, key: str, default: str | None = None) -> str | None:
        """A stored setting."""
        return self._meta.get(key, default)

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting."""
        self._meta[key] = value
        self._dirty_meta.add(key)

    def mark(self, kind: str, row_id: int) -> None:
        """Record that a row changed, for the next flush."""
        if self._db is not None:
            self._dirty_rows.add((kind, row_id))

    def flush(self) -> None:
        """Write every change since the last flush to the SQLite file in one transaction."""
        if self._db is None:
            self._dirty_meta.clear()
            return
        if not self._dirty_rows and not self._dirty_meta:
            return
        upserts: list[tuple[str, int, str]] = []
        deletes: list[tuple[str, int]] = []
        for kind, row_id in self._dirty_rows:
            row = self.tables[kind].rows.get(row_id)
            if row is None:
                deletes.append((kind, row_id))
            else:
                upserts.append((kind, row_id, _encode(row)))
        metas = [
            (key, str(self._sequences[key[4:]]) if key.startswith("seq:") else self._meta[key])
            for key in self._dirty_meta
        ]
        with self._db:
            if upserts:
                self._db.executemany(
                    "INSERT OR REPLACE INTO rows (kind, id, data) VALUES (?, ?, ?)", upserts
                )
            if deletes:
                self._db.executemany("DELETE FROM rows WHERE kind = ? AND id = ?", deletes)
            if metas:
                self._db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", metas
                )
        self._dirty_rows.clear()
        self._dirty_meta.clear()

    def close(self) -> None:
        """Flush and close the SQLite file."""
        if self._db is not None:
            self.flush()
            self._db.close()
            self._db = None

    def _read_back(self) -> None:
        assert self._db is not None
        for key, value in self._db.execute("SELECT key, value FROM meta"):
            if key.startswith("seq:"):
                self._sequences[key[4:]] = int(value)
            else:
                self._meta[key] = value
        cursor = self._db.execute("SELECT kind, data FROM rows ORDER BY kind, id")
        for kind, data in cursor:
            self.table(kind).load(json.loads(data))
