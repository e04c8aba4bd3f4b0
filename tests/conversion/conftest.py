"""Fixtures for conversion scenarios: a running sandbox portal, a client on it, a journal file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from b24app.config import PLANS, RateLimit
from b24app.rest import PortalClient, RetryPolicy
from b24app.store.journal import Journal
from sandbox import Sandbox

PORTAL = "sandbox"
# Quick retries: the sandbox's faults are instant, waiting seconds between tries only slows tests.
FAST_RETRY = RetryPolicy(attempts=6, base=0.01, cap=0.05)


def client_for(sandbox: Any, *, plan: str = "fast", url: str | None = None) -> PortalClient:
    """A webhook client for the sandbox, its throttle set to the sandbox's plan."""
    return PortalClient.from_webhook(
        url or sandbox.webhook_url, rate=RateLimit(*PLANS[plan]), retry=FAST_RETRY, timeout=10.0
    )


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Any]]:
    """Start sandbox portals (fast plan unless told); all are stopped after the test."""
    started: list[Any] = []

    def make(seed_leads: int = 120, **options: Any) -> Any:
        options.setdefault("plan", "fast")
        sandbox = Sandbox(seed_leads=seed_leads, seed=options.pop("seed", 1), **options).start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A fresh SQLite file for the app database."""
    return f"sqlite:///{tmp_path / 'app.db'}"


@pytest.fixture
def journal(database_url: str) -> Journal:
    """The journal of the sandbox portal in the test's SQLite file."""
    return Journal.open(database_url, portal=PORTAL)
