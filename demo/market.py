"""The demo's Market app step: a second sandbox portal (Classic) installs the app served on a
loopback port, a `b24app worker` process takes the queue, an admin turns auto-convert on through
the app page, new leads arrive as events and are converted; a forged event is refused.

`--serve` keeps the portal, the app and the worker running so a person can open the app page in
a browser the way a portal user does (`/portal/app?user=1` on the sandbox).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from b24app.config import Settings
from b24app.jobs import Jobs
from b24app.rest import PortalClient
from b24app.store.crypto import Cipher
from handlers import create_app
from handlers.devserver import ThreadedServer

WANTED_EVENTS = {"ONCRMLEADADD", "ONCRMLEADUPDATE", "ONAPPUNINSTALL"}
LEADS = (("Website form", "NEW"), ("Chat request", "NEW"), ("Cold call", "IN_PROCESS"))


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of a `b24app worker` sharing the demo app's database, queue and keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24")}
    env.update(
        B24_CLIENT_ID=settings.client_id or "",
        B24_CLIENT_SECRET=settings.client_secret or "",
        B24_OAUTH_SERVER=settings.oauth_server,
        B24APP_DATABASE_URL=settings.database_url,
        B24APP_SECRET_KEY=settings.secret_key or "",
        B24APP_PUBLIC_URL=settings.public_url or "",
        B24APP_PLAN="fast",
        B24APP_SWEEP_MINUTES="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """`b24app worker` as a child process, returned once it says it runs."""
    b24app = str(Path(sys.executable).with_name("b24app"))
    out = log.open("wb")
    child = subprocess.Popen(  # noqa: S603 - our own console script
        [b24app, "worker", "--workers", "2", "--tick", "0.5"],
        env=worker_env(settings),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: b"b24app worker:" in log.read_bytes() or child.poll() is not None, 60)
    if child.poll() is not None:
        raise RuntimeError(f"b24app worker exited: {log.read_text()[-500:]}")
    return child


def wait_for(done: Callable[[], Any], timeout: float) -> bool:
    """Poll `done` every 0.2 s until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.2)
    return bool(done())


def page_token(html: str) -> str:
    """The signed page token the app page puts in its forms."""
    found = re.search(r'name="page_token" value="([^"]+)"', html)
    return found.group(1) if found else ""


