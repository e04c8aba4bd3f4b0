"""Helpers for tests that drive the sandbox: an installed app in a store, lead commands."""

from __future__ import annotations

from b24app.config import PLANS, RateLimit, Settings
from b24app.rest import Command, PortalClient
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


class Installed:
    """A sandbox app installation saved in a SQLite store, and the settings to reach it."""

    def __init__(self, portal: Sandbox, db_url: str, plan: str = "fast") -> None:
        migrate(db_url)
        self.db_url = db_url
        self.key = Cipher.generate_key()
        self.store = inst.InstallationStore(make_engine(db_url), Cipher(self.key))
        details = portal.install_app()
        self.member_id = details["member_id"]
        self.store.save_installation(
            inst.Installation(
                member_id=details["member_id"],
                domain=details["domain"],
                client_endpoint=details["client_endpoint"],
                server_endpoint=details["server_endpoint"],
                access_token=details["access_token"],
                refresh_token=details["refresh_token"],
                application_token=details["application_token"],
                expires_at=details["expires"],
                scope=details["scope"],
            )
        )
        self.settings = dict(
            client_id=portal.client_id,
            client_secret=portal.client_secret,
            oauth_server=portal.oauth_server,
            rate_limit=RateLimit(*PLANS[plan]),
        )

    def client(self) -> PortalClient:
        return PortalClient.for_installation(
            self.store, self.member_id, settings=Settings(**self.settings)
        )
