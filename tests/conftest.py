"""Shared test fixtures: the machine's PostgreSQL and Redis, loud under CI=true."""

from __future__ import annotations

import os

import pytest

POSTGRES_URL = os.environ.get(
    "B24APP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("B24APP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _missing(what: str, why: Exception) -> None:
    message = f"{what} is not reachable ({why.__class__.__name__}: {why})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(f"{message}; start it to run this test")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the machine's PostgreSQL `test` database; fails under CI=true when it is down."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        _missing("PostgreSQL", exc)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the machine's Redis; fails under CI=true when it is down."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        _missing("Redis", exc)
    return REDIS_URL


@pytest.fixture
def fresh_postgres_url(postgres_url: str):  # type: ignore[no-untyped-def]
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    import uuid

    import psycopg

    name = f"b24app_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _fresh_custom_field_cache() -> None:
    """Custom-field definitions are cached per portal address for a minute; a test's sandbox
    may reuse the address of an earlier test's, so each test starts without the cache."""
    from b24app.crm.reader import clear_facts_cache

    clear_facts_cache()
