"""Bench: converting leads while another app spends part of the portal's budget.

Bitrix24's leaky bucket is per portal and shared by every app on it
(https://apidocs.bitrix24.com/limits.html). A neighbour (`chaos.neighbour`: `profile` calls
through a webhook of its own, a refused one sent again a second later) spends `--share` of the
plan's drain rate, starting a few seconds before b24app converts every active lead (client
`both`, activities `move`) on a fresh sandbox portal. Measured: failed leads and the job's end
(goal: 0 failed, never interrupted), every 503 QUERY_LIMIT_EXCEEDED b24app received and when
(goal: a handful at the start, none after adapting) and the neighbour's, and b24app's wall time
against the leaky-bucket floor for the budget left,
(b24app's accepted requests - burst) / ((1 - share) x drain rate) (goal: within 1.15x).

The same run with the fixed-rate limiter b24app had before it learned the budget
(`--limiters adaptive,fixed`, the default) shows what the learning buys: it sends at the plan's
full rate whatever the neighbour spends, and meets a 503 for most of the neighbour's requests.
The portal is checked afterwards (every lead converted once, nothing duplicated).

    python -m bench.neighbour                  # 1,000 leads, standard plan, share 0.4 (~3 min)
    python -m bench.neighbour --quick          # 300 leads, fast plan (seconds)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from b24app.config import RateLimit
from b24app.crm import conversion
from b24app.rest import LocalBucket, PortalClient, Slot
from b24app.store.journal import Journal
from bench.convert import ACTIVITIES, CLIENT, policy
from bench.floors import ratio
from bench.table import figure
from chaos.neighbour import Neighbour, NeighbourStats
from demo.checks import Check, core_query, snapshot, verify
from sandbox.limits import Plan, plan_named

LIMITERS = ("adaptive", "fixed")
QUICK = {"leads": 300, "plan": "fast"}
WARM_UP_SECONDS = 5.0  # the neighbour alone first: b24app arrives on a portal already in use
GOAL_RATIO = 1.15


@dataclass(frozen=True)
class Options:
    """One bench run's settings (`plan` a sandbox plan name, or a Plan for tests)."""

    leads: int = 1000
    plan: str | Plan = "standard"
    share: float = 0.4
    seed: int = 1
    limiters: tuple[str, ...] = LIMITERS

    @property
    def portal_plan(self) -> Plan:
        """The sandbox plan."""
        return self.plan if isinstance(self.plan, Plan) else plan_named(self.plan)

    def command(self) -> str:
        """The command that reproduces this run."""
        return (
            f"python -m bench.neighbour --leads {self.leads} --plan {self.portal_plan.name} "
            f"--share {self.share:g} --seed {self.seed} --limiters {','.join(self.limiters)}"
        )


class RecordingBucket:
    """A bucket that notes when the portal refused one of its requests (seconds from start)."""

    def __init__(self, inner: LocalBucket) -> None:
        self._inner = inner
        self._start = time.monotonic()
        self.refusals: list[float] = []

    @property
    def rate(self) -> float:
        """The inner bucket's rate."""
        return self._inner.rate

    def take(self) -> Slot:
        """The inner bucket's next slot."""
        return self._inner.take()

    def refused(self, slot: Slot) -> None:
        """Note the time, then let the inner bucket learn."""
        self.refusals.append(time.monotonic() - self._start)
        self._inner.refused(slot)


@dataclass(frozen=True)
class Outcome:
    """One limiter's run."""

    limiter: str
    status: str
    converted: int
    failed: int
    requests: int  # HTTP requests b24app sent
    refused: int  # of them, refused with 503
    refusals: tuple[float, ...]  # when (seconds from b24app's start)
    seconds: float
    neighbour: NeighbourStats
    rate: float  # the limiter's rate at the end
    checks: tuple[Check, ...]
    writes: dict[str, int] = field(default_factory=dict)  # executed sub-calls per write method

    @property
    def accepted(self) -> int:
        """b24app's requests the portal let through."""
        return self.requests - self.refused

    @property
    def ok(self) -> bool:
        """Every lead converted once, none failed, the job done."""
        return self.status == "done" and not self.failed and all(c.ok for c in self.checks)


def floor_seconds(accepted: int, options: Options) -> float:
    """The leaky bucket's floor for `accepted` requests on the budget the neighbour leaves."""
    plan = options.portal_plan
    return max(0.0, (accepted - plan.burst) / ((1 - options.share) * plan.rate))


