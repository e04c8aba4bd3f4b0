"""The quick chaos run (1,000 leads, `python -m chaos --quick`) so CI covers `make chaos`.

10% of REST requests fail (500s, connections dropped before and after the call, slow answers),
tokens expire every 50 requests and three `b24app worker` processes are killed with SIGKILL; the
verdict reads the portal's own records. 15-30 s each on 2 cores.
"""

from __future__ import annotations

import pytest

from chaos.scenario import Options, Result, run

pytestmark = pytest.mark.slow  # seconds to minutes: `make test-fast` leaves it out


def _failures(result: Result) -> list[str]:
    return [f"{check.name}: {check.detail}" for check in result.checks if not check.ok]


def _quiet(text: str) -> None:
    return None


def test_faults_kills_and_token_expiry_lose_and_duplicate_nothing() -> None:
    result = run(Options.quick(flip_at=None), say=_quiet)

    assert result.kills == 3
    assert result.stats["tokens_expired"] > 0 and result.stats["refreshes"] > 0
    assert {"500", "drop_after", "drop_before", "slow"} <= set(result.stats["faults"])
    assert result.ok, _failures(result)


def test_a_mode_switch_mid_run_loses_and_duplicates_nothing() -> None:
    result = run(Options.quick(), say=_quiet)

    assert result.flipped and result.kills == 3
    assert result.ok, _failures(result)


@pytest.mark.timeout(900)  # two chaos runs beside a busy-loop process: minutes on 2 cores
def test_repeat_under_cpu_load_prints_each_run_and_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from chaos.__main__ import main

    code = main(["--quick", "--no-flip", "--repeat", "2", "--cpu-load", "1"])
    out = capsys.readouterr().out

    runs = [line for line in out.splitlines() if line.startswith("run ")]
    assert [line.split(":")[0] for line in runs] == ["run 1/2", "run 2/2"]
    assert all("longest stall" in line for line in runs)
    summary = [line for line in out.splitlines() if line.startswith("chaos summary: ")]
    assert len(summary) == 1 and "cpu load 1" in summary[0]
    assert summary[0].startswith("chaos summary: 2/2 passed"), out[-3000:]
    assert code == 0
