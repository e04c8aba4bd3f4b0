"""Per-portal locks: one holder at a time, freed when the holder ends or dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from b24app.locks import FileLocks, MemoryLocks, RedisLocks


def test_memory_locks_admit_one_holder() -> None:
    locks = MemoryLocks()
    with (
        locks.hold("portal:a") as first,
        locks.hold("portal:a") as second,
        locks.hold("portal:b") as other,
    ):
        assert (first, second, other) == (True, False, True)
    with locks.hold("portal:a") as again:
        assert again


def test_file_locks_admit_one_holder_and_free_on_exit(tmp_path: Path) -> None:
    locks = FileLocks(tmp_path / "locks")
    with locks.hold("portal:a") as first, FileLocks(tmp_path / "locks").hold("portal:a") as second:
        assert (first, second) == (True, False)
    with locks.hold("portal:a") as again:
        assert again


def test_a_file_lock_of_a_killed_process_is_free_at_once(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from b24app.locks import FileLocks\n"
        "with FileLocks(Path(sys.argv[1])).hold('portal:a') as got:\n"
        "    print(got, flush=True)\n"
        "    time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "locks")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "True"
        with FileLocks(tmp_path / "locks").hold("portal:a") as busy:
            assert not busy
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        with FileLocks(tmp_path / "locks").hold("portal:a") as free:
            assert free
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.services
def test_redis_locks_admit_one_holder_and_a_dead_holders_lock_expires(redis_url: str) -> None:
    import redis

    name = f"portal:{uuid.uuid4().hex}"
    one, two = RedisLocks.from_url(redis_url, ttl=0.6), RedisLocks.from_url(redis_url, ttl=0.6)
    with one.hold(name) as first:
        time.sleep(0.8)  # longer than the TTL: the holder keeps renewing it
        with two.hold(name) as second:
            assert (first, second) == (True, False)
    with two.hold(name) as again:
        assert again
    # A holder killed mid-run never releases: its key lapses after the TTL.
    redis.Redis.from_url(redis_url).set(f"b24app:lock:{name}", "dead", px=300)
    with two.hold(name) as busy:
        assert not busy
    time.sleep(0.4)
    with two.hold(name) as free:
        assert free


def test_claims_lapse_or_end_early(tmp_path: Path) -> None:
    for locks in (MemoryLocks(), FileLocks(tmp_path / "locks")):
        assert locks.claim("sweep:a", 60)
        assert not locks.claim("sweep:a", 60)
        assert locks.claim("sweep:b", 60)
        locks.unclaim("sweep:a")
        assert locks.claim("sweep:a", 0.0001)
        time.sleep(0.01)
        assert locks.claim("sweep:a", 60)  # the short claim lapsed


@pytest.mark.services
def test_redis_claims_lapse_or_end_early(redis_url: str) -> None:
    locks = RedisLocks.from_url(redis_url)
    name = f"sweep:{uuid.uuid4().hex}"
    assert locks.claim(name, 60)
    assert not locks.claim(name, 60)
    locks.unclaim(name)
    assert locks.claim(name, 0.05)
    time.sleep(0.1)
    assert locks.claim(name, 60)
    locks.unclaim(name)


# -- the portal's conversion lock ----------------------------------------------------------------


def test_a_webhook_and_an_installation_of_one_portal_meet_on_one_lock_name() -> None:
    from b24app.locks import portal_lock_name

    names = {
        portal_lock_name("https://Acme.bitrix24.com/rest/1/secretcode/"),
        portal_lock_name("https://acme.bitrix24.com/rest/"),
        portal_lock_name("acme.bitrix24.com"),
    }
    assert names == {"portal:acme.bitrix24.com"}
    assert "secretcode" not in next(iter(names))


def test_a_layered_lock_is_all_or_none_and_names_its_holder(tmp_path: Path) -> None:
    from b24app.locks import LayeredLocks

    outer, inner = FileLocks(tmp_path / "a"), FileLocks(tmp_path / "b")
    both = LayeredLocks((outer, inner))
    with inner.hold("portal:x") as taken:
        assert taken
        with both.hold("portal:x") as got:
            assert not got
        with outer.hold("portal:x") as free:
            assert free, "the first layer was let go when the second said no"
    with both.hold("portal:x") as got:
        assert got
        assert both.holder_of("portal:x") == f"{os.getpid()}@{__import__('socket').gethostname()}"
    assert both.holder_of("portal:x") is None


def test_conversion_turn_waits_for_the_holder_or_says_who_holds_it(tmp_path: Path) -> None:
    import contextlib

    from b24app.errors import PortalBusy
    from b24app.locks import LayeredLocks, conversion_turn

    locks = LayeredLocks((FileLocks(tmp_path / "m"),))
    holder = contextlib.ExitStack()
    assert holder.enter_context(FileLocks(tmp_path / "m").hold("portal:x"))
    busy = pytest.raises(PortalBusy, match=f"another b24app run .*process {os.getpid()}@")
    with busy, conversion_turn(locks, "portal:x", wait=False):
        pass

    told: list[str | None] = []
    naps: list[float] = []

    def nap(seconds: float) -> None:  # the other run finishes while this one waits
        naps.append(seconds)
        holder.close()

    with (
        conversion_turn(locks, "portal:x", on_wait=told.append, sleep=nap),
        FileLocks(tmp_path / "m").hold("portal:x") as again,
    ):
        assert not again, "this run holds it now"
    assert told == [f"{os.getpid()}@{__import__('socket').gethostname()}"] and naps == [1.0]


@pytest.mark.services
def test_a_database_lock_is_freed_when_its_holder_is_killed(fresh_postgres_url: str) -> None:
    from b24app.locks import DatabaseLocks
    from b24app.store.db import make_engine

    code = (
        "import sys, time\n"
        "from b24app.locks import DatabaseLocks\n"
        "from b24app.store.db import make_engine\n"
        "with DatabaseLocks(make_engine(sys.argv[1])).hold('portal:a') as got:\n"
        "    print(got, flush=True)\n"
        "    time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, fresh_postgres_url], stdout=subprocess.PIPE, text=True
    )
    locks = DatabaseLocks(make_engine(fresh_postgres_url))
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "True"
        with locks.hold("portal:a") as busy, locks.hold("portal:b") as other:
            assert (busy, other) == (False, True)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 10
        while True:
            with locks.hold("portal:a") as free:
                if free or time.monotonic() > deadline:
                    break
            time.sleep(0.1)
        assert free
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        locks.engine.dispose()
