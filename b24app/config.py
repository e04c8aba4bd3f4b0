"""Settings: every environment variable b24app reads, in one place.

`Settings.from_env()` is called at the entry points only (CLI, app factory, worker); everything
below them receives a `Settings` value. `.env.example` documents each variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from platformdirs import user_data_dir

from b24app.errors import ConfigError

# Bitrix24's leaky bucket per plan: (drain per second, burst).
# https://apidocs.bitrix24.com/limits.html - Enterprise 5/s and 250, every other plan 2/s and 50.
# `fast` is the sandbox's time-scaled standard plan for quick tests and demos (25x the drain).
PLANS: dict[str, tuple[float, int]] = {
    "standard": (2.0, 50),
    "enterprise": (5.0, 250),
    "fast": (50.0, 50),
}

DEFAULT_OAUTH_SERVER = "https://oauth.bitrix.info"


def data_dir() -> Path:
    """The user's data directory for b24app (platformdirs: ~/.local/share/b24app on Linux,
    $XDG_DATA_HOME honoured), so every run of one user - cron included - sees one journal."""
    return Path(user_data_dir("b24app", appauthor=False))


def default_database_url() -> str:
    """The SQLite journal in the data directory (created when missing)."""
    path = data_dir() / "b24app.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


# The default as a value (no directory is made until `from_env` picks it).
DEFAULT_DATABASE_URL = f"sqlite:///{data_dir() / 'b24app.db'}"


@dataclass(frozen=True)
class RateLimit:
    """The client-side mirror of a portal's leaky bucket."""

    per_second: float
    burst: int


@dataclass(frozen=True)
class Settings:
    """Every setting b24app reads; build it with `from_env` at an entry point."""

    webhook_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    oauth_server: str = DEFAULT_OAUTH_SERVER
    database_url: str = DEFAULT_DATABASE_URL
    queue_url: str | None = None
    redis_url: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    public_url: str | None = None
    plan: str = "standard"
    rate_limit: RateLimit = field(default_factory=lambda: RateLimit(*PLANS["standard"]))
    timeout: float = 30.0
    log_level: str = "INFO"
    sweep_minutes: float = 10.0
    workers: int = 2
    slice_leads: int = 500
    keepalive_days: float = 20.0
    event_window: float = 5.0
    event_batch: int = 500
    lanes: int = 64

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `environ` (default `os.environ`); ConfigError on bad values."""
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        plan = (get("B24APP_PLAN") or "standard").lower()
        if plan not in PLANS:
            problems.append(f"B24APP_PLAN must be one of {', '.join(PLANS)} (got {plan!r})")
            plan = "standard"
        per_second, burst = PLANS[plan]
        per_second = _number(
            get("B24APP_RATE_PER_SECOND"), per_second, "B24APP_RATE_PER_SECOND", problems
        )
        burst = int(_number(get("B24APP_BURST"), burst, "B24APP_BURST", problems))
        timeout = _number(get("B24APP_TIMEOUT"), 30.0, "B24APP_TIMEOUT", problems)
        sweep_minutes = _number(get("B24APP_SWEEP_MINUTES"), 10.0, "B24APP_SWEEP_MINUTES", problems)
        workers = int(_number(get("B24APP_WORKERS"), 2, "B24APP_WORKERS", problems))
        slice_leads = int(_number(get("B24APP_SLICE_LEADS"), 500, "B24APP_SLICE_LEADS", problems))
        keepalive_days = _number(
            get("B24APP_KEEPALIVE_DAYS"), 20.0, "B24APP_KEEPALIVE_DAYS", problems
        )

        event_window = _number(get("B24APP_EVENT_WINDOW"), 5.0, "B24APP_EVENT_WINDOW", problems)
        event_batch = int(_number(get("B24APP_EVENT_BATCH"), 500, "B24APP_EVENT_BATCH", problems))
        lanes = int(_number(get("B24APP_LANES"), 64, "B24APP_LANES", problems))

        webhook_url = get("B24_WEBHOOK_URL")
        if webhook_url and not webhook_url.startswith(("http://", "https://")):
            problems.append("B24_WEBHOOK_URL must start with http:// or https://")

        if problems:
            raise ConfigError("; ".join(problems))
        return cls(
            webhook_url=webhook_url,
            client_id=get("B24_CLIENT_ID"),
            client_secret=get("B24_CLIENT_SECRET"),
            oauth_server=(get("B24_OAUTH_SERVER") or DEFAULT_OAUTH_SERVER).rstrip("/"),
            database_url=get("B24APP_DATABASE_URL") or default_database_url(),
            queue_url=get("B24APP_QUEUE_URL"),
            redis_url=get("B24APP_REDIS_URL"),
            secret_key=get("B24APP_SECRET_KEY"),
            public_url=get("B24APP_PUBLIC_URL"),
            plan=plan,
            rate_limit=RateLimit(per_second, burst),
            timeout=timeout,
            log_level=(get("B24APP_LOG_LEVEL") or "INFO").upper(),
            sweep_minutes=sweep_minutes,
            workers=max(1, workers),
            slice_leads=max(1, slice_leads),
            keepalive_days=keepalive_days,
            event_window=event_window,
            event_batch=max(1, event_batch),
            lanes=max(1, lanes),
        )

    @property
    def database_shown(self) -> str:
        """The database URL safe to print (password hidden)."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            return make_url(self.database_url).render_as_string(hide_password=True)
        except ArgumentError:
            return self.database_url.split("@")[-1]

    def environment(self) -> dict[str, str]:
        """These settings as the environment variables `from_env` reads back (for a child
        process that must act with exactly these settings)."""
        env = {name: str(getattr(self, key)) for name, key in _ATTR.items() if getattr(self, key)}
        env["B24APP_RATE_PER_SECOND"] = f"{self.rate_limit.per_second:g}"
        env["B24APP_BURST"] = str(self.rate_limit.burst)
        env["B24APP_TIMEOUT"] = f"{self.timeout:g}"
        env["B24APP_LOG_LEVEL"] = self.log_level
        return env

    def require(self, *names: str) -> None:
        """Raise one ConfigError naming every listed setting (env variable name) that is unset."""
        missing = [name for name in names if not getattr(self, _ATTR[name])]
        if missing:
            raise ConfigError(f"missing setting(s): {', '.join(missing)}")


_ATTR = {
    "B24_WEBHOOK_URL": "webhook_url",
    "B24_CLIENT_ID": "client_id",
    "B24_CLIENT_SECRET": "client_secret",
    "B24_OAUTH_SERVER": "oauth_server",
    "B24APP_DATABASE_URL": "database_url",
    "B24APP_QUEUE_URL": "queue_url",
    "B24APP_REDIS_URL": "redis_url",
    "B24APP_SECRET_KEY": "secret_key",
    "B24APP_PUBLIC_URL": "public_url",
}


def _number(raw: str | None, default: float, name: str, problems: list[str]) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"{name} must be a number (got {raw!r})")
        return default
    if value <= 0:
        problems.append(f"{name} must be positive (got {raw!r})")
        return default
    return value