class MarketStep:
    """Step 6 of the demo; `demo` records the checks."""

    def __init__(self, demo: Any, *, tmp: Path, serve: bool) -> None:
        self.demo = demo
        self.tmp = tmp
        self.serve = serve

    def run(self) -> None:
        """Install, open the page, auto-convert arriving leads, refuse a forged event."""
        from sandbox import Sandbox

        d = self.demo
        d.step("6. The Market app: install, events, auto-convert")
        # The app's own log lines (a refused forgery is a warning) go to a file, not the narration.
        logging.basicConfig(filename=self.tmp / "app.log", level=logging.WARNING)
        with Sandbox(mode="classic", seed_leads=0, plan="fast") as portal, ThreadedServer() as web:
            settings = Settings(
                database_url=f"sqlite:///{self.tmp / 'market.db'}",
                secret_key=Cipher.generate_key(),
                public_url=web.url,
                client_id=portal.client_id,
                client_secret=portal.client_secret,
                oauth_server=portal.oauth_server,
                plan="fast",
            )
            app = create_app(settings, jobs=Jobs(settings))
            web.mount(app)
            worker = start_worker(settings, self.tmp / "worker.log")
            try:
                self._install(portal, web, app)
                self._page_and_policy(portal, app)
                self._events(portal, app)
                if self.serve:
                    self._serve(portal)
            finally:
                worker.terminate()
                worker.wait(15)

    def _install(self, portal: Any, web: ThreadedServer, app: Any) -> None:
        d = self.demo
        grant = portal.install_app(
            app_url=f"{web.url}/install",
            event_handler_url=f"{web.url}/events",
            page_url=f"{web.url}/app",
        )
        self.member_id = grant["member_id"]
        d.say(f"the portal's admin installs the app: /install answered {grant['install_status']}")
        ctx = app.extensions["b24app"]
        stored = ctx.installations.get_installation(self.member_id)
        d.check(
            "the install was proven and stored",
            stored is not None and stored.active,
            f"installation {stored.status if stored else 'missing'} for {portal.domain}",
        )
        database = (self.tmp / "market.db").read_bytes()
        d.check(
            "no token is stored in plaintext",
            grant["application_token"].encode() not in database
            and stored.access_token.encode() not in database,
            "installation secrets are Fernet-encrypted",
        )
        with ctx.client(self.member_id) as client:
            bound = {row["event"] for row in client.call("event.get").result}
        d.check("the lead events are bound", bound >= WANTED_EVENTS, ", ".join(sorted(bound)))

    def _open_page(self, portal: Any, app: Any, user_id: int) -> Any:
        opened = portal.app_page_form(user_id)
        return app.test_client().post("/app", query_string=opened["query"], data=opened["form"])

    def _page_and_policy(self, portal: Any, app: Any) -> None:
        d = self.demo
        admin = self._open_page(portal, app, 1)
        viewer = self._open_page(portal, app, 2)
        token = page_token(admin.get_data(as_text=True))
        read_only = viewer.status_code == 200 and not page_token(viewer.get_data(as_text=True))
        d.check(
            "the app page knows an admin from a user",
            admin.status_code == 200 and bool(token) and read_only,
            f"admin: {admin.status_code} with forms; user 2: {viewer.status_code} read-only",
        )
        refused = app.test_client().post(
            "/app/policy", data={"client": "contact", "pipeline": "0", "activities": "move"}
        )
        saved = app.test_client().post(
            "/app/policy",
            data={
                "page_token": token,
                "client": "contact",
                "pipeline": "0",
                "activities": "move",
                "auto_enabled": "on",
                "auto_stages": "NEW",
            },
        )
        policy = app.extensions["b24app"].portal_settings.policy_data(self.member_id) or {}
        d.say("the admin turns on auto-convert for leads in stage NEW, on the app page")
        d.check(
            "only a signed page token may change the policy",
            refused.status_code == 403 and policy.get("auto", {}).get("enabled") is True,
            f"without token {refused.status_code}; with it {saved.status_code}, rule "
            f"{policy.get('auto')}",
        )

    def _events(self, portal: Any, app: Any) -> None:
        d = self.demo
        with PortalClient.from_webhook(portal.webhook_url) as hook:
            ids = {
                title: int(
                    hook.call(
                        "crm.lead.add",
                        {"fields": {"TITLE": title, "NAME": "Ana", "STATUS_ID": stage}},
                    ).result
                )
                for title, stage in LEADS
            }
            d.say(f"leads arrive on the portal: {', '.join(f'{t} ({s})' for t, s in LEADS)}")

            def deals(lead_id: int) -> list[Any]:
                flt = {"ORIGINATOR_ID": "b24app", "ORIGIN_ID": f"lead-{lead_id}"}
                return hook.call("crm.deal.list", {"filter": flt}).result

            wanted = [ids[t] for t, s in LEADS if s == "NEW"]
            started = time.monotonic()
            wait_for(lambda: all(deals(i) for i in wanted), 60)
            took = time.monotonic() - started
            delivered = [x for x in portal.deliveries if x.event == "ONCRMLEADADD"]
            d.check(
                "events were delivered and answered at once",
                len(delivered) >= len(LEADS) and all(x.ok for x in delivered),
                f"{len(delivered)} ONCRMLEADADD deliveries, all 200",
            )
            d.check(
                "matching leads were converted once, the rest left alone",
                all(len(deals(i)) == 1 for i in wanted) and not deals(ids["Cold call"]),
                f"{len(wanted)} converted by the worker in {took:.1f} s; 'Cold call' untouched",
            )
        forged = app.test_client().post(
            "/events",
            data={
                "event": "ONCRMLEADADD",
                "data[FIELDS][ID]": str(ids["Cold call"]),
                "auth[member_id]": self.member_id,
                "auth[application_token]": "forged-token",
            },
        )
        d.check(
            "a forged event is refused", forged.status_code == 401, f"HTTP {forged.status_code}"
        )

    def _serve(self, portal: Any) -> None:
        d = self.demo
        d.say(f"open {portal.base_url}/portal/app?user=1 (admin) or ?user=2 (a user); Ctrl-C ends")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            d.say("stopped")
