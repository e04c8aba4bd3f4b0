"""Fixtures for the client's wire tests: a fake clock, doc fixtures, `responses`, clients."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import responses

from b24app.config import RateLimit
from b24app.rest import PortalClient, RetryPolicy

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "bitrix24-docs"
WEBHOOK = "https://portal.bitrix24.com/rest/1/s3cretc0de/"


def fixture(name: str) -> Any:
    """The JSON body of `fixtures/bitrix24-docs/<name>.json`."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


class FakeClock:
    """A clock that only moves when slept on; records every sleep."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.sleeps.append(seconds)
            self._now += seconds
            self._mono += seconds

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds


@pytest.fixture
def rate_redis_url(redis_url: str) -> str:
    """The machine's Redis, database 13: the learned-rate tests' own (others use other DBs)."""
    base, _, last = redis_url.rpartition("/")
    return f"{base}/13" if last.isdigit() else f"{redis_url.rstrip('/')}/13"


class NoJitter(random.Random):
    """Draws 0.0 every time: a bucket sends each waiting request on the dot."""

    def random(self) -> float:
        return 0.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def make_client(clock: FakeClock, url: str = WEBHOOK, **kwargs: Any) -> PortalClient:
    """A webhook client on the fake clock with a roomy bucket and seeded jitter."""
    kwargs.setdefault("rate", RateLimit(per_second=1000.0, burst=1000))
    kwargs.setdefault("retry", RetryPolicy())
    return PortalClient.from_webhook(url, clock=clock, rng=random.Random(1), **kwargs)


@pytest.fixture
def client(clock: FakeClock) -> PortalClient:
    return make_client(clock)


def in_threads(target: Callable[[], None], count: int) -> None:
    """Run `target` in `count` threads at once and wait for all of them."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def sent_json(call: Any) -> Any:
    """The JSON body of a recorded `responses` call."""
    return json.loads(call.request.body)
