"""An admin's `b24app convert` (webhook, its own SQLite journal, no Redis) run while the Market
app's worker converts freshly added leads from their events: every lead converted once.

On one machine the two meet on the machine's conversion lock (by the portal's host) and take
turns; from "another machine" (another temp directory) they share nothing and settle.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b24app.config import Settings
from b24app.crm.mapping import ORIGINATOR_ID
from b24app.crm.policy import Activities, AutoConvert, Client, Policy
from b24app.services import Services
from b24app.store.db import migrate
from sandbox import Sandbox
from sandbox.limits import Plan
from tests.conversion.portalstate import call, duplicates, rows
from tests.integration.cluster import (
    CLIENT_ID,
    CLIENT_SECRET,
    OAuthRouter,
    app_env,
    free_port,
    start_web,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.slow

LEADS = 120
SECRET = "adminhook9"
FLAGS = ("--client", "both", "--activities", "complete", "--json")
POLICY = Policy(
    client=Client.BOTH,
    activities=Activities.COMPLETE,
    auto=AutoConvert(enabled=True, stages=("NEW",)),
)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The Market app (gunicorn + one worker, SQLite journal and queue, no Redis) installed on
    a sandbox portal that drains 20 requests/s, with the auto-convert rule on."""
    logs = tmp_path / "logs"
    logs.mkdir()
    machine = tmp_path / "machine"
    machine.mkdir()
    with (
        Sandbox(
            plan=Plan("busy", rate=20.0, burst=20),
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            webhook_code=SECRET,
        ) as sandbox,
        OAuthRouter([sandbox]) as router,
    ):
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        database = f"sqlite:///{tmp_path / 'app.db'}"
        env = app_env(
            database_url=database,
            redis_url="",
            oauth_url=router.url,
            public_url=public,
            TMPDIR=str(machine),
            B24APP_RATE_PER_SECOND="8",
            B24APP_BURST="8",
            B24APP_SWEEP_MINUTES="60",
        )
        migrate(database)
        web = start_web(env, port, logs)
        try:
            grant = sandbox.install_app(
                app_url=f"{public}/install", event_handler_url=f"{public}/events"
            )
            assert grant["install_status"] == 200, web.output()[-2000:]
            assert sandbox.wait_events(30)
            services = Services(Settings.from_env(env))
            services.portal_settings.save_policy(sandbox.member_id, POLICY.to_dict(), by="1")
            worker = start_worker(env, "worker", logs)
            try:
                yield {"sandbox": sandbox, "machine": machine, "worker": worker}
            finally:
                worker.stop()
        finally:
            web.stop()


def _admin_cli(sandbox: Sandbox, home: Path, tmpdir: Path) -> subprocess.Popen[str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("B24_", "B24APP_"))}
    env |= {
        "TMPDIR": str(tmpdir),
        "B24_WEBHOOK_URL": sandbox.webhook_url,
        "B24APP_DATABASE_URL": f"sqlite:///{home / 'admin.db'}",
        "B24APP_RATE_PER_SECOND": "8",
        "B24APP_BURST": "8",
    }
    return subprocess.Popen(
        [sys.executable, "-c", "from b24app.cli import main; main()", "convert", *FLAGS],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("where", ["same-machine", "other-machine"])
def test_an_admin_cli_run_beside_the_app_workers_converts_each_lead_once(
    deployment: dict[str, Any], tmp_path: Path, where: str
) -> None:
    sandbox = deployment["sandbox"]
    core = sandbox.portal
    added: list[int] = []

    def add_leads() -> None:  # a web form or an import: events fire as each lead arrives
        for n in range(LEADS):
            fields = {"TITLE": f"Import {n}", "NAME": f"Ana{n}", "STATUS_ID": "NEW"}
            added.append(int(call(core, "crm.lead.add", {"fields": fields})))

    importer = threading.Thread(target=add_leads)
    importer.start()
    wait_for(lambda: len(added) >= LEADS // 3, timeout=60, what="the first leads")
    machine = deployment["machine"] if where == "same-machine" else tmp_path / "laptop"
    machine.mkdir(exist_ok=True)
    admin = _admin_cli(sandbox, tmp_path / "admin", machine)
    importer.join(120)
    out, err = admin.communicate(timeout=300)
    assert admin.returncode == 0, err[-2000:]

    def all_converted() -> bool:
        stages = {int(r["ID"]): r["STATUS_ID"] for r in rows(core, "crm.lead.list")}
        return all(stages[i] == "CONVERTED" for i in added)

    wait_for(all_converted, timeout=240, what="every added lead converted")
    # A run that lost the settling of a lead the other closed deletes its duplicates right after.
    wait_for(lambda: not duplicates(core), timeout=60, what="the losing run's clean-up")
    deals = Counter(
        str(r["ORIGIN_ID"]) for r in rows(core, "crm.deal.list", {"ORIGINATOR_ID": ORIGINATOR_ID})
    )
    assert all(deals[f"lead-{i}"] == 1 for i in added), "a lead without exactly one deal"
    used = {
        (kind, int(r[f"{kind.upper()}_ID"]))
        for r in rows(core, "crm.deal.list", {"ORIGINATOR_ID": ORIGINATOR_ID})
        for kind in ("contact", "company")
        if int(r.get(f"{kind.upper()}_ID") or 0)
    }
    for kind in ("contact", "company"):
        made = rows(core, f"crm.{kind}.list", {"ORIGINATOR_ID": ORIGINATOR_ID})
        unused = [r["ID"] for r in made if (kind, int(r["ID"])) not in used]
        assert not unused, f"unused duplicate {kind}s {unused}"
    if where == "same-machine":
        assert sandbox.stats()["query_limit_exceeded"] == 0
    assert out.strip().startswith("{")