def measure(options: Options, limiter: str) -> Outcome:
    """Convert every active lead of a fresh portal beside a neighbour; check the portal."""
    from sandbox import Sandbox

    plan = options.portal_plan
    with Sandbox(seed_leads=options.leads, seed=options.seed, plan=plan) as portal:
        query = core_query(portal)
        before = snapshot(query)
        neighbour = Neighbour.beside(portal, options.share, seed=options.seed).start()
        time.sleep(WARM_UP_SECONDS * (2.0 / plan.rate))  # a few of its requests, any plan
        rate = RateLimit(plan.rate, plan.burst)
        bucket = RecordingBucket(LocalBucket(rate, adaptive=limiter == "adaptive"))
        calls_before = portal.stats()["sub_calls"]
        with (
            tempfile.TemporaryDirectory(prefix="b24app-bench-") as tmp,
            PortalClient.from_webhook(portal.webhook_url, rate=rate, bucket=bucket) as client,
        ):
            journal = Journal.open(f"sqlite:///{Path(tmp) / 'j.db'}", portal="bench")
            tick = time.monotonic()
            report = conversion.convert(client, journal, policy())
            seconds = time.monotonic() - tick
            journal.engine.dispose()
            requests, refused = client.requests_made, client.requests_refused
        stats = neighbour.stop()
        calls_after = portal.stats()["sub_calls"]
        checks = tuple(verify(query, before, client=CLIENT, activities=ACTIVITIES))
    writes = {
        method: count - calls_before.get(method, 0)
        for method, count in calls_after.items()
        if method.endswith(".add") and count > calls_before.get(method, 0)
    }
    return Outcome(
        limiter=limiter,
        status=report.status,
        converted=report.converted,
        failed=report.failed,
        requests=requests,
        refused=refused,
        refusals=tuple(bucket.refusals),
        seconds=seconds,
        neighbour=stats,
        rate=bucket.rate,
        checks=checks,
        writes=writes,
    )


def run(options: Options) -> list[Outcome]:
    """Each limiter in turn, each on its own fresh portal."""
    return [measure(options, limiter) for limiter in options.limiters]


def _when(refusals: Sequence[float]) -> str:
    if not refusals:
        return "none"
    shown = ", ".join(f"{at:.0f}" for at in refusals[:8])
    return f"at {shown}{', ...' if len(refusals) > 8 else ''} s"


def _late(outcome: Outcome) -> int:
    """503s in the second half of the run: after adapting, the goal is none."""
    return sum(1 for at in outcome.refusals if at > outcome.seconds / 2)


def _why(outcome: Outcome) -> str:
    reasons = [f"job {outcome.status}"] if outcome.status != "done" else []
    reasons += [f"{outcome.failed} failed"] if outcome.failed else []
    reasons += [f"{c.name} ({c.detail})" for c in outcome.checks if not c.ok]
    return "; ".join(reasons)[:240]


def rows_of(outcomes: Sequence[Outcome], options: Options) -> list[dict[str, str]]:
    """The wide table: one row per limiter, side by side."""
    base = outcomes[0]
    found = []
    for outcome in outcomes:
        floor = floor_seconds(outcome.accepted, options)
        found.append(
            {
                "limiter": outcome.limiter,
                "leads": f"{outcome.converted} converted, {outcome.failed} failed",
                "job": outcome.status,
                "b24app requests": f"{outcome.accepted} + {outcome.refused} refused",
                "b24app 503s": f"{outcome.refused} ({_when(outcome.refusals)})",
                "2nd half 503s": str(_late(outcome)),
                "rate at end": f"{outcome.rate:.2f}/s",
                "neighbour": (f"{outcome.neighbour.rate:.2f}/s, {outcome.neighbour.refused} x 503"),
                "time s": f"{outcome.seconds:.1f}",
                "floor s": f"{floor:.1f}",
                "time/floor": ratio(outcome.seconds, floor),
                f"time vs {base.limiter}": ratio(outcome.seconds, base.seconds),
                "result": "ok" if outcome.ok else "BROKEN: " + _why(outcome),
            }
        )
    return found


