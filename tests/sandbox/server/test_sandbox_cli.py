"""`b24app sandbox`: help, one-line errors for bad flags, and a real start/stop."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from sandbox.cli import sandbox as sandbox_command
from sandbox.server import Sandbox

ROOT = Path(__file__).resolve().parents[3]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from b24app.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "sandbox", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def test_help_lists_every_flag_and_the_fault_language() -> None:
    result = CliRunner().invoke(sandbox_command, ["--help"])
    assert result.exit_code == 0
    for flag in (
        "--port",
        "--webhook-code",
        "--seed-leads",
        "--seed",
        "--mode",
        "--plan",
        "--faults",
        "--db",
        "--token-ttl",
        "--custom-fields",
    ):
        assert flag in result.output
    assert "drop_after" in result.output and "every=N" in result.output


def test_plugged_into_b24app() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "--webhook-code" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--plan", "gold"], "gold"),
        (["--faults", "500:7"], "probability"),
        (["--port", "-1"], "--port"),
        (["--bogus"], "--bogus"),
    ],
)
def test_bad_flags_give_one_line_and_a_nonzero_exit(args: list[str], fragment: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_real_start_prints_addresses_and_stops_cleanly(tmp_path: Path) -> None:
    info_file = tmp_path / "info.json"
    code = "from b24app.cli import main; main()"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "sandbox",
            "--port",
            "0",
            "--webhook-code",
            "clitest",
            "--seed-leads",
            "3",
            "--plan",
            "fast",
            "--db",
            str(tmp_path / "p.db"),
            "--info-file",
            str(info_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        output = "".join(lines)
        webhook = re.search(r"(http://127\.0\.0\.1:\d+/rest/1/clitest/)", output)
        assert webhook, output
        for label in ("client_id=", "client_secret=", "/oauth/token/", "member_id=", "/_sandbox/"):
            assert label in output
        answer = requests.post(webhook.group(1) + "crm.settings.mode.get", timeout=10).json()
        assert answer["result"] == 1
        info = json.loads(info_file.read_text())
        assert info["webhook_url"] == webhook.group(1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "Traceback" not in stderr


def test_busy_port_is_one_line_not_an_exit_from_the_library(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(OSError):
            Sandbox(port=port).start()
        result = run_cli("--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"b24app sandbox: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_unopenable_db_is_one_line(tmp_path: Path) -> None:
    result = run_cli("--port", "0", "--db", str(tmp_path / "missing" / "dir" / "p.db"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("b24app sandbox: error: cannot open the portal")
