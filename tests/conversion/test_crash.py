"""kill -9 at random points of a converting process, twenty times, then a rerun: nothing
duplicated, nothing lost."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from b24app.crm.conversion import convert
from b24app.crm.policy import Policy
from b24app.store.journal import INTERRUPTED, Journal

from .conftest import PORTAL, client_for
from .portalstate import assert_converted, duplicates, snapshot

HELPER = Path(__file__).with_name("converter.py")
KILLS = 20


def _start(sandbox: Any, database_url: str, policy: Policy) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(HELPER),
            "convert",
            "--webhook",
            sandbox.webhook_url,
            "--db",
            database_url,
            "--portal",
            PORTAL,
            "--policy",
            json.dumps(policy.to_dict()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        bufsize=1,
    )


@pytest.mark.slow  # about 100 s: `make test` runs it, `make test-fast` does not
def test_twenty_kill_9s_then_a_rerun_convert_every_lead_exactly_once(
    make_sandbox: Any, database_url: str, journal: Journal
) -> None:
    sandbox = make_sandbox(seed_leads=300)
    core = sandbox.portal
    before = snapshot(core)
    policy = Policy.from_dict({"client": "both", "activities": "move", "pipeline": 7})
    rng = random.Random(20)
    killed_mid_run = 0
    for _ in range(KILLS):
        process = _start(sandbox, database_url, policy)
        assert process.stdout is not None
        for _ in range(rng.randint(1, 6)):  # let it get a few batches out
            line = process.stdout.readline()
            if not line or line.startswith("status"):
                break
        time.sleep(rng.uniform(0, 0.02))  # ... and land anywhere in the next one
        alive = process.poll() is None
        process.kill()
        process.wait()
        killed_mid_run += alive
        assert not duplicates(core)

    report = convert(client_for(sandbox), journal, policy)

    assert killed_mid_run >= KILLS // 2
    assert report.status == "done" and report.failed == 0
    assert_converted(core, before, policy)
    jobs = journal.jobs(limit=100)
    assert len(jobs) >= KILLS  # a kill during start-up may come before the job exists
    assert all(job.status == INTERRUPTED for job in jobs[1:] if job.status != "done")
    assert all(
        "stopped before the job finished" in (job.error or "")
        for job in jobs[1:]
        if job.status == INTERRUPTED
    )
