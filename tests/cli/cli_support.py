"""Helpers for the CLI tests: run the CLI in-process or as a child, read the sandbox core."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from b24app.cli import main
from sandbox.portal import CallContext
from sandbox.server import Sandbox

ROOT = Path(__file__).resolve().parents[2]
SECRET = "secretcode42"
ACTIVE = ("NEW", "IN_PROCESS", "PROCESSED")  # the sandbox's lead stages with semantics P


@dataclass
class Ran:
    """One CLI run: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout as JSON."""
        return json.loads(self.out)


def run_cli(args: Sequence[str], env: Mapping[str, str | None], *, input: str | None = None) -> Ran:
    """Run `b24app ARGS` in-process (click's CliRunner) with exactly these settings."""
    clean: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith(("B24_", "B24APP_"))
    }
    clean.update(env)
    result = CliRunner().invoke(main, list(args), env=clean, input=input, catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without b24app settings, plus `env`."""
    child = {k: v for k, v in os.environ.items() if not k.startswith(("B24_", "B24APP_"))}
    return {**child, **env}


def run_python(
    args: Sequence[str], env: Mapping[str, str], *, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `python ARGS` in a child process with piped output."""
    return subprocess.run(
        [sys.executable, *args],
        env=child_env(env),
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def core(portal: Sandbox, method: str, params: dict[str, Any] | None = None) -> Any:
    """Call the sandbox core directly as the admin (no HTTP, no rate limit)."""
    return portal.portal.dispatch(method, params or {}, CallContext()).result


def leads(portal: Sandbox) -> dict[int, str]:
    """Every lead's stage, by id."""
    found: dict[int, str] = {}
    last = 0
    while True:
        page = core(
            portal,
            "crm.lead.list",
            {
                "filter": {">ID": last},
                "order": {"ID": "ASC"},
                "select": ["ID", "STATUS_ID"],
                "start": -1,
            },
        )
        found.update({int(row["ID"]): row["STATUS_ID"] for row in page})
        if len(page) < 50:
            return found
        last = int(page[-1]["ID"])


def active_leads(portal: Sandbox) -> list[int]:
    """Ids of the leads in an active stage."""
    return sorted(i for i, stage in leads(portal).items() if stage in ACTIVE)


def assert_one_line_error(
    ran: Ran,
    *,
    contains: str = "",
    secret: str = SECRET,
    code: int = 2,
    hint: str | None = None,
) -> None:
    """Exit `code`, one error line on stderr (and at most one hint line after it), no traceback,
    no secret anywhere; `hint`: words the hint line must hold."""
    assert ran.code == code, (ran.code, ran.out, ran.err)
    lines = ran.err.strip().splitlines()
    assert 1 <= len(lines) <= 2, ran.err
    assert lines[0].startswith("b24app: error: ")
    if len(lines) == 2:
        assert lines[1].startswith("b24app: hint: "), ran.err
    if hint is not None:
        assert len(lines) == 2 and hint in lines[1], ran.err
    assert "Traceback" not in ran.err + ran.out
    assert secret not in ran.err + ran.out
    assert contains in lines[0], lines[0]
