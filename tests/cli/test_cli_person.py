"""What a person meets at the terminal: exit codes, Ctrl-C, rerunning, per-lead reports, asking
before a big conversion, and the ids the flags take."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_support import active_leads, assert_one_line_error, run_cli

from b24app import cli
from b24app.crm.policy import PolicyError
from b24app.errors import (
    AuthError,
    B24AppError,
    ConfigError,
    PortalBusy,
    ServerError,
    TransportError,
    UsageError,
    make_error,
)
from b24app.output import Live
from b24app.store.journal import JobBusy
from sandbox.server import Sandbox


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("B24APP_PLAN"), 2),
        (UsageError("bad"), 2),
        (PolicyError(["x"]), 2),
        (AuthError("no", code="NO_AUTH_FOUND"), 3),
        (TransportError("refused"), 3),
        (ServerError("boom"), 3),
        (PortalBusy("held"), 4),
        (JobBusy("held"), 4),
        (B24AppError("anything else"), 2),
    ],
)
def test_one_table_gives_every_exit_code(error: BaseException, code: int) -> None:
    assert cli.exit_code(error) == code


def test_help_documents_every_exit_code(env: dict[str, str]) -> None:
    text = run_cli(["--help"], env).out
    for code, meaning in cli.EXIT_MEANINGS:
        assert f"{code:<4}{meaning}" in text
    assert "130" in text and "another run holds this portal" in text


@pytest.mark.parametrize(
    "code",
    [
        "NO_AUTH_FOUND",
        "INVALID_CREDENTIALS",
        "insufficient_scope",
        "ACCESS_DENIED",
        "QUERY_LIMIT_EXCEEDED",
        "OPERATION_TIME_LIMIT",
        "OVERLOAD_LIMIT",
        "PAYMENT_REQUIRED",
        "PORTAL_DELETED",
        "INTERNAL_SERVER_ERROR",
        "ERROR_METHOD_NOT_FOUND",
        "EXPIRED_TOKEN",
        "invalid_grant",
        "invalid_client",
        "NOT_FOUND",
        "INVALID_REQUEST",
        "SOMETHING_NEW",
    ],
)
def test_every_portal_error_has_a_hint(code: str) -> None:
    from b24app.errors import hint

    text = hint(make_error(code, "described"))
    assert text and len(text) > 20


def test_a_portal_busy_error_exits_4(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    def busy(*args: Any, **kwargs: Any) -> Any:
        raise PortalBusy("job 9 of another process holds this portal")

    monkeypatch.setattr("b24app.crm.conversion.convert", busy)
    assert_one_line_error(run_cli(["convert"], env), code=4, hint="wait for it", contains="job 9")


def _interrupt_after(calls: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C arrives at the `calls`-th progress report."""
    seen = [0]
    real = Live.progress

    def progress(self: Live, report: Any) -> None:
        seen[0] += 1
        if seen[0] == calls:
            raise KeyboardInterrupt
        real(self, report)

    monkeypatch.setattr(Live, "__call__", progress)


