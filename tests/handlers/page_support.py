"""Helpers for the app page's tests: a sandbox portal with the app installed, the Flask app
that serves it (conversion jobs run in-process), and Bitrix24's way of opening the page."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from b24app.config import PLANS, RateLimit, Settings
from b24app.jobs import Jobs
from handlers import create_app
from sandbox import Sandbox
from tests.rest.sandbox_app import Installed

_TOKEN = re.compile(r'<meta name="b24app-page-token" content="([^"]+)"')


@dataclass
class PageApp:
    """A sandbox with the app installed and the Flask app serving its page."""

    sandbox: Sandbox
    settings: Settings
    app: Flask
    member_id: str

    @property
    def ctx(self) -> Any:
        """The app's AppContext."""
        return self.app.extensions["b24app"]

    def client(self) -> FlaskClient:
        """A fresh test client (it keeps no cookies we rely on)."""
        return self.app.test_client()

    def opening(self, user_id: int = 1, *, lang: str = "en") -> dict[str, Any]:
        """The query and form Bitrix24 sends when `user_id` opens the app."""
        return self.sandbox.app_page_form(user_id, lang=lang)

    def open(self, user_id: int = 1, *, lang: str = "en", client: FlaskClient | None = None):
        """POST /app as Bitrix24 does for `user_id`; the response."""
        opened = self.opening(user_id, lang=lang)
        return (client or self.client()).post(
            "/app", query_string=opened["query"], data=opened["form"]
        )

    def token(self, user_id: int = 1, *, lang: str = "en") -> str:
        """A page token for `user_id`, obtained by opening the page."""
        response = self.open(user_id, lang=lang)
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        return page_token(response.get_data(as_text=True))


def page_token(html: str) -> str:
    """The page token a rendered page carries."""
    found = _TOKEN.search(html)
    assert found, "the page carries no page token"
    return found.group(1)


def page_settings(sandbox: Sandbox, installed: Installed, **extra: Any) -> Settings:
    """Settings of an app that reaches the sandbox and shares the installation's database."""
    return Settings(
        database_url=installed.db_url,
        secret_key=installed.key,
        client_id=sandbox.client_id,
        client_secret=sandbox.client_secret,
        oauth_server=sandbox.oauth_server,
        rate_limit=RateLimit(*PLANS["fast"]),
        timeout=10.0,
        **extra,
    )


def make_page_app(sandbox: Sandbox, tmp_path: Path, **extra: Any) -> PageApp:
    """Install the app from `sandbox` into a SQLite file and build the Flask app on it."""
    installed = Installed(sandbox, f"sqlite:///{tmp_path / 'app.db'}")
    settings = page_settings(sandbox, installed, **extra)
    app = create_app(settings, jobs=Jobs(settings, immediate=True))
    return PageApp(sandbox=sandbox, settings=settings, app=app, member_id=installed.member_id)


def seed_jobs(page: PageApp, *, create_fields: bool = False) -> dict[str, int]:
    """Jobs of every kind a page shows: a report with converted and skipped leads, one skipped as
    converted by an earlier job, a running job with one waiting behind it, and enough finished
    jobs for the history to page. `create_fields`: the first conversion creates the custom fields
    the targets lack (a portal seeded with custom fields), so its undo has fields to delete."""
    portal = page.ctx.client(page.member_id)
    portal.call("crm.lead.update", {"id": 3, "fields": {"STATUS_ID": "JUNK"}})
    token = page.token(1)
    client = page.client()
    for n, ids in enumerate(("1, 2, 3, 999999", "1")):
        form = {"page_token": token, "leads": "chosen", "lead_ids": ids}
        if create_fields and n == 0:  # the form's policy: the defaults, plus the fields
            form.update(client="contact", pipeline="0", activities="complete", create_fields="on")
        response = client.post("/app/convert", data=form)
        assert response.status_code == 303
    journal = page.ctx.journal(page.member_id)
    for _ in range(10):
        done = journal.create_job(kind="sweep", policy={})
        journal.finish_job(done.id, status="done")
    stopped = journal.create_job(kind="convert", policy={})
    journal.finish_job(
        stopped.id, status="interrupted", error="the run was interrupted (KeyboardInterrupt)"
    )
    running = journal.create_job(kind="convert", policy={})
    journal.claim_job(running.id)
    waiting = journal.create_job(kind="event", policy={})
    return {"report": 1, "again": 2, "stopped": stopped.id, "waiting": waiting.id}
