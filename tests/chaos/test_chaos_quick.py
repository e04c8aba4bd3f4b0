"""The quick chaos run (1,000 leads, `python -m chaos --quick`) so CI covers `make chaos`.

10% of REST requests fail (500s, connections dropped before and after the call, slow answers),
tokens expire every 50 requests and three `b24app worker` processes are killed with SIGKILL; the
verdict reads the portal's own records. 15-30 s each on 2 cores.
"""

from __future__ import annotations

from chaos.scenario import Options, Result, run


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
