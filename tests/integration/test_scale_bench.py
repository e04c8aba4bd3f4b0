"""`python -m bench.scale --quick` keeps working (the full run is in docs/deploy.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration.cluster import ROOT

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_the_quick_scale_bench_converts_every_portal_with_no_503(
    postgres_url: str, redis_url: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--quick", "--workers", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "B24APP_TEST_POSTGRES_URL": postgres_url,
            "B24APP_TEST_REDIS_URL": redis_url,
        },
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    row = next(line for line in done.stdout.splitlines() if "4 x 60 (fast)" in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[0] == "2"
    converted, active = cells[2].split("/")
    assert converted == active and int(active) > 0
    assert cells[-2:] == ["0", "ok"]
    assert "reproduce: python -m bench.scale" in done.stdout
