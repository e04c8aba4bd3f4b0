"""Which portal a command talks to: one incoming webhook, or a portal that installed the app.

`B24_WEBHOOK_URL` selects one portal by its incoming webhook
(https://apidocs.bitrix24.com/local-integrations/local-webhooks.html); `--portal MEMBER_ID|DOMAIN`
selects an installation from the installations store, whose OAuth tokens are refreshed and
persisted as they rotate. Either way the caller gets a client, the key its journal is filed under
and a name safe to print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from b24app.config import Settings
from b24app.errors import ConfigError, NotInstalled
from b24app.locks import portal_lock_name
from b24app.rest import PortalClient, WebhookAuth
from b24app.services import installation_client
from b24app.store.crypto import Cipher
from b24app.store.db import make_engine, migrate
from b24app.store.installations import InstallationStore


@dataclass(frozen=True)
class PortalTarget:
    """A portal client plus its journal key (member_id or webhook host), a printable name and
    the name of its conversion lock (by host: a webhook run and the app's workers share it)."""

    client: PortalClient = field(repr=False)
    key: str
    display: str
    lock_name: str = ""


def open_portal(
    settings: Settings, portal: str | None = None, **client_options: Any
) -> PortalTarget:
    """The portal named by `--portal` (an installation), else by B24_WEBHOOK_URL.

    `client_options` go to the PortalClient (e.g. the doctor's short timeout and retries).
    Raises ConfigError when neither is given, NotInstalled when `portal` is not an active
    installation in the database.
    """
    if portal:
        return _installed(settings, portal.strip(), client_options)
    if settings.webhook_url:
        auth = WebhookAuth(settings.webhook_url)
        client = PortalClient.from_webhook(
            settings.webhook_url, settings=settings, **client_options
        )
        return PortalTarget(
            client=client,
            key=auth.key,
            display=auth.display,
            lock_name=portal_lock_name(settings.webhook_url),
        )
    raise ConfigError(
        "missing setting(s): B24_WEBHOOK_URL (or pass --portal MEMBER_ID|DOMAIN "
        "of an installed portal)"
    )


def _installed(settings: Settings, portal: str, client_options: dict[str, Any]) -> PortalTarget:
    cipher = Cipher.from_settings(settings)
    settings.require("B24_CLIENT_ID", "B24_CLIENT_SECRET")
    migrate(settings.database_url)
    store = InstallationStore(make_engine(settings.database_url), cipher)
    installation = store.find_installation(portal)
    if installation is None:
        known = ", ".join(i.domain for i in store.list_installations()) or "none"
        raise NotInstalled(
            f"no installation for {portal!r} (installed portals: {known})", code="NOT_INSTALLED"
        )
    if not installation.active:
        raise NotInstalled(
            f"the app on {installation.domain} is {installation.status}; "
            "reinstall it from the Bitrix24 Market",
            code="NOT_INSTALLED",
        )
    client = installation_client(store, installation.member_id, settings=settings, **client_options)
    return PortalTarget(
        client=client,
        key=installation.member_id,
        display=installation.domain,
        lock_name=portal_lock_name(installation.client_endpoint),
    )
