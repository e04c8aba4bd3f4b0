"""`bench.scale`'s arithmetic: the CPU floor a run is also compared with (pure, no portal)."""

from __future__ import annotations

import os

import pytest

from bench.floors import Usage
from bench.scale import Options, Outcome, figures, rows_of

CORES = os.cpu_count() or 1


def _outcome(workers: int, worker_cpu: float, portal_cpu: float, seconds: float) -> Outcome:
    usage = Usage(requests=80, writes=2000, reads=1000, rejected_503=0)
    return Outcome(
        workers=workers,
        seconds=seconds,
        usages=(usage, usage),
        converted=800,
        active=800,
        duplicates=0,
        unfinished=0,
        worker_cpu=worker_cpu,
        portal_cpu=portal_cpu,
    )


def test_one_worker_process_cannot_run_faster_than_its_own_cpu_seconds():
    assert _outcome(1, worker_cpu=100.0, portal_cpu=10.0, seconds=120.0).cpu_floor == 100.0


def test_the_sandboxes_one_process_is_a_floor_too():
    assert _outcome(4, worker_cpu=8.0, portal_cpu=30.0, seconds=40.0).cpu_floor == 30.0


@pytest.mark.skipif(CORES < 2, reason="needs at least two cores to share")
def test_several_processes_share_the_cores():
    outcome = _outcome(4, worker_cpu=100.0, portal_cpu=20.0, seconds=70.0)
    assert outcome.cpu_floor == pytest.approx(max(100.0 / min(4, CORES), 120.0 / CORES))


def test_rows_show_both_floors_and_the_ratio_to_the_larger():
    options = Options(portals=2, leads=500, workers=(1,))
    outcome = _outcome(1, worker_cpu=50.0, portal_cpu=10.0, seconds=60.0)
    (row,) = rows_of([outcome], options)
    assert row["CPU floor s"] == "50.0"
    assert row["total/max(floors)"] == "1.20x"  # 60 s against the 50 s of CPU (bucket: 15 s)
    (summary,) = figures([outcome], options)
    assert "the CPU used allows 50.0 s" in summary["floor / peer"]
