"""`b24app switch` (the admin flips the toggle from a thread) and `b24app jobs`."""

from __future__ import annotations

import csv
import io
import threading
from typing import Any

import pytest
from cli_support import active_leads, run_cli

from sandbox.errors import ApiError
from sandbox.server import Sandbox


class Admin(threading.Thread):
    """Flips the CRM mode in the sandbox once b24app has converted every active lead."""

    def __init__(self, portal: Sandbox) -> None:
        super().__init__(daemon=True)
        self.portal = portal
        self.stop = threading.Event()
        self.flipped = False

    def run(self) -> None:
        while not self.stop.wait(0.05):
            if not active_leads(self.portal):
                self.portal.set_mode("simple", client="both", complete_activities=False)
                self.flipped = True
                return


def test_switch_to_simple_converts_then_verifies_the_admins_flip(
    env: dict[str, str], portal: Sandbox
) -> None:
    active = active_leads(portal)
    admin = Admin(portal)
    admin.start()
    try:
        ran = run_cli(
            [
                "switch",
                "simple",
                "--yes",
                "--client",
                "both",
                "--activities",
                "move",
                "--poll-interval",
                "0.05",
                "--poll-timeout",
                "20",
                "--json",
            ],
            env,
        )
    finally:
        admin.stop.set()
        admin.join(5)
    assert ran.code == 0, ran.err
    assert admin.flipped
    result = ran.json()
    assert (result["target"], result["verified"], result["mode_after"]) == (
        "simple",
        True,
        "simple",
    )
    assert result["conversion"]["converted"] == len(active)
    assert "Simple CRM" in result["guide"] and "REST cannot change the CRM mode" in result["guide"]
    assert run_cli(["mode"], env).out == "simple\n"


def test_switch_text_shows_the_guide(env: dict[str, str], portal: Sandbox) -> None:
    admin = Admin(portal)
    admin.start()
    try:
        ran = run_cli(["switch", "simple", "--yes", "--poll-interval", "0.05"], env)
    finally:
        admin.stop.set()
        admin.join(5)
    assert ran.code == 0, ran.err
    assert '"CRM mode", select "Simple CRM"' in ran.out
    assert "mode: simple (verified)" in ran.out


def test_switch_on_a_terminal_asks_first(
    env: dict[str, str], portal: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("b24app.cli.is_terminal", lambda stream: True)
    active = active_leads(portal)
    declined = run_cli(["switch", "simple"], env, input="n\n")
    assert declined.code == 1
    assert "Continue?" in declined.err and "nothing was done" in declined.err
    assert active_leads(portal) == active
    accepted = run_cli(["switch", "simple", "--poll-timeout", "0"], env, input="y\n")
    assert accepted.code == 1  # nobody flipped the toggle in time
    assert active_leads(portal) == []


def test_switch_times_out_when_nobody_flips(env: dict[str, str], portal: Sandbox) -> None:
    ran = run_cli(
        ["switch", "simple", "--yes", "--poll-interval", "0.05", "--poll-timeout", "0.2", "--json"],
        env,
    )
    assert ran.code == 1
    assert ran.json()["verified"] is False
    assert "still reports classic" in ran.err
    assert active_leads(portal) == []  # the leads were converted before the guide


def test_switch_to_classic_converts_nothing(env: dict[str, str], portal: Sandbox) -> None:
    portal.set_mode("simple")
    counts = portal.portal.counts()
    flip = threading.Timer(0.3, portal.set_mode, args=("classic",))
    flip.start()
    ran = run_cli(["switch", "classic", "--yes", "--poll-interval", "0.05", "--json"], env)
    flip.join()
    assert ran.code == 0, ran.err
    assert ran.json()["conversion"] is None and ran.json()["mode_after"] == "classic"
    assert portal.portal.counts() == counts


def test_jobs_list_show_csv(env: dict[str, str]) -> None:
    assert run_cli(["jobs"], env).out == "no jobs yet\n"
    converted = run_cli(["convert", "--json"], env).json()
    job_id = converted["job_id"]
    listed = run_cli(["jobs", "list", "--json"], env).json()["jobs"]
    assert [job["id"] for job in listed] == [job_id]
    assert listed[0]["status"] == "done" and listed[0]["converted"] == converted["converted"]
    assert str(job_id) in run_cli(["jobs"], env).out

    shown = run_cli(["jobs", "show", str(job_id), "--json"], env)
    assert shown.code == 0
    assert shown.json()["leads"] == converted["leads"]
    table = run_cli(["jobs", "show", str(job_id)], env)
    assert "converted" in table.out
    rows = list(
        csv.DictReader(io.StringIO(run_cli(["jobs", "show", str(job_id), "--csv"], env).out))
    )
    assert [int(r["lead_id"]) for r in rows] == [lead["lead_id"] for lead in converted["leads"]]
    assert {r["status"] for r in rows} == {"converted"}
    assert set(rows[0]) == {"lead_id", "status", "deal_id", "contact_id", "company_id", "error"}


def test_resume_finishes_an_interrupted_job(
    env: dict[str, str], portal: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = portal.portal.dispatch
    deals = [0]

    def dispatch(method: str, params: dict[str, Any], ctx: Any) -> Any:
        # The portal is deleted (support blocked it) after the first ten deals.
        if method.lower() == "crm.item.add" and str(params.get("entityTypeId")) == "2":
            deals[0] += 1
            if deals[0] > 10:
                raise ApiError("PORTAL_DELETED", "Portal was deleted", 500)
        return real(method, params, ctx)

    monkeypatch.setattr(portal.portal, "dispatch", dispatch)
    ran = run_cli(["convert", "--json"], env)
    assert ran.code == 3  # a portal-side failure, not a usage error
    report = ran.json()
    assert report["status"] == "interrupted"
    assert "PORTAL_DELETED" in report["error"]
    error, tip = ran.err.strip().splitlines()
    assert error.startswith(f"b24app: error: job {report['job_id']} interrupted")
    assert f"'b24app jobs resume {report['job_id']}'" in tip
    assert active_leads(portal)

    monkeypatch.undo()
    resumed = run_cli(["jobs", "resume", str(report["job_id"]), "--json"], env)
    assert resumed.code == 0, resumed.err
    assert resumed.json()["status"] == "done"
    assert active_leads(portal) == []
    again = run_cli(["jobs", "resume", str(report["job_id"]), "--json"], env)
    assert (again.code, again.json()["requests"]) == (0, 0)
