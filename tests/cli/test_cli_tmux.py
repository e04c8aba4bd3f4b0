"""The CLI on a real terminal: `convert`, `switch` and `jobs list` run in tmux at 80 and 120
columns, and the screen is read back. Nothing may be cut ("…"), no message may share a line with
the progress bar, the bar is drawn once, and a switch shows its wait for the toggle.

tmux is used as installed; without it the test is skipped, except under CI=true, where it fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import active_leads, child_env, run_cli

from sandbox.errors import ApiError
from sandbox.server import Sandbox

WAIT = 120  # seconds a command may take (a ceiling for polling, not a measurement)


class Terminal:
    """One tmux server with one window `width` columns wide."""

    def __init__(self, width: int, env: dict[str, str], cwd: Path) -> None:
        self.socket = f"b24app-test-{uuid.uuid4().hex[:8]}"
        self.width = width
        self._tmux(
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            str(width),
            "-y",
            "60",
            "-c",
            str(cwd),
            "env -u TMUX bash --norc --noprofile",
            env={**child_env(env), "PS1": "$ ", "TERM": "xterm-256color"},
        )
        self._tmux("set-option", "-t", "t", "history-limit", "5000")

    def _tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            env=env or os.environ.copy(),
            check=True,
            timeout=30,
        )
        return done.stdout

    def run(self, command: str) -> str:
        """Run `command`, wait for it to end, return the screen from its start (lines as the
        terminal shows them, each at most `width` wide)."""
        marker = uuid.uuid4().hex[:8]
        self._tmux("send-keys", "-t", "t", "clear; tmux clear-history 2>/dev/null", "Enter")
        self._tmux("send-keys", "-t", "t", f"{command}; echo END-{marker}-$?", "Enter")
        pause = threading.Event()  # never set: a pause between looks at the screen
        for _ in range(WAIT * 10):
            screen = self.screen()
            if re.search(rf"^END-{marker}-\d+$", screen, re.MULTILINE):
                return screen
            pause.wait(0.1)
        raise AssertionError(f"{command!r} did not end:\n{self.screen()}")

    def screen(self) -> str:
        """The window's scrollback and screen."""
        return self._tmux("capture-pane", "-t", "t", "-p", "-S", "-5000")

    def close(self) -> None:
        """Stop the tmux server."""
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], check=False, timeout=30)


@pytest.fixture
def terminal_env(env: dict[str, str]) -> dict[str, str]:
    """The CLI's settings plus a PATH whose `b24app` is this checkout's."""
    bin_dir = str(Path(sys.executable).parent)
    return {**env, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}


@contextlib.contextmanager
def _terminal(width: int, env: dict[str, str], cwd: Path) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tmux is missing; CI=true requires the terminal test", pytrace=False)
        pytest.skip("tmux is not installed")
    term = Terminal(width, env, cwd)
    try:
        yield term
    finally:
        term.close()


def _command_output(screen: str, command: str) -> list[str]:
    """The lines the command printed (after its command line, before the END marker)."""
    after = screen.split(command, 1)[1]
    lines = after.splitlines()[1:]
    end = next(i for i, line in enumerate(lines) if re.match(r"END-\w+-\d+$", line))
    return lines[:end]


def _assert_clean(lines: list[str], width: int) -> None:
    text = "\n".join(lines)
    assert "…" not in text and "..." not in text, text
    assert all(len(line) <= width for line in lines)
    assert "Traceback" not in text


