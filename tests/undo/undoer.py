"""An undo in its own process, for the kill -9 tests.

    python tests/undo/undoer.py --webhook URL --db URL --portal KEY --job N

Runs `b24app.undo.undo` and prints `batch <finished> <total>` after every batch (flushed),
then `status <status>`; the tests kill it with SIGKILL at random points.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from b24app.config import PLANS, RateLimit
from b24app.rest import PortalClient, RetryPolicy
from b24app.store.journal import Journal
from b24app.undo import undo


def main(argv: Sequence[str] | None = None) -> int:
    """Undo the job and narrate."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--webhook", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--portal", required=True)
    parser.add_argument("--job", type=int, required=True)
    args = parser.parse_args(argv)
    client = PortalClient.from_webhook(
        args.webhook,
        rate=RateLimit(*PLANS["fast"]),
        retry=RetryPolicy(base=0.01, cap=0.05),
        timeout=10.0,
    )

    def narrate(finished: int, total: int) -> None:
        print(f"batch {finished} {total}", flush=True)

    report = undo(client, Journal.open(args.db, portal=args.portal), args.job, on_progress=narrate)
    print(f"status {report.status}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
