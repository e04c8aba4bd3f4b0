"""Bad input of every kind: one line on stderr, exit 2, no traceback, no secret, nothing done."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from cli_support import active_leads, assert_one_line_error, run_cli

from sandbox.server import Sandbox


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["convert", "--client", "everyone"], "'--client'"),
        (["convert", "--activities", "delete"], "'--activities'"),
        (["convert", "--pipeline", "-1"], "'--pipeline'"),
        (["convert", "--no-such-flag"], "--no-such-flag"),
        (["convert", "--lead", "abc"], "--lead"),
        (["convert", "--match-clients", "fax"], "--match-clients must be phone"),
        (["convert", "--created-after", "2024-02-30"], "--created-after must be a date"),
        (["switch", "sideways"], "sideways"),
        (["frobnicate"], "frobnicate"),
        (["jobs", "show", "zero"], "JOB_ID"),
    ],
)
def test_bad_flags(env: dict[str, str], portal: Sandbox, args: list[str], says: str) -> None:
    counts = portal.portal.counts()
    assert_one_line_error(run_cli(args, env), contains=says)
    assert portal.portal.counts() == counts


def test_a_pipeline_that_does_not_exist(env: dict[str, str], portal: Sandbox) -> None:
    counts, active = portal.portal.counts(), active_leads(portal)
    assert_one_line_error(
        run_cli(["convert", "--pipeline", "99"], env), contains="pipeline 99 does not exist"
    )
    assert_one_line_error(
        run_cli(["convert", "--pipeline", "99", "--dry-run"], env), contains="pipeline 99"
    )
    assert (portal.portal.counts(), active_leads(portal)) == (counts, active)
    assert run_cli(["jobs", "list", "--json"], env).json() == {"jobs": []}


@pytest.mark.parametrize(
    ("stage", "says"), [("JUNK", "'JUNK' is closed"), ("NOPE", "'NOPE' does not exist")]
)
def test_a_stage_that_is_not_active(env: dict[str, str], stage: str, says: str) -> None:
    ran = run_cli(["convert", "--stage", stage], env)
    assert_one_line_error(ran, contains=f"--stage: lead stage {says}")
    assert "leads." not in ran.err  # the flag's name, not the policy's field
    assert_one_line_error(ran, hint="active lead stages: NEW, IN_PROCESS, PROCESSED")


def test_wrong_webhook_code(env: dict[str, str], portal: Sandbox) -> None:
    wrong = {**env, "B24_WEBHOOK_URL": portal.webhook_url.replace("secretcode42", "guessed")}
    for args in (["mode"], ["convert"]):
        assert_one_line_error(
            run_cli(args, wrong),
            # Bitrix24's server code answers INVALID_CREDENTIALS (the docs: NO_AUTH_FOUND; both
            # readings: tests/sandbox/test_b24app_knobs.py).
            contains="INVALID_CREDENTIALS",
            secret="guessed",
            code=3,
            hint="the webhook code in B24_WEBHOOK_URL is wrong",
        )


def test_unreachable_portal(env: dict[str, str]) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = {**env, "B24_WEBHOOK_URL": f"http://127.0.0.1:{port}/rest/1/secretcode42/"}
    ran = run_cli(["mode"], dead)
    assert_one_line_error(ran, contains="cannot reach the portal", code=3, hint="B24_WEBHOOK_URL")
    assert f"127.0.0.1:{port}/rest/1/***/" in ran.err
    # Two connection attempts, then the error: the client's long retries never start; -v shows
    # the attempts.
    loud = run_cli(["-v", "mode"], dead)
    assert loud.code == 3
    assert "attempt 1 of 2" in loud.err and "retry" not in loud.err


def test_webhook_without_crm_scope(env: dict[str, str], portal: Sandbox) -> None:
    url = portal.add_webhook("userscopeonly", scope="user")
    counts = portal.portal.counts()
    assert_one_line_error(
        run_cli(["convert"], {**env, "B24_WEBHOOK_URL": url}),
        contains="insufficient_scope",
        secret="userscopeonly",
        code=3,
        hint="tick 'CRM (crm)'",
    )
    assert portal.portal.counts() == counts


def test_user_without_crm_access(env: dict[str, str], portal: Sandbox) -> None:
    url = portal.add_webhook("nocrmaccess", user_id=3)
    counts = portal.portal.counts()
    assert_one_line_error(
        run_cli(["convert", "--json"], {**env, "B24_WEBHOOK_URL": url}),
        contains="ccess denied",
        secret="nocrmaccess",
        code=3,
        hint="Access permissions",
    )
    assert portal.portal.counts() == counts


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"B24_WEBHOOK_URL": None}, "B24_WEBHOOK_URL"),
        ({"B24_WEBHOOK_URL": "ftp://portal/rest/1/secretcode42/"}, "B24_WEBHOOK_URL"),
        ({"B24_WEBHOOK_URL": "https://portal.example/no-rest/"}, "B24_WEBHOOK_URL"),
        ({"B24APP_PLAN": "platinum"}, "B24APP_PLAN"),
        ({"B24APP_TIMEOUT": "soon"}, "B24APP_TIMEOUT"),
        ({"B24APP_DATABASE_URL": "nosuchdb://x"}, "database"),
    ],
)
def test_bad_settings(env: dict[str, str], change: dict[str, str | None], says: str) -> None:
    assert_one_line_error(run_cli(["convert"], {**env, **change}), contains=says)


def test_unknown_installed_portal(env: dict[str, str]) -> None:
    from b24app.store.crypto import Cipher

    settings = {
        **env,
        "B24APP_SECRET_KEY": Cipher.generate_key(),
        "B24_CLIENT_ID": "app",
        "B24_CLIENT_SECRET": "shh",
    }
    assert_one_line_error(
        run_cli(["mode", "--portal", "nowhere.example"], settings),
        contains="no installation for 'nowhere.example'",
    )
    assert_one_line_error(
        run_cli(["mode", "--portal", "x"], env),
        contains="B24APP_SECRET_KEY",
        hint="Fernet.generate_key()",
    )


def test_switch_off_a_terminal_needs_yes(env: dict[str, str], portal: Sandbox) -> None:
    active = active_leads(portal)
    assert_one_line_error(run_cli(["switch", "simple"], env), contains="--yes")
    assert active_leads(portal) == active


def test_unknown_job(env: dict[str, str]) -> None:
    for args in (["jobs", "show", "42"], ["jobs", "resume", "42"]):
        assert_one_line_error(run_cli(args, env), contains="no conversion job 42")


def test_dotenv_in_the_working_directory_is_read(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"B24_WEBHOOK_URL={env['B24_WEBHOOK_URL']}\n")
    settings = {**env, "B24_WEBHOOK_URL": None}
    assert run_cli(["mode"], settings).out == "classic\n"
