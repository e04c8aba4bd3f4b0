"""Helpers for tests of the Market app's web side: settings, recorded jobs, install forms built
from a sandbox grant, the documented request bodies, the raw database rows, and the app served
on a real loopback port for the sandbox to call."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import Engine, select

from b24app.config import PLANS, RateLimit, Settings
from b24app.store.crypto import Cipher
from b24app.store.installations import installation_history, installations
from sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
EVENT_FIXTURES = ROOT / "fixtures" / "events"
DOC_FIXTURES = ROOT / "fixtures" / "bitrix24-docs"
# The placeholders every documented example shares.
DOC_MEMBER = "a223c6b3710f85df22e9377d6c4f7553"
DOC_APP_TOKEN = "51856fefc120afa4b628cc82d3935cce"
PUBLIC_URL = "https://b24app.example.com"


def body(name: str) -> bytes:
    """A raw form body from fixtures/events (e.g. "ONCRMLEADADD.form")."""
    return (EVENT_FIXTURES / name).read_bytes()


def pairs(name: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of a fixture body."""
    return parse_qsl(body(name).decode(), keep_blank_values=True)


def doc(name: str) -> Any:
    """A documented JSON example from fixtures/bitrix24-docs."""
    return json.loads((DOC_FIXTURES / f"{name}.json").read_text())


class RecordingJobs:
    """Stands in for b24app.jobs.Jobs where a test asserts what was (not) enqueued."""

    def __init__(self) -> None:
        self.lead_events: list[tuple[str, int, str]] = []
        self.runs: list[tuple[str, int]] = []
        self.sweeps: list[str | None] = []

    def lead_event(self, member_id: str, lead_id: int, event: str) -> None:
        self.lead_events.append((member_id, lead_id, event))

    def run_job(self, member_id: str, job_id: int) -> None:
        self.runs.append((member_id, job_id))

    def sweep(self, member_id: str | None = None) -> None:
        self.sweeps.append(member_id)


def settings_for(
    tmp_path: Path,
    portal: Sandbox | None = None,
    *,
    public_url: str = PUBLIC_URL,
    name: str = "app.db",
    **extra: Any,
) -> Settings:
    """Settings with a SQLite file in `tmp_path`, a fresh Fernet key, and the sandbox's client
    credentials and OAuth server (or made-up ones for the real oauth.bitrix.info, mocked)."""
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / name}",
        "secret_key": Cipher.generate_key(),
        "public_url": public_url,
        "client_id": "app.0000000000000a.00000001",
        "client_secret": "not-a-real-client-secret",
        "plan": "fast",
        "rate_limit": RateLimit(*PLANS["fast"]),
    }
    if portal is not None:
        values |= {
            "client_id": portal.client_id,
            "client_secret": portal.client_secret,
            "oauth_server": portal.oauth_server,
        }
    return Settings(**(values | extra))


def market_request(portal: Sandbox, grant: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(query, form) of the Market installer request for a sandbox grant, as Bitrix24 sends it."""
    query = {"DOMAIN": portal.domain, "PROTOCOL": "0", "LANG": "en", "APP_SID": "f" * 32}
    form = {
        "AUTH_ID": grant["access_token"],
        "AUTH_EXPIRES": str(grant["expires_in"]),
        "REFRESH_ID": grant["refresh_token"],
        "SERVER_ENDPOINT": grant["server_endpoint"],
        "APPLICATION_TOKEN": grant["application_token"],
        "APPLICATION_SCOPE": grant["scope"],
        "member_id": grant["member_id"],
        "status": grant["status"],
        "PLACEMENT": "DEFAULT",
    }
    return query, form


def post_install(client: Any, query: dict[str, str], form: dict[str, str]) -> Any:
    """POST the installer request to the Flask test client."""
    return client.post("/install", query_string=query, data=form)


def event_form(
    event: str,
    *,
    member_id: str,
    application_token: str | None,
    lead_id: int | None = None,
    domain: str = "evil.example.com",
    clean: bool | None = None,
) -> dict[str, str]:
    """A Bitrix24 event form; `domain` and endpoints default to an attacker's address."""
    form = {
        "event": event,
        "ts": str(int(time.time())),
        "auth[domain]": domain,
        "auth[client_endpoint]": f"https://{domain}/rest/",
        "auth[server_endpoint]": f"https://{domain}/rest/",
        "auth[member_id]": member_id,
        "auth[access_token]": "a" * 32,
    }
    if application_token is not None:
        form["auth[application_token]"] = application_token
    if lead_id is not None:
        form["data[FIELDS][ID]"] = str(lead_id)
    if clean is not None:
        form["data[CLEAN]"] = "1" if clean else "0"
    return form


def raw_installation_rows(engine: Engine) -> list[dict[str, Any]]:
    """Every installation row exactly as stored (ciphertext, not decrypted)."""
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(installations))]


def history_events(engine: Engine, member_id: str) -> list[str]:
    """The installation history's event names for a portal, oldest first."""
    query = (
        select(installation_history.c.event)
        .where(installation_history.c.member_id == member_id)
        .order_by(installation_history.c.id)
    )
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
