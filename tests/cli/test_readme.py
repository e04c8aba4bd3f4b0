"""The README as a new user follows it: its commands exist, none is a pipeline by accident, the
sandbox route to the app page works as written, and the license it names is there."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import requests
from cli_support import ROOT, run_cli

from sandbox.server import Sandbox

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _command_lines() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("b24app ")]


def test_the_two_set_up_commands_are_there() -> None:
    assert "make demo" in README and "make test" in README
    assert (ROOT / "docs" / "figures.md").exists()
    assert "docs/figures.md" in README


def test_the_license_the_project_names_is_there() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


@pytest.mark.parametrize("line", _command_lines())
def test_every_readme_command_exists(line: str, tmp_path: Path) -> None:
    code = line.split("#", 1)[0]
    assert "|" not in code, f"{line!r} would run as a shell pipeline"
    words = shlex.split(code)[1:]
    path = [w for w in words[:3] if re.fullmatch(r"[a-z]+", w)]
    ran = run_cli([*path, "--help"], {})
    assert ran.code == 0, (line, ran.err)
    for flag in (w.split("=")[0] for w in words if w.startswith("--")):
        assert flag in ran.out, (line, flag)


def test_the_sandbox_route_to_the_app_page(tmp_path: Path) -> None:
    """README: the sandbox's default OAuth client, then /_sandbox/install with the page URL
    makes /portal/app open the page (the page itself is served by the browser test)."""
    with Sandbox(plan="fast", seed_leads=3, admin_key="demo") as portal:
        assert portal.client_id in README and portal.client_secret in README
        answered = requests.post(
            f"{portal.base_url}/_sandbox/install",
            headers={"X-Sandbox-Key": "demo"},
            data={"page_url": "http://127.0.0.1:9/app"},
            timeout=30,
        )
        assert answered.status_code == 200, answered.text
        opened = requests.get(f"{portal.base_url}/portal/app?user=1&lang=en", timeout=30)
        assert opened.status_code == 200
        assert "http://127.0.0.1:9/app" in opened.text
