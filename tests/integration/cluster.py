"""A small b24app deployment on loopback for integration tests and the scale bench: sandbox
portals sharing one Market app (one client id, one OAuth server), the web app under gunicorn, and
`b24app worker` processes, all on the machine's PostgreSQL and Redis.

Real Bitrix24 has one OAuth server for every portal; each sandbox runs its own, so `OAuthRouter`
stands in for oauth.bitrix.info: it forwards a token request to the sandbox that issued the
refresh token (the others answer invalid_grant and change nothing).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from b24app.store.crypto import Cipher

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "app.b24app0cluster.00000042"
CLIENT_SECRET = "cluster-client-secret-0123456789abcdefghijklmnopqrstuv"


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class _Quiet(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:
        """Token requests carry secrets in the query: never logged."""


class OAuthRouter:
    """/oauth/token/ for several sandboxes: the first answer that is not invalid_grant wins."""

    def __init__(self, sandboxes: Sequence[Any]) -> None:
        self.sandboxes = list(sandboxes)
        self._session = requests.Session()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.socket.getsockname()[1]}"

    def __enter__(self) -> OAuthRouter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._session.close()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        answer = Response('{"error":"invalid_grant"}', status=400, mimetype="application/json")
        for sandbox in self.sandboxes:
            upstream = requests.get(
                f"{sandbox.oauth_server}/oauth/token/", params=request.args, timeout=30
            )
            answer = Response(upstream.content, status=upstream.status_code)
            answer.headers["Content-Type"] = upstream.headers.get("Content-Type", "text/plain")
            if '"invalid_grant"' not in upstream.text:
                break
        return answer(environ, start_response)


class Child:
    """A child process with its output in a log file; stopped gently, or killed with -9."""

    def __init__(self, name: str, argv: Sequence[str], *, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                list(argv), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def output(self) -> str:
        """What it printed so far."""
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.process.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no cleanup, no lock released, tasks in hand lost."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> None:
        """Ask it to stop; kill it if it does not within `timeout`."""
        if not self.alive():
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def app_env(
    *,
    database_url: str,
    redis_url: str,
    oauth_url: str,
    public_url: str,
    plan: str = "fast",
    **extra: str,
) -> dict[str, str]:
    """The environment of every process of the deployment."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("B24", "B24APP"))}
    env.update(
        B24_CLIENT_ID=CLIENT_ID,
        B24_CLIENT_SECRET=CLIENT_SECRET,
        B24_OAUTH_SERVER=oauth_url,
        B24APP_DATABASE_URL=database_url,
        B24APP_QUEUE_URL=redis_url,
        B24APP_REDIS_URL=redis_url,
        B24APP_SECRET_KEY=Cipher.generate_key(),
        B24APP_PUBLIC_URL=public_url,
        B24APP_PLAN=plan,
        B24APP_LOG_LEVEL="INFO",
        B24APP_TIMEOUT="20",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def start_web(env: dict[str, str], port: int, logs: Path) -> Child:
    """`gunicorn 'handlers:create_app()'` on the loopback `port`, answering /healthz."""
    web = Child(
        "web",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--worker-class",
            "gthread",
            "--threads",
            "4",
            "--timeout",
            "60",
            "handlers:create_app()",
        ],
        env=env,
        logs=logs,
    )

    def healthy() -> bool:
        if not web.alive():
            raise AssertionError(f"gunicorn exited:\n{web.output()[-2000:]}")
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code < 500
        return False

    try:
        wait_for(healthy, timeout=60, what="gunicorn to answer /healthz")
    except BaseException:
        web.stop()
        raise
    return web


def start_worker(
    env: dict[str, str], name: str, logs: Path, *, threads: int = 2, tick: float = 1.0
) -> Child:
    """`b24app worker`, waited for until its consumer runs."""
    b24app = str(Path(sys.executable).with_name("b24app"))
    worker = Child(
        name,
        [b24app, "worker", "--workers", str(threads), "--tick", str(tick)],
        env=env,
        logs=logs,
    )

    def started() -> bool:
        if not worker.alive():
            raise AssertionError(f"{name} exited:\n{worker.output()[-2000:]}")
        return "b24app worker:" in worker.output()

    try:
        wait_for(started, timeout=60, what=f"{name} to start")
    except BaseException:
        worker.stop()
        raise
    return worker


@contextlib.contextmanager
def redis_database(redis_url: str) -> Iterator[str]:
    """A Redis database number of its own (1-15, emptied before and after) for one deployment."""
    import random

    import redis

    base = redis_url.rsplit("/", 1)[0]
    number = random.SystemRandom().randrange(1, 16)
    url = f"{base}/{number}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@contextlib.contextmanager
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    import uuid

    import psycopg

    name = f"b24app_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
