"""A conversion beside a neighbour spending 40% of the portal's budget (`bench.neighbour` on a
small plan): a busy portal slows the job, never fails it, and nothing runs twice."""

from __future__ import annotations

import pytest

from bench.neighbour import Options, Outcome, figures, measure
from sandbox.limits import Plan

pytestmark = pytest.mark.slow  # seconds to minutes: `make test-fast` leaves it out

# The standard plan's shape at 5x the pace, so the portal is busy within seconds.
TIGHT = Plan("tight", rate=10.0, burst=20)
OPTIONS = Options(leads=300, plan=TIGHT, share=0.4)


def _failures(outcome: Outcome) -> list[str]:
    return [f"{check.name}: {check.detail}" for check in outcome.checks if not check.ok]


@pytest.fixture(scope="module")
def fixed() -> Outcome:
    return measure(OPTIONS, "fixed")


def test_beside_a_neighbour_no_lead_fails_and_the_job_is_not_interrupted():
    outcome = measure(OPTIONS, "adaptive")
    assert outcome.status == "done", outcome
    assert (outcome.failed, outcome.converted) == (0, 240)
    assert outcome.ok, _failures(outcome)
    assert outcome.neighbour.accepted > 0  # the portal really was shared


def test_requests_refused_with_503_are_sent_again_and_every_write_runs_once(fixed):
    # The fixed-rate limiter sends at the plan's full rate beside the neighbour: the portal
    # refuses some of its requests (batches of writes among them), which are sent again.
    assert fixed.refused > 0
    assert fixed.requests == fixed.accepted + fixed.refused
    assert (fixed.status, fixed.failed, fixed.converted) == ("done", 0, 240)
    # a refused request ran nothing and its resend ran once: one deal per lead, at most one
    # contact and one company, all through crm.item.add (the portal checks below find no
    # duplicate by ORIGIN_ID either)
    assert 240 < fixed.writes["crm.item.add"] <= 3 * 240
    assert fixed.ok, _failures(fixed)


def test_the_summary_rows_hold_the_run_against_the_floor_and_the_goals(fixed):
    rows = figures([fixed], OPTIONS)
    assert [row["what"].split(": ")[-1] for row in rows] == [
        "fixed limiter, failed leads; 503s to b24app",
        "fixed limiter, wall time",
    ]
    assert rows[0]["measured"].startswith(f"0 failed (job done); {fixed.refused} x 503")
    assert "(requests - 20) / (60% x 10/s)" in rows[1]["floor / peer"]
    assert rows[1]["reproduce"] == OPTIONS.command()
