"""`b24app doctor` against the sandbox: each knob's reading named correctly, each failure one
clear line with exit code 3, nothing written, a bounded number of requests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b24app.store.db import make_engine
from b24app.store.portal_variants import PortalVariants
from sandbox.server import Sandbox
from tests.cli.cli_support import Ran, run_cli

WRITES = (".add", ".update", ".set", ".delete", ".bind", ".unbind")


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # no .env file around
    return f"sqlite:///{tmp_path / 'app.db'}"


def doctor(webhook_url: str, db_url: str, *args: str, plan: str = "fast") -> Ran:
    env = {"B24_WEBHOOK_URL": webhook_url, "B24APP_PLAN": plan, "B24APP_DATABASE_URL": db_url}
    return run_cli(["doctor", *args], env)


@pytest.fixture
def portal() -> Iterator[Sandbox]:
    with Sandbox(plan="fast", seed_leads=6, seed=5, custom_fields=True) as running:
        yield running


def fail_lines(ran: Ran) -> list[str]:
    return [line for line in ran.out.splitlines() if line.startswith("fail")]


# -- every knob, every reading -----------------------------------------------------------------


@pytest.mark.parametrize("reading", ["code", "docs"])
@pytest.mark.parametrize("knob", ["productrow_owner_arrays", "batch_sections", "app_info_webhook"])
def test_the_doctor_names_each_knobs_reading(knob: str, reading: str, db_url: str) -> None:
    with Sandbox(plan="fast", seed_leads=3, knobs={knob: reading}) as running:
        ran = doctor(running.webhook_url, db_url, "--json")
    assert ran.code == 0, ran.out + ran.err
    assert ran.json()["variants"][knob] == reading


@pytest.mark.parametrize(("reading", "status"), [("docs", 403), ("code", 401)])
def test_the_doctor_names_the_insufficient_scope_status(reading: str, status: int, db_url: str):
    with Sandbox(plan="fast", seed_leads=3, knobs={"error_statuses": reading}) as running:
        narrow = running.add_webhook(scope="crm,user")  # no `department`: one call provokes it
        ran = doctor(narrow, db_url, "--json")
    assert ran.code == 0, ran.out + ran.err
    found = ran.json()
    assert found["variants"]["error_statuses"] == reading
    detail = next(v for v in found["variant_details"] if v["variant"] == "error_statuses")
    assert f"HTTP {status}" in detail["detail"]
    assert found["requests"]["portal"] == 3


def test_no_lead_no_owner_probe_and_every_scope_granted_no_status_probe(db_url: str) -> None:
    with Sandbox(plan="fast") as running:
        ran = doctor(running.webhook_url, db_url, "--json")
    variants = ran.json()["variants"]
    assert variants["productrow_owner_arrays"] == "unknown"
    assert variants["error_statuses"] == "unknown"
    assert ran.json()["requests"]["portal"] == 2


def test_variants_are_recorded_per_portal_in_the_journal_database(db_url: str) -> None:
    knobs = {"productrow_owner_arrays": "docs", "batch_sections": "code"}
    with Sandbox(plan="fast", seed_leads=2, knobs=knobs) as running:
        ran = doctor(running.webhook_url, db_url, "--json")
        key = running.webhook_url.split("://", 1)[1].split("/", 1)[0]
    assert ran.json()["recorded"] is True
    stored = PortalVariants(make_engine(db_url)).of(key)
    assert stored == {
        "productrow_owner_arrays": "docs",
        "batch_sections": "code",
        "app_info_webhook": "docs",
    }


# -- the whole report ----------------------------------------------------------------------------


def test_a_healthy_portal_every_check_in_two_requests_and_nothing_written(
    portal: Sandbox, db_url: str
) -> None:
    counts = portal.portal.counts()
    ran = doctor(portal.webhook_url, db_url, "--json")
    assert ran.code == 0, ran.out + ran.err
    found = ran.json()
    statuses = {c["check"]: c["status"] for c in found["checks"]}
    assert statuses == {
        "reach": "ok",
        "credentials": "ok",
        "scopes": "ok",
        "admin": "ok",
        "mode": "ok",
        "methods": "ok",
        "stages": "ok",
        "pipelines": "ok",
        "fields": "warn",  # the seeded "Lead only note" has no twin anywhere
        "plan": "warn",  # B24APP_PLAN=fast, and the docs' app.info names no plan for a webhook
        "operating": "ok",
    }
    fields = next(c for c in found["checks"] if c["check"] == "fields")
    assert "Lead only note" in fields["summary"]
    assert len(fields["data"]["deal"]["missing"]) == 2  # the note, and the address (no twin type)
    assert found["requests"] == {"portal": 2, "other": 0}
    stats = portal.stats()
    assert stats["http_requests"] == 2
    assert [m for m in stats["sub_calls"] if m.endswith(WRITES)] == []
    assert portal.portal.counts() == counts


def test_plan_named_by_the_code_reading_of_app_info(db_url: str) -> None:
    with Sandbox(plan="enterprise", knobs={"app_info_webhook": "code"}) as running:
        ran = doctor(running.webhook_url, db_url, "--json", plan="standard")
    plan = next(c for c in ran.json()["checks"] if c["check"] == "plan")
    assert (plan["status"], plan["data"]["plan"]) == ("warn", "enterprise")
    assert plan["fix"] == "set B24APP_PLAN=enterprise"


def test_text_output_is_one_line_per_check(portal: Sandbox, db_url: str) -> None:
    ran = doctor(portal.webhook_url, db_url)
    lines = ran.out.splitlines()
    assert lines[0].startswith("ok    reach")
    assert any(line.startswith("warn  fields") for line in lines)
    assert lines[-1].startswith("2 request(s) to the portal")
    assert portal.webhook_code not in ran.out + ran.err


# -- the failures: one clear line, exit 3 ---------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def failing(ran: Ran, check: str, *words: str) -> dict[str, Any]:
    assert ran.code == 3, ran.out + ran.err
    lines = fail_lines(ran)
    assert len(lines) == 1 and lines[0].split()[1] == check, ran.out
    assert "fix:" in ran.out
    for word in words:
        assert word in ran.out
    return {"out": ran.out}


def test_bad_credentials(portal: Sandbox, db_url: str) -> None:
    ran = doctor(f"{portal.base_url}/rest/1/notthecode/", db_url)
    failing(ran, "credentials", "INVALID_CREDENTIALS", "B24_WEBHOOK_URL")
    assert "notthecode" not in ran.out + ran.err


def test_missing_crm_scope(portal: Sandbox, db_url: str) -> None:
    ran = doctor(portal.add_webhook(scope="user"), db_url)
    failing(ran, "scopes", "lacks the crm scope", "CRM (crm)")


def test_non_admin_webhook_user(portal: Sandbox, db_url: str) -> None:
    ran = doctor(portal.add_webhook(user_id=2, scope="crm,user"), db_url)
    failing(ran, "admin", "not a portal administrator")


def test_simple_mode_portal(db_url: str) -> None:
    with Sandbox(plan="fast", mode="simple") as running:
        ran = doctor(running.webhook_url, db_url)
    failing(ran, "mode", "Simple CRM", "Classic")


def test_unreachable_portal(db_url: str) -> None:
    ran = doctor(f"http://127.0.0.1:{closed_port()}/rest/1/abc/", db_url)
    failing(ran, "reach", "cannot reach the portal")


def test_a_failure_in_json(db_url: str) -> None:
    ran = doctor(f"http://127.0.0.1:{closed_port()}/rest/1/abc/", db_url, "--json")
    assert ran.code == 3
    found = ran.json()
    assert found["ok"] is False
    assert [c["status"] for c in found["checks"]] == ["fail"]
    assert found["checks"][0]["fix"]
