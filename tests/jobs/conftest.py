"""Fixtures for the background-work tests: sandbox portals with the app installed in a SQLite
database, settings that reach them, and the conversion tests' journal fixtures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from b24app.config import PLANS, RateLimit, Settings
from tests.conversion.conftest import database_url, journal, make_sandbox
from tests.rest.sandbox_app import Installed

__all__ = ["App", "database_url", "installed", "journal", "make_sandbox"]


@dataclass(frozen=True)
class App:
    """A sandbox portal with the app installed, and the settings of an app that reaches it."""

    sandbox: Any
    settings: Settings
    member_id: str
    installed: Installed


@pytest.fixture
def installed(make_sandbox: Callable[..., Any], tmp_path: Path) -> Callable[..., App]:
    """Start a sandbox and install the app from it into the test's SQLite database."""

    def make(*, seed_leads: int = 40, slice_leads: int = 500, **options: Any) -> App:
        sandbox = make_sandbox(seed_leads=seed_leads, **options)
        url = f"sqlite:///{tmp_path / 'app.db'}"
        app = Installed(sandbox, url)
        settings = Settings(
            database_url=url,
            secret_key=app.key,
            client_id=sandbox.client_id,
            client_secret=sandbox.client_secret,
            oauth_server=sandbox.oauth_server,
            rate_limit=RateLimit(*PLANS["fast"]),
            slice_leads=slice_leads,
            timeout=10.0,
        )
        return App(sandbox=sandbox, settings=settings, member_id=app.member_id, installed=app)

    return make
