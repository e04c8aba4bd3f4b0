"""The learned rate: a bucket beside a neighbour on a simulated portal, all on the fake clock."""

from __future__ import annotations

import itertools
import random

import pytest

from b24app.config import RateLimit
from b24app.rest import LocalBucket
from b24app.rest.adaptive import Shape, State, at_least, refused, take
from tests.rest.busy_portal import Drive, Neighbour, PortalBucket
from tests.rest.conftest import FakeClock

STANDARD = RateLimit(per_second=2.0, burst=50)


def _drive(clock: FakeClock, neighbour: float, seed: int = 1) -> tuple[LocalBucket, Drive]:
    bucket = LocalBucket(STANDARD, clock=clock, rng=random.Random(seed))
    drive = Drive(clock, PortalBucket(rate=2.0, burst=50), Neighbour(neighbour, seed=seed))
    drive.idle(5)  # the neighbour was there first
    return bucket, drive


def test_alone_on_the_portal_nothing_is_refused_and_the_rate_stays_at_the_plan(clock):
    bucket, drive = _drive(clock, neighbour=0.0)
    seconds = drive.run(bucket, 300)
    assert drive.refusals == []
    assert bucket.rate == 2.0
    # the burst of 48, then 2/s: the leaky-bucket floor (300 - 50) / 2 = 125 s, give or take
    # the burst's headroom and a jitter
    assert seconds == pytest.approx(126, abs=1.5)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_beside_a_neighbour_taking_40_percent_it_settles_on_the_rest(clock, seed):
    bucket, drive = _drive(clock, neighbour=0.8, seed=seed)
    seconds = drive.run(bucket, 600)
    # a few refusals while learning, then the rest of the run at the budget left (1.2/s)
    learning = [at for at in drive.refusals if at < 90]
    assert 1 <= len(learning) <= 4
    assert len(drive.refusals) <= len(learning) + 5  # rare probes after that
    floor = (600 - 50) / 1.2
    assert seconds <= 1.05 * floor
    assert 1.1 <= bucket.rate <= 1.35
    # ... and the neighbour kept its share: b24app did not crowd it out
    assert drive.neighbour.accepted / drive.now() >= 0.95 * 0.8


def test_a_neighbour_is_not_starved_when_b24app_never_gets_a_503_on_its_own(clock):
    # Requests sent on the dot would take every slot the moment the portal has room: the
    # neighbour's would be refused, never b24app's. The jitter gives the neighbour its turn;
    # its share then costs b24app a refusal, and b24app learns.
    for seed in range(1, 6):
        bucket, drive = _drive(clock, neighbour=0.2, seed=seed)
        drive.run(bucket, 300)
        assert drive.neighbour.accepted / drive.now() >= 0.9 * 0.2
        assert bucket.rate < 2.0


def test_when_the_neighbour_leaves_the_rate_climbs_back(clock):
    bucket, drive = _drive(clock, neighbour=0.8)
    drive.run(bucket, 150)
    learned = bucket.rate
    assert learned < 1.4
    drive.neighbour.until = drive.now()  # the neighbour stops
    drive.run(bucket, 2500)
    assert bucket.rate == 2.0
    assert learned < bucket.rate


def test_idle_time_does_not_raise_the_rate(clock):
    bucket, drive = _drive(clock, neighbour=0.8)
    drive.run(bucket, 150)
    learned = bucket.rate
    drive.idle(3600)
    assert bucket.rate == learned


def test_refusals_of_requests_in_flight_cut_once():
    shape = Shape.of(STANDARD)
    state = State.start(shape, 0.0)
    slots = []
    for _ in range(52):
        state, slot = take(state, shape, 0.0)
        slots.append(slot)
    state = refused(state, shape, slots[-2], 1.0)
    cut = state.rate
    state = refused(state, shape, slots[-1], 1.0)  # taken before the cut: same congestion
    assert state.rate == cut
    assert state.generation == 1


def test_one_cut_is_at_most_30_percent_and_the_rate_never_drops_below_2_percent():
    shape = Shape.of(STANDARD)
    state = State.start(shape, 0.0)
    rates = []
    for step in range(30):
        state, slot = take(state, shape, float(step))
        state = refused(state, shape, slot, float(step))
        rates.append(state.rate)
    assert rates[0] == 2.0  # the first refusal at the start: a level, not a rate (below)
    assert rates[1] == pytest.approx(1.4)
    assert all(b >= 0.7 * a - 1e-9 for a, b in itertools.pairwise(rates))
    assert 0.04 <= min(rates) < 0.05  # the floor (a waiting request still adds its growth)


