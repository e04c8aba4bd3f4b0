"""A conversion in its own process, for the kill -9 tests, and the 2,000-lead measurement.

    python tests/conversion/converter.py convert --webhook URL --db URL --portal KEY \
        --policy '{"client": "both"}' [--plan fast]
        Runs `convert` and prints one line per progress callback (`progress <converted>`), then
        the report's status; the tests kill it with SIGKILL at random points.

    python tests/conversion/converter.py measure [--leads 2000] [--plan standard] \
        [--client both] [--activities move]
        Seeds a sandbox portal, converts every active lead, prints requests against the floor
        (ceil(write commands / 50) + read requests), wall time against the leaky-bucket floor
        ((requests - burst) / rate) and the 503s the portal sent.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from b24app.config import PLANS, RateLimit
from b24app.crm.conversion import Progress, convert
from b24app.crm.policy import Policy
from b24app.rest import PortalClient, RetryPolicy
from b24app.rest.command import Command
from b24app.rest.response import BatchResult
from b24app.rest.retry import all_reads
from b24app.store.journal import Journal


def _client(webhook: str, plan: str) -> PortalClient:
    return PortalClient.from_webhook(
        webhook, rate=RateLimit(*PLANS[plan]), retry=RetryPolicy(base=0.01, cap=0.05), timeout=10.0
    )


def run_convert(args: argparse.Namespace) -> int:
    """Convert and narrate progress on stdout, one flushed line per batch."""
    journal = Journal.open(args.db, portal=args.portal)

    def narrate(progress: Progress) -> None:
        print(f"progress {progress.converted}", flush=True)

    report = convert(
        _client(args.webhook, args.plan),
        journal,
        Policy.from_json(args.policy),
        on_progress=narrate,
    )
    print(f"status {report.status}", flush=True)
    return 0


class CountingPortal:
    """A portal client wrapper that tells read requests from write commands."""

    def __init__(self, client: PortalClient) -> None:
        self.client = client
        self.read_requests = 0
        self.write_commands = 0

    @property
    def requests_made(self) -> int:
        """HTTP requests sent (retries included)."""
        return self.client.requests_made

    def call(self, method: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        """Count and forward."""
        self.read_requests += 1
        return self.client.call(method, params, **kw)

    def batch(self, commands: Sequence[Command], **kw: Any) -> BatchResult:
        """Count and forward."""
        if all_reads(c.method for c in commands):
            self.read_requests += 1
        else:
            self.write_commands += len(commands)
        return self.client.batch(commands, **kw)

    def batch_many(self, commands: Sequence[Command], **kw: Any) -> BatchResult:
        """Count and forward (50 per request)."""
        self.read_requests += math.ceil(len(commands) / 50)
        return self.client.batch_many(commands, **kw)

    def iterate(self, method: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        """Forward (unused by the conversion)."""
        return self.client.iterate(method, params, **kw)


def run_measure(args: argparse.Namespace) -> int:
    """Seed, convert, and print the numbers against the platform's floors."""
    from sandbox import Sandbox

    policy = Policy.from_dict({"client": args.client, "activities": args.activities})
    rate, burst = PLANS[args.plan]
    with (
        tempfile.TemporaryDirectory() as tmp,
        Sandbox(seed_leads=args.leads, seed=1, plan=args.plan) as sandbox,
    ):
        journal = Journal.open(f"sqlite:///{Path(tmp) / 'app.db'}", portal="measure")
        portal = CountingPortal(_client(sandbox.webhook_url, args.plan))
        started = time.monotonic()
        report = convert(portal, journal, policy)  # type: ignore[arg-type]
        wall = time.monotonic() - started
        stats = sandbox.stats()
    floor = math.ceil(portal.write_commands / 50) + portal.read_requests
    time_floor = max(0.0, (report.requests - burst) / rate)
    print(
        json.dumps(
            {
                "leads": args.leads,
                "plan": args.plan,
                "policy": policy.to_dict(),
                "status": report.status,
                "converted": report.converted,
                "failed": report.failed,
                "requests": report.requests,
                "write_commands": portal.write_commands,
                "read_requests": portal.read_requests,
                "request_floor": floor,
                "requests_over_floor": round(report.requests / floor, 3),
                "wall_seconds": round(wall, 1),
                "wall_floor_seconds": round(time_floor, 1),
                "wall_over_floor": round(wall / time_floor, 3) if time_floor else None,
                "http_503": stats["query_limit_exceeded"],
            },
            indent=2,
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one of the two commands."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("convert")
    one.add_argument("--webhook", required=True)
    one.add_argument("--db", required=True)
    one.add_argument("--portal", required=True)
    one.add_argument("--policy", default="{}")
    one.add_argument("--plan", default="fast", choices=sorted(PLANS))
    measure = commands.add_parser("measure")
    measure.add_argument("--leads", type=int, default=2000)
    measure.add_argument("--plan", default="standard", choices=sorted(PLANS))
    measure.add_argument("--client", default="both")
    measure.add_argument("--activities", default="move")
    args = parser.parse_args(argv)
    return run_convert(args) if args.command == "convert" else run_measure(args)


if __name__ == "__main__":
    sys.exit(main())
