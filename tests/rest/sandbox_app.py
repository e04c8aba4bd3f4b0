"""Helpers for tests that drive the sandbox: an installed app in a store, lead commands."""

from __future__ import annotations

import multiprocessing

from b24app.config import PLANS, RateLimit, Settings
from b24app.rest import Command, PortalClient
from b24app.services import installation_client
from b24app.store import installations as inst
from b24app.store.crypto import Cipher
from b24app.store.db import make_engine, migrate
from sandbox import Sandbox


def lead_adds(n: int, tag: str = "L") -> list[Command]:
    return [
        Command(
            f"{tag}{i}",
            "crm.lead.add",
            {
                "fields": {
                    "TITLE": f"{tag} lead {i}",
                    "NAME": "Test",
                    "ORIGIN_ID": f"{tag}-{i}",
                    "OPENED": True,
                    "PHONE": [{"VALUE": "+49 30 1234", "VALUE_TYPE": "WORK"}],
                }
            },
        )
        for i in range(n)
    ]


def install_into(store: inst.InstallationStore, portal: Sandbox) -> dict:
    """Install the app on the sandbox and save the installation in `store`; return the grant."""
    grant = portal.install_app()
    store.save_installation(
        inst.Installation(
            member_id=grant["member_id"],
            domain=grant["domain"],
            client_endpoint=grant["client_endpoint"],
            server_endpoint=grant["server_endpoint"],
            access_token=grant["access_token"],
            refresh_token=grant["refresh_token"],
            application_token=grant["application_token"],
            expires_at=grant["expires"],
            scope=grant["scope"],
        )
    )
    return grant


def spend_refresh_token(app: Installed) -> None:
    """Store a refresh token the portal no longer honours (as after a lost refresh)."""
    current = app.store.get_installation(app.member_id)
    app.store.rotate_tokens(
        app.member_id,
        access_token=current.access_token,
        refresh_token="not-a-live-refresh-token",
        expires_at=current.expires_at,
    )


def race_refresh(portal: Sandbox, app: Installed) -> tuple[list, dict]:
    """2 processes x 8 threads call at once right after every token expired; (outcomes, stats)."""
    from tests.rest import workers

    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(
            target=workers.refresh_race,
            args=(app.db_url, app.key, app.settings, app.member_id, 8, ready, go, results),
        )
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    assert [ready.get(timeout=60) for _ in procs] == [True, True]
    portal.expire_tokens()
    go.set()
    outcomes = [results.get(timeout=60) for _ in range(16)]
    for proc in procs:
        proc.join(30)
    return outcomes, portal.stats()


class Installed:
    """A sandbox app installation saved in a SQLite store, and the settings to reach it."""

    def __init__(self, portal: Sandbox, db_url: str, plan: str = "fast") -> None:
        migrate(db_url)
        self.db_url = db_url
        self.key = Cipher.generate_key()
        self.store = inst.InstallationStore(make_engine(db_url), Cipher(self.key))
        self.member_id = install_into(self.store, portal)["member_id"]
        self.settings = dict(
            client_id=portal.client_id,
            client_secret=portal.client_secret,
            oauth_server=portal.oauth_server,
            rate_limit=RateLimit(*PLANS[plan]),
        )

    def client(self) -> PortalClient:
        return installation_client(self.store, self.member_id, settings=Settings(**self.settings))
