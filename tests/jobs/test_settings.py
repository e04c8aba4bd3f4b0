"""The background workers' settings: read from the environment, documented in .env.example."""

from __future__ import annotations

from pathlib import Path

import pytest

from b24app.config import Settings
from b24app.errors import ConfigError

NAMES = ("B24APP_SWEEP_MINUTES", "B24APP_WORKERS", "B24APP_SLICE_LEADS", "B24APP_KEEPALIVE_DAYS")


def test_defaults_and_overrides() -> None:
    default = Settings.from_env({})
    assert (default.sweep_minutes, default.workers, default.slice_leads) == (10.0, 2, 500)
    assert default.keepalive_days == 20.0
    custom = Settings.from_env(dict(zip(NAMES, ("0.5", "8", "100", "25"), strict=True)))
    assert (custom.sweep_minutes, custom.workers, custom.slice_leads) == (0.5, 8, 100)
    assert custom.keepalive_days == 25.0


def test_bad_values_are_named_in_one_error() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"B24APP_SWEEP_MINUTES": "often", "B24APP_WORKERS": "-2"})
    assert "B24APP_SWEEP_MINUTES" in str(err.value)
    assert "B24APP_WORKERS" in str(err.value)


def test_env_example_documents_them() -> None:
    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    for name in NAMES:
        assert f"\n{name}=" in example, name
