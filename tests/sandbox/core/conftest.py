"""Fixtures for the sandbox core: a fresh portal per test and a short way to call it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.errors import ApiError
from sandbox.portal import CallContext, MethodResult, Portal

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "bitrix24-docs"
START = 1_717_000_000.0


class Clock:
    """A settable clock, so dates in answers are predictable."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class Caller:
    """Calls one portal as one user: `call(method, **params)` -> result, or ApiError raised."""

    def __init__(self, portal: Portal, ctx: CallContext) -> None:
        self.portal = portal
        self.ctx = ctx

    def __call__(self, method: str, **params: Any) -> Any:
        return self.portal.dispatch(method, params, self.ctx).result

    def full(self, method: str, **params: Any) -> MethodResult:
        """The whole MethodResult (list methods: total and next)."""
        return self.portal.dispatch(method, params, self.ctx)

    def error(self, method: str, **params: Any) -> ApiError:
        """The ApiError the call raises (fails the test when it succeeds)."""
        with pytest.raises(ApiError) as caught:
            self.portal.dispatch(method, params, self.ctx)
        return caught.value

    def lead(self, **fields: Any) -> int:
        """Add a lead through REST; its ID."""
        return self("crm.lead.add", fields={"TITLE": "Lead", **fields})

    def activity(self, owner_type: int, owner_id: int, **fields: Any) -> int:
        """Add an open call bound to an item; its ID."""
        values = {
            "OWNER_TYPE_ID": owner_type,
            "OWNER_ID": owner_id,
            "TYPE_ID": 2,
            "SUBJECT": "Call back",
            "RESPONSIBLE_ID": 1,
            "COMMUNICATIONS": [{"VALUE": "+15550001111"}],
            **fields,
        }
        return self("crm.activity.add", fields=values)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def portal(clock: Clock) -> Portal:
    return Portal(clock=clock)


@pytest.fixture
def call(portal: Portal) -> Caller:
    return Caller(portal, CallContext())


@pytest.fixture
def events(portal: Portal) -> list[tuple[str, dict]]:
    received: list[tuple[str, dict]] = []
    portal.event_sink = lambda name, payload: received.append((name, payload))
    return received


@pytest.fixture
def doc() -> Callable[[str], Any]:
    def load(name: str) -> Any:
        return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))

    return load
