"""`python -m bench.scale --quick` keeps working (the full run is in docs/deploy.md): every portal
converted once by the workers, no 503, and the table row saying so."""

from __future__ import annotations

import pytest

from bench import scale

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_the_quick_scale_bench_converts_every_portal_with_no_503(
    postgres_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(scale, "POSTGRES_URL", postgres_url)
    monkeypatch.setattr(scale, "REDIS_URL", redis_url)
    outcomes: list[scale.Outcome] = []
    measure = scale.run

    def run(options: scale.Options) -> list[scale.Outcome]:
        outcomes.extend(measure(options))
        return outcomes

    monkeypatch.setattr(scale, "run", run)
    assert scale.main(["--quick", "--workers", "2"]) == 0
    (outcome,) = outcomes
    assert outcome.workers == 2
    assert len(outcome.usages) == scale.QUICK["portals"]
    assert outcome.converted == outcome.active > 0
    assert (outcome.duplicates, outcome.unfinished) == (0, 0)
    assert sum(usage.rejected_503 for usage in outcome.usages) == 0
    options = scale.parse(["--quick", "--workers", "2"])
    (row,) = scale.rows_of(outcomes, options)
    assert (row["portals x leads"], row["503s"], row["result"]) == ("4 x 60 (fast)", "0", "ok")
    printed = capsys.readouterr().out
    assert f"reproduce: {options.command()}" in printed