def figures(outcomes: Sequence[Outcome], options: Options) -> list[dict[str, str]]:
    """Summary rows for `python -m bench`: the first limiter against the goals, then the
    others against it."""
    base = outcomes[0]
    plan = options.portal_plan
    what = (
        f"convert {options.leads:,} leads ({plan.name} plan) beside a neighbour spending "
        f"{options.share:.0%} of the budget"
    )
    verdict = "ok" if base.ok else "BROKEN: " + _why(base)
    floor = floor_seconds(base.accepted, options)
    within = floor <= 0 or base.seconds <= GOAL_RATIO * floor  # no floor: inside the burst
    found = [
        figure(
            what=f"{what}: {base.limiter} limiter, failed leads; 503s to b24app",
            measured=(
                f"{base.failed} failed (job {base.status}); {base.refused} x 503 "
                f"({_when(base.refusals)}), {_late(base)} in the 2nd half; neighbour "
                f"{base.neighbour.refused} x 503"
            ),
            versus="goal 0 failed; a handful of 503s at the start, none after adapting",
            ratio="-",
            result=verdict,
            reproduce=options.command(),
        ),
        figure(
            what=f"{what}: {base.limiter} limiter, wall time",
            measured=f"{base.seconds:.1f} s ({base.accepted} requests)",
            versus=(
                f"floor {floor:.1f} s = (requests - {plan.burst}) / "
                f"({1 - options.share:.0%} x {plan.rate:g}/s); goal {GOAL_RATIO}x"
            ),
            ratio=ratio(base.seconds, floor),
            result=verdict if within or not base.ok else "over the goal",
            reproduce=options.command(),
        ),
    ]
    for other in outcomes[1:]:
        found.append(
            figure(
                what=f"{what}: {other.limiter} limiter (before learning the budget)",
                measured=(
                    f"{other.refused} x 503 to b24app, {other.neighbour.refused} to the "
                    f"neighbour; {other.seconds:.1f} s; {other.failed} failed"
                ),
                versus=(
                    f"{base.limiter}: {base.refused} x 503, {base.neighbour.refused}; "
                    f"{base.seconds:.1f} s"
                ),
                ratio=f"time {ratio(other.seconds, base.seconds)}",
                result="ok" if other.ok else "BROKEN: " + _why(other),
                reproduce=options.command(),
            )
        )
    return found


def rows(*, quick: bool = False) -> list[dict[str, str]]:
    """The bench's rows for `python -m bench` (its default run, or the quick one)."""
    options = Options(**QUICK) if quick else Options()
    return figures(run(options), options)


def parse(argv: Sequence[str] | None) -> Options:
    """Options from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.neighbour",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--leads", type=int, default=None, help="seeded leads (default 1000)")
    parser.add_argument(
        "--plan", choices=("standard", "enterprise", "fast"), default=None, help="sandbox plan"
    )
    parser.add_argument(
        "--share",
        type=float,
        default=0.4,
        help="the neighbour's share of the plan's drain rate (default 0.4)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--limiters",
        default=",".join(LIMITERS),
        help="comma-separated, first is the baseline: adaptive (b24app's), fixed (the plan's "
        "full rate, as before it learned the budget)",
    )
    parser.add_argument(
        "--no-adapt", action="store_true", help="only the fixed-rate limiter (--limiters fixed)"
    )
    parser.add_argument("--quick", action="store_true", help="300 leads on the fast plan")
    args = parser.parse_args(argv)
    limiters = tuple(word.strip() for word in args.limiters.split(",") if word.strip())
    if args.no_adapt:
        limiters = ("fixed",)
    if not limiters or any(word not in LIMITERS for word in limiters):
        parser.error(f"--limiters: choose from {', '.join(LIMITERS)} (got {args.limiters})")
    if not 0 < args.share < 1:
        parser.error(f"--share must be between 0 and 1 (got {args.share})")
    base = Options(**QUICK) if args.quick else Options()
    return replace(
        base,
        leads=args.leads if args.leads is not None else base.leads,
        plan=args.plan or base.plan,
        share=args.share,
        seed=args.seed,
        limiters=limiters,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench and print its table; exit 1 when the first limiter's run is broken."""
    from bench.table import print_table

    options = parse(argv)
    outcomes = run(options)
    print_table(
        rows_of(outcomes, options),
        title=f"Lead conversion beside a neighbour spending {options.share:.0%} of the budget",
    )
    print(f"reproduce: {options.command()}")
    return 0 if outcomes[0].ok else 1


if __name__ == "__main__":
    sys.exit(main())
