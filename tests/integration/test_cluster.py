"""The app as deployed: gunicorn + 2 `b24app worker` processes on the machine's PostgreSQL and
Redis, against 3 sandbox portals that installed it through /install.

* a worker killed with -9 in the middle of a job: the other worker finishes it; every lead is
  converted once (0 duplicates, 0 lost);
* every portal's tokens expiring while the workers and this process call them: exactly one
  refresh per portal;
* events convert leads through the web and the queue; an event lost on purpose is converted by
  the next sweep.

Under CI=true a missing PostgreSQL or Redis fails these tests (tests/conftest.py).
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from b24app.config import Settings
from b24app.crm.policy import AutoConvert, Policy
from b24app.jobs import Jobs
from b24app.services import Services
from b24app.store.db import migrate, utc_now
from b24app.store.journal import DONE, RUNNING
from sandbox import Sandbox
from tests.conversion.portalstate import assert_converted, call, created, duplicates, snapshot
from tests.integration.cluster import (
    CLIENT_ID,
    CLIENT_SECRET,
    Child,
    OAuthRouter,
    app_env,
    free_port,
    postgres_database,
    redis_database,
    start_web,
    start_worker,
    wait_for,
)

pytestmark = [pytest.mark.services, pytest.mark.slow]

PORTALS = 3
LEADS = 200
SLICE = 30
SLOW = "slow:1@0.08"  # every REST answer 80 ms late: jobs last long enough to be caught running


@dataclass
class Cluster:
    """The running deployment and a view on its database from this process."""

    sandboxes: list[Any]
    env: dict[str, str]
    settings: Settings
    services: Services
    jobs: Jobs
    logs: Path
    workers: list[Child] = field(default_factory=list)

    def journal(self, sandbox: Any) -> Any:
        return self.services.journal(sandbox.member_id)

    def start_jobs(self) -> dict[str, int]:
        """A pending "convert every active lead" job per portal, enqueued like the app page does."""
        started = {}
        for sandbox in self.sandboxes:
            job = self.journal(sandbox).create_job(kind="app", policy=Policy().to_dict())
            self.jobs.run_job(sandbox.member_id, job.id)
            started[sandbox.member_id] = job.id
        return started

    def all_done(self, started: dict[str, int]) -> bool:
        rows = [self.services.journal(m).job(j) for m, j in started.items()]
        return all(row is not None and row.status == DONE for row in rows)

    def tails(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.output()[-1500:]}" for w in self.workers)


@pytest.fixture(scope="module")
def cluster(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    logs = tmp_path_factory.mktemp("cluster")
    with ExitStack() as stack:
        sandboxes = [
            stack.enter_context(
                Sandbox(
                    seed=31 + i,
                    seed_leads=LEADS,
                    plan="fast",
                    client_id=CLIENT_ID,
                    client_secret=CLIENT_SECRET,
                )
            )
            for i in range(PORTALS)
        ]
        router = stack.enter_context(OAuthRouter(sandboxes))
        database = stack.enter_context(postgres_database(postgres_url))
        queue = stack.enter_context(redis_database(redis_url))
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        env = app_env(
            database_url=database,
            redis_url=queue,
            oauth_url=router.url,
            public_url=public,
            B24APP_SLICE_LEADS=str(SLICE),
            B24APP_SWEEP_MINUTES="60",
        )
        migrate(database)  # once, before several processes would race to
        web = start_web(env, port, logs)
        stack.callback(web.stop, signal.SIGTERM)
        for sandbox in sandboxes:
            grant = sandbox.install_app(
                app_url=f"{public}/install", event_handler_url=f"{public}/events"
            )
            assert grant["install_status"] == 200, web.output()[-2000:]
            assert sandbox.wait_events(30)
        settings = Settings.from_env(env)
        found = Cluster(
            sandboxes=sandboxes,
            env=env,
            settings=settings,
            services=Services(settings),
            jobs=Jobs(settings),
            logs=logs,
        )
        found.workers = [start_worker(env, f"worker{i}", logs) for i in (1, 2)]
        stack.callback(lambda: [w.stop() for w in found.workers])
        yield found


def test_a_worker_killed_mid_job_leaves_its_job_to_the_other_without_duplicates(
    cluster: Cluster,
) -> None:
    before = {s.member_id: snapshot(s.portal) for s in cluster.sandboxes}
    for sandbox in cluster.sandboxes:
        sandbox.set_faults(SLOW)
    started = cluster.start_jobs()
    by_pid = {worker.pid: worker for worker in cluster.workers}

    def running_job() -> tuple[Child, str, int] | None:
        for member_id, job_id in started.items():
            row = cluster.services.journal(member_id).job(job_id)
            pid = int((row.owner or "0@").split("@")[0]) if row else 0
            if row and row.status == RUNNING and row.converted > 0 and pid in by_pid:
                return by_pid[pid], member_id, job_id
        return None

    victim, member_id, job_id = wait_for(
        running_job, timeout=60, what="a job in mid-run", every=0.03
    )
    victim.kill9()
    survivor = next(w for w in cluster.workers if w is not victim)

    wait_for(
        lambda: cluster.all_done(started), timeout=120, what=f"every job done\n{cluster.tails()}"
    )
    finished = cluster.services.journal(member_id).job(job_id)
    assert finished.owner.split("@")[0] == str(survivor.pid)
    for sandbox in cluster.sandboxes:
        sandbox.set_faults(None)
        job = cluster.journal(sandbox).job(started[sandbox.member_id])
        assert job.converted == len(before[sandbox.member_id].active)
        assert_converted(sandbox.portal, before[sandbox.member_id], Policy())
    cluster.workers = [survivor, start_worker(cluster.env, "worker3", cluster.logs)]


def test_tokens_expiring_under_every_process_are_refreshed_once_per_portal(
    cluster: Cluster,
) -> None:
    for sandbox in cluster.sandboxes:
        for i in range(80):
            call(
                sandbox.portal, "crm.lead.add", {"fields": {"TITLE": f"wave 2 #{i}", "NAME": "Bo"}}
            )
        sandbox.set_faults(SLOW)
    before = {s.member_id: snapshot(s.portal) for s in cluster.sandboxes}
    refreshes = {s.member_id: s.stats()["refreshes"] for s in cluster.sandboxes}
    started = cluster.start_jobs()
    wait_for(
        lambda: all(
            (cluster.services.journal(m).job(j).converted or 0) > 0 for m, j in started.items()
        ),
        timeout=60,
        what="every job under way",
    )

    for sandbox in cluster.sandboxes:
        sandbox.expire_tokens()
    answers: list[Any] = []

    def call_portal(member_id: str) -> None:  # this process joins the workers' calls
        with cluster.services.client(member_id) as client:
            answers.append(client.call("user.current").result["ID"])

    threads = [
        threading.Thread(target=call_portal, args=(s.member_id,))
        for s in cluster.sandboxes
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    wait_for(
        lambda: cluster.all_done(started), timeout=120, what=f"every job done\n{cluster.tails()}"
    )

    assert len(answers) == 4 * PORTALS
    for sandbox in cluster.sandboxes:
        sandbox.set_faults(None)
        assert sandbox.stats()["refreshes"] - refreshes[sandbox.member_id] == 1
        assert_converted_once(sandbox.portal, before[sandbox.member_id].active)


def assert_converted_once(core: Any, lead_ids: list[int]) -> None:
    """Each of these leads converted with exactly one deal; nothing duplicated on the portal."""
    assert lead_ids
    assert not duplicates(core)
    deals = created(core, "deal")
    for lead_id in lead_ids:
        assert len(deals.get(lead_id, [])) == 1, lead_id
        assert call(core, "crm.lead.get", {"id": lead_id})["STATUS_ID"] == "CONVERTED"


def test_events_convert_leads_and_a_lost_event_is_caught_by_the_next_sweep(
    cluster: Cluster,
) -> None:
    policy = Policy(auto=AutoConvert(enabled=True, stages=("NEW",)))
    for sandbox in cluster.sandboxes:
        cluster.services.portal_settings.save_policy(sandbox.member_id, policy.to_dict(), by="1")

    def add_lead(sandbox: Any, title: str) -> int:
        fields = {"TITLE": title, "NAME": "Ana", "STATUS_ID": "NEW"}
        return int(call(sandbox.portal, "crm.lead.add", {"fields": fields}))

    def kind_of(sandbox: Any, lead_id: int) -> str | None:
        journal = cluster.journal(sandbox)
        state = journal.states([lead_id]).get(lead_id)
        if state is None or state.status != "converted":
            return None
        return journal.job(state.job_id).kind

    delivered = {s.member_id: add_lead(s, "web form") for s in cluster.sandboxes}
    for sandbox in cluster.sandboxes:
        lead = delivered[sandbox.member_id]
        assert (
            wait_for(lambda s=sandbox, i=lead: kind_of(s, i), timeout=60, what="event") == "event"
        )

    lost = {}
    for sandbox in cluster.sandboxes:
        sink, sandbox.portal.event_sink = sandbox.portal.event_sink, None  # the event is lost
        lost[sandbox.member_id] = add_lead(sandbox, "lost event")
        sandbox.portal.event_sink = sink
    for sandbox in cluster.sandboxes:  # the sweep comes due
        cluster.services.portal_settings.mark_swept(
            sandbox.member_id, utc_now() - dt.timedelta(hours=2)
        )
    for sandbox in cluster.sandboxes:
        lead = lost[sandbox.member_id]
        assert (
            wait_for(lambda s=sandbox, i=lead: kind_of(s, i), timeout=60, what="sweep") == "sweep"
        )

    for sandbox in cluster.sandboxes:
        assert_converted_once(
            sandbox.portal, [delivered[sandbox.member_id], lost[sandbox.member_id]]
        )
