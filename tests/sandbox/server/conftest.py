"""Fixtures for the sandbox server's tests: running sandboxes, an event receiver, doc fixtures."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from sandbox.server import Sandbox
from sandbox.wire import parse_php_query

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "bitrix24-docs"


def fixture(name: str) -> Any:
    """The JSON body of `fixtures/bitrix24-docs/<name>.json`."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


class FakeClock:
    """A clock that stands still until moved."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Sandbox]:
    """A running sandbox on the fast plan with 120 seeded leads in a temp SQLite file."""
    with Sandbox(plan="fast", seed_leads=120, seed=7, db=str(tmp_path / "portal.db")) as running:
        yield running


@dataclass
class Received:
    """One request an event receiver got."""

    path: str
    query: dict[str, Any]
    form: dict[str, Any]
    raw: str


@dataclass
class Receiver:
    """A local HTTP endpoint that records what the sandbox POSTs (events, installer)."""

    base_url: str
    requests: list[Received] = field(default_factory=list)
    status: int = 200
    arrived: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/handler") -> str:
        return self.base_url + path

    def forms(self, event: str | None = None) -> list[dict[str, Any]]:
        return [r.form for r in self.requests if event is None or r.form.get("event") == event]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        raw = request.get_data(as_text=True)
        rec = holder["receiver"]
        rec.requests.append(
            Received(
                request.path,
                parse_php_query(environ.get("QUERY_STRING", "")),
                parse_php_query(raw),
                raw,
            )
        )
        rec.arrived.set()
        return Response("ok", status=rec.status)(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    holder["receiver"] = Receiver(f"http://127.0.0.1:{server.server_port}")
    try:
        yield holder["receiver"]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _quiet_werkzeug() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


def call(url: str, method: str, **params: Any) -> requests.Response:
    """POST a JSON body to `<url><method>`."""
    return requests.post(url + method, json=params, timeout=10)


def oauth_call(portal: Sandbox, method: str, token: str, **params: Any) -> requests.Response:
    """POST a JSON body with `auth` to `/rest/<method>`."""
    return requests.post(
        f"{portal.base_url}/rest/{method}", json={**params, "auth": token}, timeout=10
    )


def admin(portal: Sandbox, http_method: str, action: str, **params: Any) -> requests.Response:
    """Call the admin endpoint with the key."""
    return requests.request(
        http_method,
        portal.admin_url + action,
        json=params or None,
        headers={"X-Sandbox-Key": portal.admin_key},
        timeout=10,
    )
