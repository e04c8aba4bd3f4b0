"""Chaos's noisy-neighbour mode: another app spending 40% of the portal's budget beside the
quick chaos run (`python -m chaos --quick --neighbour 0.4`)."""

from __future__ import annotations

import time

import pytest

from chaos import neighbour
from chaos.__main__ import build_parser
from chaos.scenario import Options, run
from sandbox import Sandbox

pytestmark = pytest.mark.slow  # seconds to minutes: `make test-fast` leaves it out


def test_the_neighbour_spends_its_share_through_rest_and_counts_every_answer():
    with Sandbox(seed_leads=0, plan="fast") as portal:
        before = portal.stats()["http_requests"]
        helper = neighbour.Neighbour.beside(portal, 0.4, seed=3).start()
        deadline = time.monotonic() + 60
        while helper.stats().accepted < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = helper.stop()
        after = portal.stats()
    assert stats.sent == stats.accepted + stats.refused + stats.other
    assert stats.other == 0
    assert after["http_requests"] - before == stats.sent
    assert after["sub_calls"]["profile"] == stats.accepted


def test_the_option_is_read_from_the_chaos_command_line():
    parser = build_parser()
    assert parser.parse_args(["--quick", "--neighbour", "0.4", "--seed", "2"]).neighbour == 0.4
    assert parser.parse_args(["--quick"]).neighbour is None
    with pytest.raises(ValueError, match="between 0 and 1"), neighbour.beside_every_sandbox(1.5):
        pass


def test_the_quick_chaos_run_beside_a_neighbour_passes():
    said: list[str] = []
    start, stop = Sandbox.start, Sandbox.stop
    with neighbour.beside_every_sandbox(0.4, say=said.append):
        result = run(Options.quick(flip_at=None), say=lambda text: None)
    assert (Sandbox.start, Sandbox.stop) == (start, stop)  # the hook is gone again
    assert said[0].startswith("neighbour: spending 40%")
    assert said[-1].startswith("neighbour: ") and " accepted " in said[-1]
    assert result.ok, [f"{c.name}: {c.detail}" for c in result.checks if not c.ok]
