"""`python -m bench.parity` on a small portal: b24app's conversion of a lead and Bitrix24's own
conversion of its twin differ only where docs/parity.md explains why REST cannot do otherwise."""

from __future__ import annotations

import pytest

from bench.parity import Options, report_lines, run


@pytest.mark.parametrize(
    ("client", "activities"), [("both", "complete"), ("both", "move"), ("contact", "move")]
)
def test_b24app_converts_like_bitrix24_itself(client: str, activities: str) -> None:
    options = Options(pairs=16, client=client, activities=activities)
    differences, pairs = run(options)
    unexplained = [d for d in differences if not d.explained]
    assert not unexplained, "\n".join(report_lines(unexplained, pairs, options))
    assert pairs == 16
    paths = {d.path.split(".", 1)[1] for d in differences if "." in d.path}
    assert "ORIGIN_ID" in paths  # b24app's idempotency key is the one mark it adds
    if activities == "move":
        assert "bindings" in paths  # the lead unbound so that closing it completes nothing
    else:
        assert "bindings" not in paths
