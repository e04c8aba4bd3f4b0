"""Fixtures for the CLI tests: a sandbox portal and the CLI's environment for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import SECRET

from sandbox.server import Sandbox

SEEDED = 40


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Sandbox]:
    """A running sandbox on the fast plan with a few dozen seeded leads."""
    with Sandbox(
        plan="fast", seed_leads=SEEDED, seed=3, db=str(tmp_path / "portal.db"), webhook_code=SECRET
    ) as running:
        yield running


@pytest.fixture
def env(portal: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The CLI's settings for `portal`; the working directory has no .env file."""
    monkeypatch.chdir(tmp_path)
    return {
        "B24_WEBHOOK_URL": portal.webhook_url,
        "B24APP_PLAN": "fast",
        "B24APP_DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
    }
