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
