"""The CLI as scripts and people run it: a child process, piped or on a terminal; and --portal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import ROOT, SECRET, active_leads, child_env, run_cli, run_python

from b24app.store.crypto import Cipher
from b24app.store.db import make_engine, migrate
from b24app.store.installations import InstallationStore
from sandbox.server import Sandbox
from tests.rest.sandbox_app import install_into

CLI = ("-c", "from b24app.cli import main; main()")


def test_piped_output_is_only_the_result(
    env: dict[str, str], portal: Sandbox, tmp_path: Path
) -> None:
    done = run_python([*CLI, "convert", "--json"], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    report = json.loads(done.stdout)
    assert report["converted"] == len(report["leads"]) > 0
    assert SECRET not in done.stdout
    assert active_leads(portal) == []


def test_a_terminal_gets_a_progress_bar_on_stderr(env: dict[str, str], tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, *CLI, "convert", "--json"],
        env={**child_env(env), "TERM": "xterm", "COLUMNS": "120"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the child
            break
        if not chunk:
            break
        seen += chunk
    out, _ = child.communicate(timeout=120)
    os.close(leader)
    assert child.returncode == 0
    assert b"converting leads" in seen
    assert json.loads(out)["failed"] == 0


def test_an_installed_portal_by_member_id_or_domain(env: dict[str, str], portal: Sandbox) -> None:
    key = Cipher.generate_key()
    url = env["B24APP_DATABASE_URL"]
    migrate(url)
    store = InstallationStore(make_engine(url), Cipher(key))
    grant = install_into(store, portal)
    app = {
        "B24APP_DATABASE_URL": url,
        "B24APP_PLAN": "fast",
        "B24APP_SECRET_KEY": key,
        "B24_CLIENT_ID": portal.client_id,
        "B24_CLIENT_SECRET": portal.client_secret,
        "B24_OAUTH_SERVER": portal.oauth_server,
    }

    assert run_cli(["mode", "--portal", grant["member_id"]], app).out == "classic\n"
    portal.expire_tokens()  # the client refreshes and stores the rotated pair
    ran = run_cli(["convert", "--portal", grant["domain"], "--json"], app)
    assert ran.code == 0, ran.err
    assert ran.json()["converted"] == len(ran.json()["leads"]) > 0
    stored = store.get_installation(grant["member_id"])
    assert stored is not None and stored.refresh_token != grant["refresh_token"]
    jobs = run_cli(["jobs", "list", "--portal", grant["member_id"], "--json"], app).json()
    assert [job["portal"] for job in jobs["jobs"]] == [grant["member_id"]]
    assert grant["access_token"] not in ran.out + ran.err


@pytest.mark.slow  # the whole demo: about 30 s
def test_demo_runs_with_a_few_leads(tmp_path: Path) -> None:
    done = run_python(["-m", "demo", "--leads", "60"], {}, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "demo passed" in done.stdout
    assert "FAIL" not in done.stdout
    for step in ("Preview", "Convert", "Check the portal", "guided switch", "Market app"):
        assert step in done.stdout
    assert "The portal now reports Simple CRM" in done.stdout
    assert "matching leads were converted once" in done.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)  # every bench, small: about 5 minutes on 2 busy cores
def test_bench_quick_keeps_working() -> None:
    done = run_python(["-m", "bench", "--quick"], {}, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout
    for contender in ("b24app", "naive", "fast-bitrix24 passes", "fast-bitrix24 get_all"):
        assert contender in table
    for bench in ("events endpoint", "peak memory"):
        assert bench in table
    assert "BROKEN" not in table and "ERROR" not in table
    assert "reproduce: python -m bench --quick" in table
