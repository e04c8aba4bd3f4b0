"""The migrations build the same schema on SQLite and PostgreSQL, and rerunning them is a no-op."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from b24app.store.db import make_engine, metadata, migrate


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _expected() -> set[str]:
    import importlib
    import pkgutil

    import b24app.store

    for mod in pkgutil.iter_modules(b24app.store.__path__):
        if not mod.ispkg:
            importlib.import_module(f"b24app.store.{mod.name}")
    return set(metadata.tables)


def test_sqlite_schema_matches_the_metadata(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate(url)
    migrate(url)  # idempotent
    assert _tables(url) == _expected()


@pytest.mark.services
def test_postgres_schema_matches_the_metadata(fresh_postgres_url: str) -> None:
    migrate(fresh_postgres_url)
    migrate(fresh_postgres_url)
    assert _tables(fresh_postgres_url) == _expected()


def _migrate_together(url: str, processes: int = 4) -> list[int]:
    """Start `processes` interpreters that migrate `url` at the same moment; their exit codes."""
    import subprocess
    import sys

    code = "import sys; from b24app.store.db import migrate; migrate(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, url]) for _ in range(processes)]
    return [proc.wait(timeout=120) for proc in procs]


def test_threads_starting_together_on_a_fresh_sqlite_file_migrate_once(tmp_path) -> None:
    # test-fast's stand-in for the processes below: the lock is the database's (BEGIN
    # IMMEDIATE), so threads that each open their own engine meet it as processes do
    import threading
    import traceback
    from concurrent.futures import ThreadPoolExecutor

    url = f"sqlite:///{tmp_path / 'app.db'}"
    start = threading.Barrier(4)

    def run() -> None:
        start.wait(timeout=60)
        migrate(url)

    with ThreadPoolExecutor(4) as pool:
        runs = [pool.submit(run) for _ in range(4)]
    failures = ["".join(traceback.format_exception(f.exception())) for f in runs if f.exception()]
    assert not failures, failures[0]
    assert _tables(url) == _expected()


@pytest.mark.slow  # several interpreters started at once: 2-4 s
def test_processes_starting_together_on_a_fresh_sqlite_file_migrate_once(tmp_path) -> None:
    # gunicorn workers and `b24app worker` processes all migrate as they start
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert _migrate_together(url) == [0, 0, 0, 0]
    assert _tables(url) == _expected()


@pytest.mark.services
@pytest.mark.slow  # several interpreters started at once: 2-4 s
def test_processes_starting_together_on_a_fresh_postgres_database_migrate_once(
    fresh_postgres_url: str,
) -> None:
    assert _migrate_together(fresh_postgres_url) == [0, 0, 0, 0]
    assert _tables(fresh_postgres_url) == _expected()
