"""Per-portal locks: at most one worker thread, process or machine converts for a portal at a time.

The conversion journal already refuses a second live job per portal (JobBusy); these locks keep
workers from even trying, and serialize the sweep and event conversions of one portal. Three
kinds, chosen by `make_locks`:

* `RedisLocks` (several machines): `SET key token NX PX ttl`, renewed by a background thread while
  held, released only by its holder; a worker killed with -9 frees its portals after `ttl`.
* `FileLocks` (one machine, the default SQLite queue): `flock` on a file per portal beside the
  queue; the kernel releases it the moment the holding process dies.
* `MemoryLocks` (immediate mode, tests): one process.

Each kind also keeps *claims*: a name taken for a while and then lapsing by itself (or ended by
`unclaim`), which the periodic tick uses so a due sweep is queued once, however long the queue.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("b24app.jobs")

DEFAULT_TTL = 15.0

# Delete the key only while it still holds our token (a lock that expired and was taken by
# another worker is not ours to release); renew it the same way.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class PortalLocks(Protocol):
    """Non-blocking per-portal locks, and claims that simply lapse."""

    def hold(self, name: str) -> contextlib.AbstractContextManager[bool]:
        """Context manager yielding True when this caller got the lock `name`, False if taken."""
        ...

    def claim(self, name: str, ttl: float) -> bool:
        """True for the first caller in `ttl` seconds (e.g. "this sweep is already queued")."""
        ...

    def unclaim(self, name: str) -> None:
        """End a claim early (the claimed work is done)."""
        ...


class MemoryLocks:
    """Locks within one process."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: set[str] = set()
        self._claims: dict[str, float] = {}

    def claim(self, name: str, ttl: float) -> bool:
        """True unless `name` was claimed less than `ttl` seconds ago."""
        now = time.monotonic()
        with self._guard:
            if self._claims.get(name, 0.0) > now:
                return False
            self._claims[name] = now + ttl
            return True

    def unclaim(self, name: str) -> None:
        """Forget the claim `name`."""
        with self._guard:
            self._claims.pop(name, None)

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        """Yield True when `name` was free (and is now ours until the block ends)."""
        with self._guard:
            got = name not in self._held
            self._held.add(name)
        try:
            yield got
        finally:
            if got:
                with self._guard:
                    self._held.discard(name)


class FileLocks:
    """`flock` locks in `directory`, one file per name; freed by the kernel when a process dies."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def claim(self, name: str, ttl: float) -> bool:
        """True unless a claim on `name` is still running (its file holds when it lapses)."""
        claims = self.directory / "claims"
        claims.mkdir(parents=True, exist_ok=True)
        path = claims / hashlib.sha256(name.encode()).hexdigest()[:32]
        try:
            lapses = float(path.read_text() or 0)
        except (OSError, ValueError):
            lapses = 0.0
        now = time.time()
        if lapses > now:
            return False
        path.write_text(f"{now + ttl:.6f}")  # two racing claimers may both win: claims are hints
        return True

    def unclaim(self, name: str) -> None:
        """Remove the claim file of `name`."""
        path = self.directory / "claims" / hashlib.sha256(name.encode()).hexdigest()[:32]
        path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        """Yield True when the file lock for `name` was free."""
        self.directory.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        fd = os.open(self.directory / f"{digest}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class RedisLocks:
    """Locks in Redis under `prefix`, each with a TTL renewed every ttl/3 while held."""

    def __init__(self, client: Any, *, prefix: str = "b24app:lock:", ttl: float = DEFAULT_TTL):
        self._client = client
        self._prefix = prefix
        self.ttl = ttl
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    @classmethod
    def from_url(cls, url: str, *, ttl: float = DEFAULT_TTL) -> RedisLocks:
        """Locks in the Redis at `url`."""
        import redis

        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return cls(client, ttl=ttl)

    def claim(self, name: str, ttl: float) -> bool:
        """True unless `name` was claimed less than `ttl` seconds ago (SET NX PX)."""
        millis = max(1, int(ttl * 1000))
        return bool(self._client.set(f"{self._prefix}claim:{name}", "1", nx=True, px=millis))

    def unclaim(self, name: str) -> None:
        """Delete the claim `name`."""
        with contextlib.suppress(Exception):
            self._client.delete(f"{self._prefix}claim:{name}")

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        """Yield True when `name` was free; keep it alive until the block ends."""
        key = self._prefix + name
        token = secrets.token_hex(16)
        millis = int(self.ttl * 1000)
        if not self._client.set(key, token, nx=True, px=millis):
            yield False
            return
        stop = threading.Event()
        keeper = threading.Thread(
            target=self._keep, args=(key, token, millis, stop), name=f"lock-{name}", daemon=True
        )
        keeper.start()
        try:
            yield True
        finally:
            stop.set()
            keeper.join(timeout=5)
            with contextlib.suppress(Exception):
                self._release(keys=[key], args=[token])

    def _keep(self, key: str, token: str, millis: int, stop: threading.Event) -> None:
        while not stop.wait(self.ttl / 3):
            try:
                if not self._renew(keys=[key], args=[token, millis]):
                    log.warning("lock %s was lost (expired while held)", key)
                    return
            except Exception as exc:  # Redis down: the lock may lapse; the journal still guards
                log.warning("cannot renew lock %s (%s)", key, type(exc).__name__)
