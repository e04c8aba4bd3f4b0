"""Chaos for the undo: kill -9 at random points (a child process), an interrupt injected after
each batch ran but before its answers were recorded, two undos at once; then a rerun. The round
trip still holds: the portal ends as it was before the conversion, nothing is reverted twice."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from b24app.crm.conversion import convert
from b24app.crm.policy import Policy
from b24app.errors import AuthError
from b24app.store.journal import INTERRUPTED, JobBusy, Journal
from b24app.store.undo import UndoStore
from b24app.undo import undo
from bench.undo import compare, portal_snapshot
from sandbox import Sandbox
from tests.conversion.conftest import client_for

HELPER = Path(__file__).with_name("undoer.py")
PORTAL = "sandbox"


@pytest.fixture
def converted(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Any, str, int, dict[str, Any]]]:
    """A sandbox snapshotted, then converted (both, move, "create missing custom fields" on):
    (sandbox, db url, job id, snapshot) - the round trip covers the fields' definitions.
    80 seeded leads (64 active: more than one batch of reverts) unless the test asks for more."""
    leads = getattr(request, "param", 80)
    with Sandbox(seed_leads=leads, seed=5, plan="fast", custom_fields=True) as sandbox:
        before = portal_snapshot(sandbox)
        url = f"sqlite:///{tmp_path / 'app.db'}"
        policy = Policy.from_dict({"client": "both", "activities": "move", "create_fields": True})
        report = convert(client_for(sandbox), Journal.open(url, portal=PORTAL), policy)
        assert report.status == "done" and report.converted > 50
        yield sandbox, url, report.job_id, before


def _assert_round_trip(sandbox: Any, before: dict[str, Any]) -> None:
    diff = compare(before, portal_snapshot(sandbox))
    assert diff.lines == []


def _start(sandbox: Any, url: str, job_id: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(HELPER),
            "--webhook",
            sandbox.webhook_url,
            "--db",
            url,
            "--portal",
            PORTAL,
            "--job",
            str(job_id),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        cwd=Path(__file__).resolve().parents[2],
    )


@pytest.mark.slow  # eight undo processes killed with SIGKILL, then a rerun: about 12 s
@pytest.mark.parametrize("converted", [150], indirect=True)  # a long undo: kills land mid-run
def test_kill_9_at_random_points_then_a_rerun_round_trips(
    converted: tuple[Any, str, int, dict[str, Any]],
) -> None:
    sandbox, url, job_id, before = converted
    journal = Journal.open(url, portal=PORTAL)
    converted_leads = journal.job(job_id).converted  # type: ignore[union-attr]
    rng = random.Random(19)
    killed_mid_run = 0
    for _ in range(8):
        process = _start(sandbox, url, job_id)
        assert process.stdout is not None
        for _ in range(rng.randint(0, 2)):
            line = process.stdout.readline()
            if not line or line.startswith("status"):
                break
        time.sleep(rng.uniform(0, 0.03))
        alive = process.poll() is None
        process.kill()
        process.wait()
        killed_mid_run += alive

    report = undo(client_for(sandbox), journal, job_id)

    assert killed_mid_run >= 4
    assert report.status in ("done", "noop"), report
    _assert_round_trip(sandbox, before)
    assert len(UndoStore(journal).reverted(job_id)) == converted_leads
    undo_jobs = UndoStore(journal).undo_jobs(job_id)
    assert len(undo_jobs) == 1  # every rerun continued the one undo job
    assert undo_jobs[0].status == "done"
    again = undo(client_for(sandbox), journal, job_id)
    assert again.status == "noop" and "already undone" in (again.message or "")


class CrashAfter:
    """A portal client whose `crash_at`-th `batch` runs on the portal, then raises (an
    interrupt) before the undo can record its answers."""

    def __init__(self, client: Any, crash_at: int) -> None:
        self.client = client
        self.crash_at = crash_at
        self.batches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    @property
    def requests_made(self) -> int:
        """The wrapped client's count."""
        return self.client.requests_made

    def batch(self, commands: Sequence[Any], **kwargs: Any) -> Any:
        """Run the batch; crash after the crash_at-th one ran."""
        result = self.client.batch(commands, **kwargs)
        self.batches += 1
        if self.batches == self.crash_at:
            raise KeyboardInterrupt  # what escapes the loop: the job is left mid-batch
        return result


def test_a_crash_after_every_batch_point_still_round_trips(
    converted: tuple[Any, str, int, dict[str, Any]],
) -> None:
    sandbox, url, job_id, before = converted
    journal = Journal.open(url, portal=PORTAL)
    crashes = 0
    for crash_at in range(1, 40):
        try:
            report = undo(CrashAfter(client_for(sandbox), crash_at), journal, job_id)
        except KeyboardInterrupt:
            crashes += 1
            assert UndoStore(journal).undo_jobs(job_id)[-1].status == INTERRUPTED
            continue
        if report.status in ("done", "noop"):
            break
    assert crashes >= 3
    _assert_round_trip(sandbox, before)
    assert len(UndoStore(journal).undo_jobs(job_id)) == 1


def test_two_undos_at_once_one_runs_the_other_is_refused(
    converted: tuple[Any, str, int, dict[str, Any]],
) -> None:
    sandbox, url, job_id, before = converted
    outcomes: list[Any] = []

    def worker() -> None:
        journal = Journal.open(url, portal=PORTAL)
        try:
            outcomes.append(undo(client_for(sandbox), journal, job_id).status)
        except JobBusy as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert "done" in outcomes
    other = outcomes[1 - outcomes.index("done")]
    assert isinstance(other, JobBusy) or other == "noop", other
    report = undo(client_for(sandbox), Journal.open(url, portal=PORTAL), job_id)
    assert report.status == "noop"
    _assert_round_trip(sandbox, before)


class RefusesAfter(CrashAfter):
    """A portal client that refuses every batch (credentials revoked) from the `crash_at`-th."""

    def batch(self, commands: Sequence[Any], **kwargs: Any) -> Any:
        """Refuse once the count is reached, else send."""
        self.batches += 1
        if self.batches >= self.crash_at:
            raise AuthError("the webhook was revoked", code="INVALID_CREDENTIALS")
        return self.client.batch(commands, **kwargs)


def test_a_portal_refusal_interrupts_the_undo_and_a_rerun_finishes_it(
    converted: tuple[Any, str, int, dict[str, Any]],
) -> None:
    sandbox, url, job_id, before = converted
    journal = Journal.open(url, portal=PORTAL)
    stopped = undo(RefusesAfter(client_for(sandbox), 3), journal, job_id)
    assert stopped.status == INTERRUPTED
    assert "the portal refused the batch" in (stopped.error or "")
    statuses = {lead.status for lead in stopped.leads}
    assert "reverting" in statuses and statuses <= {"reverting", "reverted", "pending"}
    finished = undo(client_for(sandbox), journal, job_id)
    assert finished.status == "done" and finished.job_id == stopped.job_id
    _assert_round_trip(sandbox, before)
