"""Portal lanes (`b24app.lanes`): one worker process serves many portals at once, fairly.

The turns are fakes that block on events the test controls (a portal whose bucket is empty is a
turn that cannot go on); every wait has a generous timeout only as a guard against a hang.
"""

from __future__ import annotations

import threading
from typing import Any

from b24app.lanes import Lanes

GUARD = 30.0  # seconds before a hung test fails; never a measured duration


def test_a_portal_waiting_on_its_rate_limit_does_not_hold_up_the_others() -> None:
    bucket_empty = threading.Event()
    blocked = threading.Event()
    done: list[str] = []
    others_done = threading.Event()

    def turn(portal: str) -> None:
        if portal == "slow":
            blocked.set()
            assert bucket_empty.wait(GUARD)
        done.append(portal)
        if {"b", "c"} <= set(done):
            others_done.set()

    lanes = Lanes(4, turn)
    lanes.submit("slow")
    assert blocked.wait(GUARD)
    lanes.submit("b")
    lanes.submit("c")

    assert others_done.wait(GUARD)
    assert "slow" not in done  # still waiting for its bucket while the others finished
    bucket_empty.set()
    assert lanes.close(GUARD)
    assert sorted(done) == ["b", "c", "slow"]


def test_turns_are_served_in_arrival_order_and_a_portal_asking_again_goes_to_the_back() -> None:
    gate = threading.Event()
    first = threading.Event()
    order: list[tuple[str, Any]] = []
    finished = threading.Event()

    def turn(portal: str, slice_no: int) -> None:
        order.append((portal, slice_no))
        if (portal, slice_no) == ("a", 1):
            first.set()
            assert gate.wait(GUARD)
        if len(order) == 4:
            finished.set()

    lanes = Lanes(1, turn)
    lanes.submit("a", 1)
    assert first.wait(GUARD)
    lanes.submit("a", 2)  # a's next slice, asked while its first runs
    lanes.submit("b", 1)
    lanes.submit("c", 1)
    assert lanes.crowded()  # portals wait while the only lane is taken
    gate.set()

    assert finished.wait(GUARD)
    assert order == [("a", 1), ("b", 1), ("c", 1), ("a", 2)]
    assert lanes.close(GUARD)


def test_one_portal_never_holds_two_lanes_and_a_repeated_turn_runs_once_more() -> None:
    running: set[str] = set()
    overlaps: list[str] = []
    release = threading.Event()
    started = threading.Event()
    count = {"a": 0}
    done = threading.Event()
    guard = threading.Lock()

    def turn(portal: str) -> None:
        with guard:
            if portal in running:
                overlaps.append(portal)
            running.add(portal)
            count[portal] += 1
        started.set()
        if count[portal] == 1:
            assert release.wait(GUARD)
        with guard:
            running.discard(portal)
        if count[portal] == 2:
            done.set()

    lanes = Lanes(4, turn)
    lanes.submit("a")
    assert started.wait(GUARD)
    for _ in range(3):  # the same turn asked for three times while one runs: queued once
        lanes.submit("a")
    release.set()
    assert done.wait(GUARD)
    assert lanes.close(GUARD)
    assert count["a"] == 2 and not overlaps


def test_size_zero_runs_each_turn_in_the_caller() -> None:
    seen: list[tuple[str, int]] = []
    lanes = Lanes(0, lambda portal, n: seen.append((portal, n)))
    lanes.submit("a", 1)
    lanes.submit("a", 1)
    assert seen == [("a", 1), ("a", 1)] and lanes.inline and not lanes.crowded()


def test_a_failing_turn_leaves_the_lane_serving_others() -> None:
    done = threading.Event()

    def turn(portal: str) -> None:
        if portal == "broken":
            raise RuntimeError("the journal is away")
        done.set()

    lanes = Lanes(1, turn)
    lanes.submit("broken")
    lanes.submit("fine")
    assert done.wait(GUARD)
    assert lanes.close(GUARD)
