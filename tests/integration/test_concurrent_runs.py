"""Two `b24app convert` runs on one portal at the same time, in every way they can be configured:
each lead converted once, no duplicate deal or client, neither run failing because of the other.

"Two machines" are two temp directories (the machine-wide lock lives in the temp directory), so
what the runs share is exactly what the configuration shares: a Redis, a PostgreSQL journal, one
SQLite journal, or nothing at all (then they settle, see b24app.crm.planner).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b24app.crm.policy import Activities, Client, Policy
from sandbox.limits import Plan
from sandbox.server import Sandbox
from tests.conversion.portalstate import assert_converted, duplicates, snapshot

pytestmark = pytest.mark.slow

SECRET = "racecode7"
LEADS = 120
POLICY = Policy(client=Client.BOTH, activities=Activities.MOVE)
FLAGS = ("--client", "both", "--activities", "move")
CLI = ("-c", "from b24app.cli import main; main()")


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Sandbox]:
    """A portal draining 10 requests/s: slow enough for two runs to overlap."""
    with Sandbox(
        plan=Plan("race", rate=10.0, burst=10),
        seed_leads=LEADS,
        seed=11,
        db=str(tmp_path / "portal.db"),
        webhook_code=SECRET,
    ) as running:
        yield running


def _env(portal: Sandbox, home: Path, **settings: str) -> dict[str, str]:
    """A run's environment: its own directory (and temp directory: its "machine")."""
    home.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("B24_", "B24APP_"))}
    # Half the portal's rate each: without a shared bucket two runs never overrun the portal.
    return {
        **base,
        "TMPDIR": str(home),
        "B24_WEBHOOK_URL": portal.webhook_url,
        "B24APP_RATE_PER_SECOND": "4",
        "B24APP_BURST": "5",
        "B24APP_DATABASE_URL": f"sqlite:///{home / 'b24app.db'}",
        **settings,
    }


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *CLI, *args],
        env=env,
        cwd=env["TMPDIR"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _race(portal: Sandbox, envs: list[dict[str, str]], *, kill: bool = False) -> list[Any]:
    """Start a convert in each environment at once; with `kill`, kill -9 the first once the
    portal has answered a few of its requests, then run it again (as a person would) after the
    other has ended. Returns each run's final (code, report, stderr)."""
    runs = [_start(env, "convert", *FLAGS, "--json") for env in envs]
    if kill:
        start = portal.stats()["http_requests"]
        deadline = time.monotonic() + 60
        while portal.stats()["http_requests"] < start + 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        runs[0].send_signal(signal.SIGKILL)
    finished = []
    for run in runs:
        out, err = run.communicate(timeout=240)
        finished.append((run.returncode, out, err))
    if kill:
        again = _start(envs[0], "convert", *FLAGS, "--json")
        out, err = again.communicate(timeout=240)
        finished[0] = (again.returncode, out, err)
    return [(code, json.loads(out) if out.strip() else None, err) for code, out, err in finished]


def _assert_once(
    portal: Sandbox, before: Any, results: list[Any], *, settled: bool = False, kill: bool = False
) -> None:
    """Each lead converted once; `settled` or `kill`: the runs overlapped (no shared lock, or a
    killed run's requests still landing after the next run looked)."""
    for code, report, err in results:
        assert code == 0, err
        assert report["failed"] == 0, report
    assert not duplicates(portal.portal)
    assert_converted(portal.portal, before, POLICY, raced=settled or kill)
    assert portal.stats()["query_limit_exceeded"] == 0


@pytest.mark.parametrize("kill", [False, True], ids=["both-run", "one-killed"])
def test_two_machines_sharing_nothing_settle(portal: Sandbox, tmp_path: Path, kill: bool) -> None:
    before = snapshot(portal.portal)
    envs = [_env(portal, tmp_path / "one"), _env(portal, tmp_path / "two")]

    results = _race(portal, envs, kill=kill)

    _assert_once(portal, before, results, settled=True, kill=kill)
    assert not any("waiting for it" in err for _, _, err in results)  # nothing to wait on


@pytest.mark.parametrize("kill", [False, True], ids=["both-run", "one-killed"])
def test_one_machine_two_journals_the_second_run_waits(
    portal: Sandbox, tmp_path: Path, kill: bool
) -> None:
    before = snapshot(portal.portal)
    shared_tmp = str(tmp_path / "machine")
    envs = [
        _env(portal, tmp_path / "one", TMPDIR=shared_tmp),
        _env(portal, tmp_path / "two", TMPDIR=shared_tmp),
    ]
    (tmp_path / "machine").mkdir()

    results = _race(portal, envs, kill=kill)

    _assert_once(portal, before, results, kill=kill)
    if not kill:
        assert sum("waiting for it to finish" in err for _, _, err in results) == 1


@pytest.mark.parametrize("kill", [False, True], ids=["both-run", "one-killed"])
def test_one_shared_journal(portal: Sandbox, tmp_path: Path, kill: bool) -> None:
    before = snapshot(portal.portal)
    journal = f"sqlite:///{tmp_path / 'shared.db'}"
    shared_tmp = str(tmp_path / "machine")
    (tmp_path / "machine").mkdir()
    envs = [
        _env(portal, tmp_path / "one", TMPDIR=shared_tmp, B24APP_DATABASE_URL=journal),
        _env(portal, tmp_path / "two", TMPDIR=shared_tmp, B24APP_DATABASE_URL=journal),
    ]

    results = _race(portal, envs, kill=kill)

    _assert_once(portal, before, results, kill=kill)


@pytest.mark.services
@pytest.mark.parametrize("kill", [False, True], ids=["both-run", "one-killed"])
def test_two_machines_with_their_own_journals_and_a_shared_redis(
    portal: Sandbox, tmp_path: Path, redis_url: str, kill: bool
) -> None:
    before = snapshot(portal.portal)
    redis = redis_url.rsplit("/", 1)[0] + "/14"
    envs = [
        _env(portal, tmp_path / "one", B24APP_REDIS_URL=redis),
        _env(portal, tmp_path / "two", B24APP_REDIS_URL=redis),
    ]

    results = _race(portal, envs, kill=kill)

    _assert_once(portal, before, results, kill=kill)
    if not kill:
        assert sum("waiting for it to finish" in err for _, _, err in results) == 1


@pytest.mark.services
@pytest.mark.parametrize("kill", [False, True], ids=["both-run", "one-killed"])
def test_two_machines_on_postgresql_and_redis(
    portal: Sandbox, tmp_path: Path, fresh_postgres_url: str, redis_url: str, kill: bool
) -> None:
    before = snapshot(portal.portal)
    redis = redis_url.rsplit("/", 1)[0] + "/14"
    settings = {"B24APP_DATABASE_URL": fresh_postgres_url, "B24APP_REDIS_URL": redis}
    envs = [_env(portal, tmp_path / "one", **settings), _env(portal, tmp_path / "two", **settings)]

    results = _race(portal, envs, kill=kill)

    _assert_once(portal, before, results, kill=kill)
    if not kill:
        assert sum("waiting for it to finish" in err for _, _, err in results) == 1


@pytest.mark.services
def test_two_machines_sharing_only_a_postgresql_journal_wait(
    portal: Sandbox, tmp_path: Path, fresh_postgres_url: str
) -> None:
    before = snapshot(portal.portal)
    settings = {"B24APP_DATABASE_URL": fresh_postgres_url}
    envs = [_env(portal, tmp_path / "one", **settings), _env(portal, tmp_path / "two", **settings)]

    results = _race(portal, envs)

    _assert_once(portal, before, results)
    assert sum("waiting for it to finish" in err for _, _, err in results) == 1


def test_no_wait_exits_4_with_the_holder_named(portal: Sandbox, tmp_path: Path) -> None:
    shared_tmp = str(tmp_path / "machine")
    (tmp_path / "machine").mkdir()
    envs = [
        _env(portal, tmp_path / "one", TMPDIR=shared_tmp),
        _env(portal, tmp_path / "two", TMPDIR=shared_tmp),
    ]
    first = _start(envs[0], "convert", *FLAGS, "--json")
    try:
        start = portal.stats()["http_requests"]
        deadline = time.monotonic() + 60
        while portal.stats()["http_requests"] < start + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        second = _start(envs[1], "convert", *FLAGS, "--no-wait")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 4
        error, hint = err.splitlines()  # one error line, one hint line
        assert f"process {first.pid}@" in error and "another b24app run" in error
        assert hint.startswith("b24app: hint:") and "--no-wait" in hint
    finally:
        first.communicate(timeout=240)
    assert first.returncode == 0
