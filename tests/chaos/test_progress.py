"""The chaos run's stall measure, its command line and its CPU load, without a full run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chaos.__main__ import build_parser, options_from, parse, summary
from chaos.load import cpu_load
from chaos.progress import Progress, Stall
from chaos.scenario import Options, Result
from chaos.verdict import Before


def test_the_longest_stall_is_the_longest_time_between_changes() -> None:
    progress = Progress()
    progress.observe(0.0, (0, 0))
    progress.observe(1.0, (5, 1))
    progress.observe(2.0, (5, 1))  # nothing moved from 1.0 ...
    progress.observe(40.0, (5, 1))
    assert progress.quiet() == 39.0
    progress.observe(41.0, (9, 2))  # ... until 41.0
    progress.observe(42.0, (10, 2))

    assert progress.end(43.0) == Stall(start=1.0, seconds=40.0)


def test_a_stall_running_into_the_end_of_the_run_counts() -> None:
    progress = Progress()
    progress.observe(0.0, 1)
    progress.observe(3.0, 2)
    progress.observe(100.0, 2)

    assert progress.end(130.0) == Stall(start=3.0, seconds=127.0)


def test_repeat_and_cpu_load_reach_the_options() -> None:
    parser = build_parser()
    args = parser.parse_args(["--quick", "--repeat", "3", "--cpu-load", "2", "--keep", "/tmp/k"])
    options = options_from(args, parser)

    assert args.repeat == 3
    assert options.cpu_load == 2 and options.keep == Path("/tmp/k")
    assert options.command() == "python -m chaos --quick --seed 1 --cpu-load 2"
    assert parse(["--redis-url", "redis://127.0.0.1:6379/11"]).redis_url.endswith("/11")


@pytest.mark.parametrize("bad", [["--repeat", "0"], ["--cpu-load", "-1"]])
def test_a_bad_repeat_or_load_is_a_usage_error(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(bad)
    assert exited.value.code == 2


def _result(ok: bool, stall: float) -> Result:
    from demo.checks import Check

    return Result(
        checks=(Check("the job finished", ok, ""),),
        timeline=(),
        stats={},
        job=None,
        seconds=100.0,
        kills=3,
        flipped=True,
        before=Before(stages={}, active=(), open_activities={}, max_ids={}, success_stage="S"),
        stall=Stall(10.0, stall),
    )


def test_the_summary_line_counts_passes_and_names_the_worst_stall() -> None:
    line = summary([_result(True, 2.5), _result(False, 61.0), _result(True, 4.0)], Options())

    assert line.startswith("chaos summary: 2/3 passed; worst stall 61.0 s (run 2); ")
    assert "cpu load 0, sqlite database, sqlite queue" in line


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def test_cpu_load_runs_busy_loops_for_the_block_only() -> None:
    with cpu_load(2) as pids:
        assert len(pids) == 2
        assert all(_running(pid) for pid in pids)
        assert os.getpid() not in pids

    assert not any(_running(pid) for pid in pids)