def test_a_measured_share_is_cut_to_exactly_not_by_the_largest_step():
    # The mirror matched the portal when it was last refused, 20 s ago, and has been full since;
    # refused again with its own level at 48 (2 of headroom), others put in at least 2
    # requests over those 20 s: the rate goes down by 2/20 per second, and 5% more.
    shape = Shape.of(STANDARD)
    state = State(level=49.0, at=20.0, rate=1.3, generation=3, since=0.0)
    state, slot = take(state, shape, 20.0)
    assert slot.level == pytest.approx(48.0)
    sent = 20.0 + slot.wait
    grown = state.rate
    state = refused(state, shape, slot, sent)
    assert state.rate == pytest.approx((grown - 2 / sent) * 0.95)
    assert (state.level, state.since, state.generation) == (50.0, sent, 4)


def test_a_non_adaptive_bucket_only_fills_its_mirror(clock):
    bucket = LocalBucket(STANDARD, clock=clock, adaptive=False, rng=random.Random(1))
    drive = Drive(clock, PortalBucket(rate=2.0, burst=50), Neighbour(0.8, seed=2))
    drive.run(bucket, 200)
    assert bucket.rate == 2.0
    assert len(drive.refusals) > 10  # what the adaptive rate saves


def test_a_neighbours_burst_just_before_the_first_request_costs_one_refusal_not_the_rate():
    # An import spent most of the portal's bucket just before the app's first request: the
    # first refusal, 1 s into the client's life, says the bucket was part full - not that a
    # neighbour keeps spending. The mirror is set full (the next request waits for room) and
    # the rate stays; a refusal after that, from a mirror that matched the portal, measures.
    shape = Shape.of(STANDARD)
    state = State.start(shape, 0.0)
    for _ in range(20):
        state, slot = take(state, shape, 0.0)
    state = refused(state, shape, slot, 1.0)
    assert (state.rate, state.level, state.generation) == (2.0, 50.0, 1)
    state, slot = take(state, shape, 1.0)
    assert slot.wait > 0  # waits for the room the portal has
    state = refused(state, shape, slot, 1.0 + slot.wait)
    assert state.rate < 2.0


def test_what_is_left_of_counted_requests_joins_the_mirror():
    shape = Shape.of(STANDARD)
    state = State.start(shape, 0.0)
    state, _slot = take(state, shape, 0.0)  # the client's own request
    # 40 requests within the last 6 s (28 left at 2/s: a bucket filling faster than it drains
    # holds what came less what drained, however it came), 1 within the last 4 s: the most left
    # joins the client's own
    raised = at_least(state, shape, 0.0, [(40.0, 6.0), (1.0, 4.0)])
    assert (raised.level, raised.rate, raised.generation) == (29.0, 2.0, 0)
    assert at_least(raised, shape, 0.0, [(40.0, 6.0)]).level == 50.0  # never above X
    assert at_least(state, shape, 0.0, [(2.0, 60.0)]).level == 1.0  # long drained
    assert at_least(state, shape, 0.0, [(2.0, -1.0)]).level == 3.0  # a clock ahead: just now
    assert at_least(state, shape, 0.0, []).level == 1.0
    for _ in range(60):  # the client's own reservations beyond the depth stay as they were
        state, _slot = take(state, shape, 0.0)
    assert at_least(state, shape, 0.0, [(10.0, 0.0)]).level == state.level == 61.0


def _import_then_convert(clock: FakeClock, *, counted: bool) -> tuple[Drive, float]:
    """A neighbour imports 2,000 leads in 40 batches of 50 `crm.lead.add` at once; 5 s later
    the client counts them off the portal's newest leads (or not), then sends 100 requests."""
    portal = PortalBucket(rate=2.0, burst=50)
    drive = Drive(clock, portal, Neighbour(0.0))
    for _ in range(40):
        assert portal.arrive(drive.now())
    drive.idle(5)
    bucket = LocalBucket(STANDARD, clock=clock, rng=random.Random(3))
    if counted:
        bucket.at_least([(40.0, 5.0)])  # 2,000 leads, the first created 5 s ago
    return drive, drive.run(bucket, 100)


def test_an_import_counted_before_the_first_request_costs_no_refusal_and_no_time(clock):
    drive, seconds = _import_then_convert(clock, counted=True)
    assert drive.refusals == []
    # The portal held 30 when the client began, and so did the mirror: 18 requests at once
    # (48 - 30), the other 82 at 2/s - the leaky-bucket floor with the import's level,
    # (100 - 20) / 2 = 40 s, give or take the headroom and a jitter.
    assert seconds == pytest.approx(41, abs=1.5)


def test_an_import_not_counted_costs_the_client_one_refusal():
    # The contrast (before `at_least`): the mirror starts empty and the portal refuses once.
    drive, _seconds = _import_then_convert(FakeClock(), counted=False)
    assert len(drive.refusals) == 1
