"""Settings.from_env: the environment-variable contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from b24app.config import PLANS, RateLimit, Settings
from b24app.errors import ConfigError


def test_defaults_mirror_the_standard_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    settings = Settings.from_env({})
    assert settings.plan == "standard"
    assert settings.rate_limit == RateLimit(2.0, 50)
    assert settings.oauth_server == "https://oauth.bitrix.info"
    assert settings.database_url == f"sqlite:///{tmp_path}/b24app/b24app.db"
    assert settings.webhook_url is None


def test_every_variable_is_read() -> None:
    env = {
        "B24_WEBHOOK_URL": "http://127.0.0.1:8800/rest/1/abc/",
        "B24_CLIENT_ID": "local.1",
        "B24_CLIENT_SECRET": "s3cret",
        "B24_OAUTH_SERVER": "http://127.0.0.1:8800/",
        "B24APP_DATABASE_URL": "postgresql://u@h/db",
        "B24APP_QUEUE_URL": "redis://h:6379/1",
        "B24APP_REDIS_URL": "redis://h:6379/0",
        "B24APP_SECRET_KEY": "k",
        "B24APP_PUBLIC_URL": "https://app.example",
        "B24APP_PLAN": "Enterprise",
        "B24APP_BURST": "100",
        "B24APP_TIMEOUT": "5",
        "B24APP_LOG_LEVEL": "debug",
    }
    s = Settings.from_env(env)
    assert (s.client_id, s.client_secret, s.secret_key) == ("local.1", "s3cret", "k")
    assert s.oauth_server == "http://127.0.0.1:8800"
    assert (s.database_url, s.queue_url, s.redis_url) == (
        "postgresql://u@h/db",
        "redis://h:6379/1",
        "redis://h:6379/0",
    )
    assert s.public_url == "https://app.example"
    assert s.plan == "enterprise"
    assert s.rate_limit == RateLimit(PLANS["enterprise"][0], 100)
    assert s.timeout == 5.0
    assert s.log_level == "DEBUG"


def test_secrets_stay_out_of_the_repr() -> None:
    s = Settings.from_env({"B24_CLIENT_SECRET": "s3cret", "B24APP_SECRET_KEY": "fernet-key"})
    assert "s3cret" not in repr(s)
    assert "fernet-key" not in repr(s)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(
            {"B24APP_PLAN": "gold", "B24APP_BURST": "-1", "B24_WEBHOOK_URL": "ftp://x"}
        )
    message = str(err.value)
    assert "B24APP_PLAN" in message and "B24APP_BURST" in message and "B24_WEBHOOK_URL" in message


def test_require_names_the_missing_variables() -> None:
    with pytest.raises(ConfigError, match="B24_CLIENT_ID, B24APP_SECRET_KEY"):
        Settings.from_env({}).require("B24_CLIENT_ID", "B24APP_SECRET_KEY")


def test_env_example_documents_every_variable() -> None:
    from pathlib import Path

    example = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    from b24app.config import _ATTR

    for name in [
        *_ATTR,
        "B24APP_PLAN",
        "B24APP_RATE_PER_SECOND",
        "B24APP_BURST",
        "B24APP_TIMEOUT",
        "B24APP_LOG_LEVEL",
    ]:
        assert f"\n{name}=" in example, name


def test_settings_survive_the_trip_through_the_environment_of_a_child() -> None:
    settings = Settings(
        client_id="app.1",
        client_secret="s3cret",
        oauth_server="http://127.0.0.1:9",
        database_url="sqlite:////tmp/x.db",
        secret_key="k" * 44,
        rate_limit=RateLimit(5.0, 250),
        timeout=7.5,
        log_level="DEBUG",
    )
    again = Settings.from_env(settings.environment())
    assert again == settings
