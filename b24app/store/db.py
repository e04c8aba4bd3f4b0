"""The database: one SQLAlchemy engine per URL, the shared metadata, and migrations.

SQLite (a file, zero set-up) is the default; PostgreSQL (psycopg 3) by `B24APP_DATABASE_URL` when
several machines share the work. Every table module registers its tables on `metadata`; the schema
itself is created only by the Alembic migrations in `migrations/versions/`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

MIGRATIONS = Path(__file__).with_name("migrations")


def utc_now() -> dt.datetime:
    """The current time, zone-aware UTC: every stored time is UTC."""
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp column that always reads back zone-aware UTC.

    SQLite hands datetimes back without their zone; PostgreSQL keeps it.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> dt.datetime | None:
        """Attach UTC to the naive datetimes SQLite returns."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and real BEGIN IMMEDIATE locking."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_pragmas(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy issue BEGIN itself (pysqlite's own transaction handling defers it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def is_sqlite(engine: Engine) -> bool:
    """True when the engine talks to SQLite."""
    return engine.dialect.name == "sqlite"


@contextmanager
def write_lock(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the write lock from its first statement (SQLite: BEGIN IMMEDIATE).

    On PostgreSQL this is a plain transaction; callers take row locks with SELECT ... FOR UPDATE.
    """
    if is_sqlite(engine):
        conn = engine.connect().execution_options(sqlite_begin="IMMEDIATE")
        with conn, conn.begin():
            yield conn
    else:
        with engine.begin() as conn:
            yield conn


def alembic_config(url: str) -> Config:
    """The Alembic configuration for `url`, pointing at the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


LOCKED_ATTEMPTS = 8  # SQLite "database is locked" at start: tries of the whole upgrade
MIGRATION_LOCK = 0x62323461  # "b24a": PostgreSQL advisory lock key serialising migrations


def migrate(url: str) -> None:
    """Bring the schema at `url` up to date (every head), one process at a time.

    Several web and worker processes starting together each call this. The upgrade runs inside
    one transaction that first takes the database's write lock (SQLite: BEGIN IMMEDIATE;
    PostgreSQL: an advisory lock), so the first process migrates and the others wait, then find
    nothing left to do.
    """
    cfg = alembic_config(url)
    engine = make_engine(url)
    try:
        for attempt in range(1, LOCKED_ATTEMPTS + 1):
            try:
                with write_lock(engine) as conn:
                    if not is_sqlite(engine):
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                        )
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "heads")
                return
            except OperationalError as exc:
                # A fresh SQLite file meeting several starters at once can answer "database is
                # locked" without waiting out the busy timeout (the switch to WAL on connect
                # takes an exclusive lock). Nothing was committed: the whole upgrade is one
                # transaction, so trying again is safe; the other starter has migrated by then.
                if not (is_sqlite(engine) and "locked" in str(exc)) or attempt == LOCKED_ATTEMPTS:
                    raise
                time.sleep(0.2 * attempt)
    finally:
        engine.dispose()
