"""`b24app mode` and `b24app convert` against a sandbox portal: output shapes and exit codes."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from cli_support import SECRET, active_leads, core, leads, run_cli
from rich.console import Console

from b24app import cli
from sandbox.errors import ApiError
from sandbox.server import Sandbox

LEAD_KEYS = {"lead_id", "status", "deal_id", "contact_id", "company_id", "error"}


def test_mode_prints_the_word(env: dict[str, str]) -> None:
    ran = run_cli(["mode"], env)
    assert (ran.code, ran.out, ran.err) == (0, "classic\n", "")


def test_mode_json(env: dict[str, str], portal: Sandbox) -> None:
    assert run_cli(["mode", "--json"], env).json() == {"mode": "classic", "value": 1}
    portal.set_mode("simple")
    assert run_cli(["mode", "--json"], env).json() == {"mode": "simple", "value": 2}
    assert run_cli(["mode"], env).out == "simple\n"


def test_convert_json_converts_every_active_lead_once(env: dict[str, str], portal: Sandbox) -> None:
    active = active_leads(portal)
    ran = run_cli(["convert", "--client", "both", "--activities", "move", "--json"], env)
    assert ran.code == 0, ran.err
    report = ran.json()
    assert {"converted", "failed", "skipped", "requests", "leads"} <= set(report)
    assert (report["converted"], report["failed"]) == (len(active), 0)
    assert report["requests"] > 0
    assert sorted(lead["lead_id"] for lead in report["leads"]) == active
    for lead in report["leads"]:
        assert set(lead) >= LEAD_KEYS
        assert lead["status"] == "converted"
        assert lead["deal_id"] and lead["contact_id"] and lead["company_id"]
        deal = core(portal, "crm.deal.get", {"id": lead["deal_id"]})
        assert deal["ORIGIN_ID"] == f"lead-{lead['lead_id']}"
        assert int(deal["COMPANY_ID"]) == lead["company_id"]
    assert active_leads(portal) == []
    assert SECRET not in ran.out


def test_a_second_run_creates_nothing(env: dict[str, str], portal: Sandbox) -> None:
    assert run_cli(["convert", "--json"], env).code == 0
    counts = portal.portal.counts()
    again = run_cli(["convert", "--json"], env)
    assert again.code == 0
    assert (again.json()["converted"], again.json()["failed"]) == (0, 0)
    assert portal.portal.counts() == counts


def test_lead_subset(env: dict[str, str], portal: Sandbox) -> None:
    first, second, *rest = active_leads(portal)
    ran = run_cli(["convert", "--lead", str(first), "--lead", str(second), "--json"], env)
    assert ran.code == 0, ran.err
    assert sorted(lead["lead_id"] for lead in ran.json()["leads"]) == [first, second]
    assert active_leads(portal) == rest


def test_dry_run_changes_nothing(env: dict[str, str], portal: Sandbox) -> None:
    counts, stages = portal.portal.counts(), leads(portal)
    ran = run_cli(["convert", "--client", "company", "--dry-run", "--json"], env)
    assert ran.code == 0, ran.err
    preview = ran.json()
    assert preview["dry_run"] is True
    assert len(preview["leads"]) == len(active_leads(portal))
    assert preview["totals"]["deal"] == len(active_leads(portal))
    assert all(lead["pipeline"] == 0 for lead in preview["leads"])
    text = run_cli(["convert", "--dry-run"], env)
    assert text.code == 0
    assert "lead -> CONVERTED" in text.out and "nothing was changed" in text.out
    assert portal.portal.counts() == counts
    assert leads(portal) == stages


def test_a_dry_run_on_an_80_column_terminal_wraps_lines_between_words(
    env: dict[str, str], portal: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    piped = run_cli(["convert", "--dry-run"], env)
    assert any(len(line) > 80 for line in piped.out.splitlines())  # one line per lead, piped

    def terminal() -> Console:
        return Console(file=sys.stdout, width=80, force_terminal=True, color_system=None)

    monkeypatch.setattr(cli, "stdout_console", terminal)
    shown = run_cli(["convert", "--dry-run"], env)
    assert shown.code == 0
    assert all(len(line) <= 80 for line in shown.out.splitlines())
    # every word whole: a terminal cut "(lead" into "(le" and "ad" before
    leads = [line for line in piped.out.splitlines() if "lead -> CONVERTED" in line]
    assert leads and {word for line in leads for word in line.split()} <= set(shown.out.split())


def _fail_deal_of(portal: Sandbox, monkeypatch: pytest.MonkeyPatch, lead_id: int) -> None:
    """The portal refuses the deal of one lead (as Bitrix24 does for a bad field value)."""
    real = portal.portal.dispatch

    def dispatch(method: str, params: dict[str, Any], ctx: Any) -> Any:
        fields = params.get("fields") or {}
        deal = method.lower() == "crm.item.add" and str(params.get("entityTypeId")) == "2"
        if deal and fields.get("originId") == f"lead-{lead_id}":  # b24app's crm.item.add
            raise ApiError("", 'The field "Currency" has an invalid value.', 400)
        return real(method, params, ctx)

    monkeypatch.setattr(portal.portal, "dispatch", dispatch)


def test_exit_1_when_a_lead_fails_then_0_on_the_rerun(
    env: dict[str, str], portal: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = active_leads(portal)[3]
    _fail_deal_of(portal, monkeypatch, victim)
    ran = run_cli(["convert", "--json"], env)
    assert ran.code == 1, ran.err
    report = ran.json()
    assert report["failed"] == 1
    failed = [lead for lead in report["leads"] if lead["status"] == "failed"]
    assert [lead["lead_id"] for lead in failed] == [victim]
    assert "Currency" in failed[0]["error"]
    assert active_leads(portal) == [victim]

    monkeypatch.undo()
    rerun = run_cli(["convert", "--json"], env)
    assert rerun.code == 0, rerun.err
    assert rerun.json()["converted"] == 1
    assert active_leads(portal) == []


def test_human_output_is_a_summary(env: dict[str, str]) -> None:
    ran = run_cli(["convert", "--activities", "complete"], env)
    assert ran.code == 0
    assert "converted" in ran.out and "requests" in ran.out
    assert ran.err == ""