@pytest.mark.slow  # a conversion in tmux per width: about 20 s each
@pytest.mark.parametrize("width", [80, 120])
def test_convert_and_jobs_list_on_a_terminal(
    width: int,
    terminal_env: dict[str, str],
    portal: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = portal.portal.dispatch
    deals = [0]

    def dispatch(method: str, params: dict[str, Any], ctx: Any) -> Any:
        if method.lower() == "crm.item.add" and str(params.get("entityTypeId")) == "2":
            deals[0] += 1
            if deals[0] > 5:
                raise ApiError("PORTAL_DELETED", "Portal was deleted", 500)
        return real(method, params, ctx)

    with _terminal(width, terminal_env, tmp_path) as term:
        monkeypatch.setattr(portal.portal, "dispatch", dispatch)
        interrupted = "b24app convert --yes --client both"
        lines = _command_output(term.run(interrupted), interrupted)
        _assert_clean(lines, width)
        assert any(line.split() == ["status", "interrupted"] for line in lines), lines
        monkeypatch.undo()

        command = "b24app convert --yes --client both"
        lines = _command_output(term.run(command), command)
        _assert_clean(lines, width)
        bars = [line for line in lines if line.startswith("converting leads")]
        assert len(bars) == 1, lines  # drawn once, the last frame kept
        assert "100%" in bars[0]
        assert any(line.startswith("job 1 done:") for line in lines), lines

        command = "b24app jobs list"
        lines = _command_output(term.run(command), command)
        _assert_clean(lines, width)
        jobs = run_cli(["jobs", "list", "--json"], terminal_env).json()["jobs"]
        table = "\n".join(lines)
        for job in jobs:
            row = next(line for line in lines if line.split()[:1] == [str(job["id"])])
            assert job["status"] in row.split() and job["kind"] in row.split(), row
            if job["error"]:
                # The note is shown whole: as a column, or under the table when too narrow.
                assert " ".join(job["error"].split()) in " ".join(table.split())
    assert active_leads(portal) == []


# 80 columns (the narrow case) in `make test-fast`; 120 with the slow tests (a 2 s poll each)
@pytest.mark.parametrize("width", [80, pytest.param(120, marks=pytest.mark.slow)])
def test_switch_on_a_terminal(
    width: int, terminal_env: dict[str, str], portal: Sandbox, tmp_path: Path
) -> None:
    with _terminal(width, terminal_env, tmp_path) as term:
        command = "b24app switch simple --yes --poll-interval 0.2 --poll-timeout 2"
        lines = _command_output(term.run(command), command)
        _assert_clean(lines, width)
        text = "\n".join(lines)
        bars = [line for line in lines if line.startswith("converting leads")]
        assert len(bars) == 1, text
        assert bars[0].split()[-1].endswith(("0:00", "-:--:--")) or "100%" in bars[0], text
        # Narration never shares the bar's line, and the guide does not ask for the conversion
        # it follows.
        assert "Converting the active leads first" not in bars[0]
        assert "Let b24app convert" not in " ".join(text.split())
        waiting = [line for line in lines if "waiting for the toggle in Bitrix24" in line]
        assert len(waiting) == 1 and "left" in waiting[0], text
        assert lines.index(waiting[0]) > lines.index(bars[0])
        assert "mode: classic (not confirmed yet)" in text
    assert active_leads(portal) == []


def test_piped_output_is_unwrapped_lines(env: dict[str, str], tmp_path: Path) -> None:
    long_error = "x" * 300
    from b24app.store.journal import Journal

    run_cli(["convert", "--json"], env)
    journal = Journal.open(env["B24APP_DATABASE_URL"], portal=_portal_key(env))
    job = journal.start_job(kind="convert", policy={}, lead_ids=None)
    journal.finish_job(job.id, status="interrupted", error=long_error, counts=None)
    out = subprocess.run(
        [sys.executable, "-c", "from b24app.cli import main; main()", "jobs", "list"],
        env={**child_env(env), "COLUMNS": "80"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    row = next(line for line in out.splitlines() if line.split()[:1] == [str(job.id)])
    assert row.split()[1:3] == ["convert", "interrupted"]
    assert row.endswith(long_error)  # one record, one line, however long
    assert shlex.split(out.splitlines()[1])[0] == "id"


def _portal_key(env: dict[str, str]) -> str:
    from b24app.rest import WebhookAuth

    return WebhookAuth(env["B24_WEBHOOK_URL"]).key