def test_ctrl_c_names_the_job_and_rerunning_resumes_it(
    env: dict[str, str], portal: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt_after(1, monkeypatch)
    ran = run_cli(["convert", "--client", "both"], env)
    assert ran.code == 130
    assert "job 1 stopped; finish it with 'b24app jobs resume 1'" in ran.err
    assert run_cli(["jobs", "list", "--json"], env).json()["jobs"][0]["status"] == "interrupted"
    monkeypatch.undo()

    # The same convert again takes the interrupted job up instead of leaving it behind.
    again = run_cli(["convert", "--client", "both", "--json"], env)
    assert again.code == 0, again.err
    assert again.json()["job_id"] == 1 and again.json()["status"] == "done"
    assert "resuming job 1" in again.err
    listed = run_cli(["jobs", "list", "--json"], env).json()["jobs"]
    assert [(j["id"], j["status"]) for j in listed] == [(1, "done")]
    assert active_leads(portal) == []


def test_a_terminal_is_asked_before_resuming(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt_after(1, monkeypatch)
    assert run_cli(["convert"], env).code == 130
    monkeypatch.undo()
    monkeypatch.setattr("b24app.cli.is_terminal", lambda stream: True)
    # No to resuming, then no to a new job of every lead: nothing happens.
    declined = run_cli(["convert", "--json"], env, input="n\nn\n")
    assert "Job 1 with these options was interrupted" in declined.err
    assert declined.code == 1 and "nothing was done" in declined.err
    resumed = run_cli(["convert", "--json"], env, input="y\n")
    assert resumed.code == 0, resumed.err
    assert (resumed.json()["job_id"], resumed.json()["status"]) == (1, "done")


def test_ctrl_c_during_resume_names_the_job(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt_after(1, monkeypatch)
    assert run_cli(["convert"], env).code == 130
    monkeypatch.undo()
    _interrupt_after(1, monkeypatch)
    ran = run_cli(["jobs", "resume", "1"], env)
    assert ran.code == 130
    assert "'b24app jobs resume 1'" in ran.err


def test_jobs_show_prints_every_leads_outcome(env: dict[str, str], portal: Sandbox) -> None:
    lead = active_leads(portal)[0]
    converted = run_cli(["convert", "--lead", f"{lead},999999", "--json"], env).json()
    text = run_cli(["jobs", "show", str(converted["job_id"])], env).out
    rows = {line.split()[0]: line for line in text.splitlines() if line.split()}
    deal = next(x["deal_id"] for x in converted["leads"] if x["lead_id"] == lead)
    assert "converted" in rows[str(lead)] and str(deal) in rows[str(lead)]
    assert "skipped" in rows["999999"] and "lead not found" in rows["999999"]


def test_convert_says_why_a_lead_was_skipped(env: dict[str, str]) -> None:
    ran = run_cli(["convert", "--lead", "999999"], env)
    assert ran.code == 0
    assert "skipped lead 999999: lead not found" in ran.out
    assert "0 converted, 1 skipped" in ran.out


def test_a_terminal_asks_before_converting_many_leads(
    env: dict[str, str], portal: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("b24app.cli.is_terminal", lambda stream: True)
    active = active_leads(portal)
    declined = run_cli(["convert"], env, input="n\n")
    assert declined.code == 1
    assert f"Convert {len(active)} leads on" in declined.err
    assert "nothing was done" in declined.err
    assert active_leads(portal) == active
    few = run_cli(["convert", "--lead", ",".join(map(str, active[:3]))], env)  # a handful
    assert few.code == 0 and "Convert" not in few.err
    assert run_cli(["convert", "--yes"], env).code == 0
    assert active_leads(portal) == []


def test_off_a_terminal_nothing_is_asked(env: dict[str, str], portal: Sandbox) -> None:
    assert run_cli(["convert"], env).code == 0
    assert active_leads(portal) == []


def test_portal_lists_the_ids_the_flags_take(env: dict[str, str], portal: Sandbox) -> None:
    stages = run_cli(["portal", "stages", "--json"], env).json()["stages"]
    by_id = {s["id"]: s for s in stages}
    assert by_id["NEW"]["active"] and not by_id["JUNK"]["active"]
    assert sum(s["leads"] or 0 for s in stages) == len(active_leads(portal))
    assert "NEW" in run_cli(["portal", "stages"], env).out
    pipelines = run_cli(["portal", "pipelines", "--json"], env).json()["pipelines"]
    assert pipelines[0]["id"] == 0 and pipelines[0]["default"]
    sources = run_cli(["portal", "sources", "--json"], env).json()["sources"]
    assert sources and all(s["id"] for s in sources)
    assert sources[0]["id"] in run_cli(["portal", "sources"], env).out


def test_the_journal_defaults_to_the_users_data_directory(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    default = {**env, "B24APP_DATABASE_URL": None}
    journal = tmp_path / "data" / "b24app" / "b24app.db"
    version = run_cli(["--version"], default)
    assert version.code == 0
    assert version.out.splitlines() == ["b24app 0.1.0", f"journal: sqlite:///{journal} (default)"]
    converted = run_cli(["convert", "--json"], default).json()
    assert journal.exists()
    # A run started from another directory sees the same history.
    monkeypatch.chdir(tmp_path / "data")
    listed = run_cli(["jobs", "list", "--json"], default).json()["jobs"]
    assert [job["id"] for job in listed] == [converted["job_id"]]
    info = run_cli(["info", "--json"], default).json()
    assert info["journal"] == f"sqlite:///{journal} (default)"
    assert info["data_dir"] == str(tmp_path / "data" / "b24app")
    # B24APP_DATABASE_URL still wins, and a password in it is never printed.
    chosen = run_cli(["info", "--json"], {**env, "B24APP_DATABASE_URL": "postgresql://u:pw@h/db"})
    assert chosen.json()["journal"] == "postgresql://u:***@h/db (B24APP_DATABASE_URL)"
    assert "pw" not in chosen.out
