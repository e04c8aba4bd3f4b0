"""Per-portal locks: at most one worker thread, process or machine converts for a portal at a time.

Every conversion of a portal - a CLI run, a worker's job, an event's or a sweep's conversion -
holds the portal's *conversion lock*, named by the portal's host (`portal_lock_name`) so that a
webhook run and the Market app's workers meet on the same name. The lock is as wide as the widest
thing the processes share (`conversion_locks`), every layer taken in the same order, all or none:

* `FileLocks` in the machine's temp directory (`machine_lock_dir`): every process on this machine,
  whatever its working directory, journal or settings; the kernel frees it when the holder dies.
* `RedisLocks` when B24APP_REDIS_URL (or a Redis queue) is set: every process sharing that Redis.
  `SET key token NX PX ttl`, renewed while held; a holder killed with -9 frees it after `ttl`.
* `DatabaseLocks` when the journal is PostgreSQL: every process sharing that database (a session
  advisory lock, freed when its connection closes, so also when the holder dies).

Processes that share none of these (two machines, each with its own SQLite journal and no Redis)
cannot exclude each other, nor can a run that does not take the lock at all (an older release, a
misconfigured machine): behind the locks, every conversion *settles* each deal before binding to
it (`b24app.crm.planner`, the settle step), so racing runs still leave one conversion per lead.
The conversion journal refuses a second live job per portal (JobBusy) behind the locks too.

`MemoryLocks` (immediate mode, tests) is one process. Each kind also keeps *claims*: a name taken
for a while and then lapsing by itself (or ended by `unclaim`), which the periodic tick uses so a
due sweep is queued once, however long the queue.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from b24app.errors import PortalBusy

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


def holder() -> str:
    """Who holds a lock, for the message of a run that waits for it: `pid@host`."""
    return f"{os.getpid()}@{socket.gethostname()}"


def machine_lock_dir() -> Path:
    """The directory every b24app process on this machine keeps its conversion locks in."""
    return Path(tempfile.gettempdir()) / "b24app-locks"


def portal_lock_name(endpoint: str) -> str:
    """The conversion lock's name for a portal, from any of its URLs (webhook, client endpoint)
    or its bare host: the host, lower-cased, so every kind of client meets on one name."""
    text = endpoint.strip()
    host = urlsplit(text).netloc if "://" in text else text.split("/", 1)[0]
    return f"portal:{host.lower()}"


class FileLocks:
    """`flock` locks in `directory`, one file per name; freed by the kernel when a process dies.

    `shared`: the directory is for every user of the machine (sticky, world-writable, files
    readable and writable by all), as the machine-wide conversion locks are.
    """

    def __init__(self, directory: Path, *, shared: bool = False) -> None:
        self.directory = directory
        self.shared = shared

    def _open(self, name: str) -> int:
        if self.shared and not self.directory.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):  # someone else's directory: theirs to set
                self.directory.chmod(0o1777)
        self.directory.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        path = self.directory / f"{digest}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 if self.shared else 0o600)
        if self.shared:
            with contextlib.suppress(OSError):
                if stat.S_IMODE(os.fstat(fd).st_mode) != 0o666:
                    os.fchmod(fd, 0o666)
        return fd

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
        """Yield True when the file lock for `name` was free; the file then names its holder."""
        fd = self._open(name)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, holder().encode(), 0)
                yield True
            finally:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def holder_of(self, name: str) -> str | None:
        """Who holds `name` now (`pid@host`), if anyone says so."""
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        try:
            text = (self.directory / f"{digest}.lock").read_text().strip()
        except OSError:
            return None
        return text or None


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
        token = f"{secrets.token_hex(16)}:{holder()}"
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

    def holder_of(self, name: str) -> str | None:
        """Who holds `name` now (`pid@host`), if anyone does."""
        try:
            value = self._client.get(self._prefix + name)
        except Exception:
            return None
        if not value:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        return text.partition(":")[2] or None

    def _keep(self, key: str, token: str, millis: int, stop: threading.Event) -> None:
        while not stop.wait(self.ttl / 3):
            try:
                if not self._renew(keys=[key], args=[token, millis]):
                    log.warning("lock %s was lost (expired while held)", key)
                    return
            except Exception as exc:  # Redis down: the lock may lapse; the journal still guards
                log.warning("cannot renew lock %s (%s)", key, type(exc).__name__)


class DatabaseLocks:
    """PostgreSQL session advisory locks on a connection of their own (autocommit, so no
    transaction stays open while a conversion runs); freed when released or when the holder's
    connection drops, so a holder killed with -9 frees them at once."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        """Yield True when the advisory lock for `name` was free."""
        from sqlalchemy import text

        key = {"key": f"b24app-convert:{name}"}
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = bool(
                conn.execute(
                    text("SELECT pg_try_advisory_lock(hashtextextended(:key, 0))"), key
                ).scalar()
            )
            if not got:
                yield False
                return
            try:
                yield True
            finally:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))"), key)
                except Exception:  # the connection is gone: so is the lock; never pool it again
                    conn.invalidate()
        finally:
            conn.close()

    def holder_of(self, name: str) -> str | None:
        """The database does not say who holds an advisory lock."""
        return None

    def claim(self, name: str, ttl: float) -> bool:
        """Claims are kept by the claims layer of a `LayeredLocks`, never here."""
        raise NotImplementedError("DatabaseLocks keeps no claims")

    def unclaim(self, name: str) -> None:
        """Claims are kept by the claims layer of a `LayeredLocks`, never here."""
        raise NotImplementedError("DatabaseLocks keeps no claims")


class LayeredLocks:
    """A lock made of layers, taken in order, all or none: as wide as its widest layer.

    Claims go to `claims` (the workers' queue-wide locks).
    """

    def __init__(self, layers: tuple[Any, ...], *, claims: PortalLocks | None = None) -> None:
        if not layers:
            raise ValueError("a layered lock needs at least one layer")
        self.layers = layers
        self._claims = claims or layers[0]

    def __repr__(self) -> str:
        return f"LayeredLocks({', '.join(type(layer).__name__ for layer in self.layers)})"

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        """Yield True when every layer's lock for `name` was free (and is now held)."""
        with contextlib.ExitStack() as stack:
            for layer in self.layers:
                if not stack.enter_context(layer.hold(name)):
                    break  # the layers taken so far are let go before saying no
            else:
                yield True
                return
        yield False

    def holder_of(self, name: str) -> str | None:
        """Who holds `name`, as the first layer that knows says."""
        for layer in self.layers:
            found = getattr(layer, "holder_of", lambda _name: None)(name)
            if found:
                return str(found)
        return None

    def claim(self, name: str, ttl: float) -> bool:
        """A claim in the claims layer."""
        return self._claims.claim(name, ttl)

    def unclaim(self, name: str) -> None:
        """End a claim in the claims layer."""
        self._claims.unclaim(name)


def lock_redis_url(redis_url: str | None, queue_url: str | None) -> str | None:
    """The Redis every process shares locks through: B24APP_REDIS_URL, else a Redis queue's."""
    queue = queue_url or ""
    return redis_url or (queue if queue.startswith(("redis", "unix")) else None)


def conversion_locks(
    *,
    redis_url: str | None = None,
    engine: Any = None,
    directory: Path | None = None,
    claims: PortalLocks | None = None,
) -> LayeredLocks:
    """The conversion lock for processes configured this way: the machine's file lock, then
    Redis (`redis_url`), then PostgreSQL (`engine`, when it is one). Every process builds its
    layers in this order, so two of them never wait for each other crosswise."""
    layers: list[Any] = [FileLocks(directory or machine_lock_dir(), shared=directory is None)]
    if redis_url:
        layers.append(RedisLocks.from_url(redis_url))
    if engine is not None and engine.dialect.name == "postgresql":
        layers.append(DatabaseLocks(engine))
    return LayeredLocks(tuple(layers), claims=claims)


@contextlib.contextmanager
def conversion_turn(
    locks: LayeredLocks,
    name: str,
    *,
    wait: bool = True,
    on_wait: Callable[[str | None], None] | None = None,
    poll: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Hold the conversion lock `name` for the block; when another run holds it, wait for it
    (`on_wait(holder)` once, then poll) or, when not `wait`, raise PortalBusy."""
    told = False
    while True:
        with locks.hold(name) as got:
            if got:
                yield
                return
        who = locks.holder_of(name)
        if not wait:
            by = f" (process {who})" if who else ""
            raise PortalBusy(f"another b24app run is converting this portal{by}")
        if not told and on_wait is not None:
            on_wait(who)
            told = True
        sleep(poll)
