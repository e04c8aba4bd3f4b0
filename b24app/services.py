"""What background work needs, built once per process from the settings: the database, the
installations, the per-portal settings, and clients for installed portals.

Clients are made per task, but each portal keeps one rate bucket and one operating-time budget
per process (or in Redis, shared by every process, when B24APP_REDIS_URL is set), so a task that
starts right after another does not assume the portal's bucket is empty.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine

from b24app.config import Settings
from b24app.refresher import DetachedRefresh
from b24app.rest import PortalClient
from b24app.rest.clock import SYSTEM_CLOCK
from b24app.rest.oauth import OAuthServer
from b24app.rest.throttle import OperatingBudget, RateBucket, make_bucket, make_budget
from b24app.store.crypto import Cipher
from b24app.store.db import make_engine, migrate
from b24app.store.installations import InstallationStore
from b24app.store.journal import Journal
from b24app.store.portal_settings import PortalSettings
from b24app.store.portal_variants import PortalVariants
from b24app.store.tokens import StoredTokens


def installation_client(
    store: InstallationStore,
    member_id: str,
    *,
    settings: Settings,
    oauth: OAuthServer | None = None,
    detached: Callable[[str, str], None] | None = None,
    **kwargs: Any,
) -> PortalClient:
    """A client for a stored installation, refreshing through `oauth` (default: the OAuth
    server of `settings`) and persisting every new token pair in `store`; through
    `detached(member_id, failed_access_token)` instead when given (b24app.refresher)."""
    clock = kwargs.get("clock", SYSTEM_CLOCK)
    oauth = oauth or OAuthServer.from_settings(settings, clock=clock)
    source = StoredTokens(store, member_id, oauth, detached=detached)
    return PortalClient.from_source(source, settings=settings, **kwargs)


class Services:
    """Lazily built shared objects for `settings`; thread-safe."""

    def __init__(
        self,
        settings: Settings,
        *,
        oauth: OAuthServer | None = None,
        detached_refresh: bool = False,
    ) -> None:
        self.settings = settings
        self._oauth = oauth
        # The long-running processes (worker, web) refresh tokens in a child that outlives them.
        self.detached_refresh = detached_refresh
        self._lock = threading.Lock()
        self._buckets: dict[str, RateBucket] = {}
        self._budgets: dict[str, OperatingBudget] = {}
        self._migrated = False
        self.offline_ready: set[str] = set()  # portals whose offline lead events are bound

    def __repr__(self) -> str:
        return "Services()"

    @cached_property
    def engine(self) -> Engine:
        """The app database (migrated on first use)."""
        with self._lock:
            if not self._migrated:
                migrate(self.settings.database_url)
                self._migrated = True
        return make_engine(self.settings.database_url)

    @cached_property
    def installations(self) -> InstallationStore:
        """Installed portals (B24APP_SECRET_KEY decrypts their tokens)."""
        return InstallationStore(self.engine, Cipher.from_settings(self.settings))

    @cached_property
    def portal_settings(self) -> PortalSettings:
        """Saved policies, observed modes, sweep times."""
        return PortalSettings(self.engine)

    @cached_property
    def oauth(self) -> OAuthServer:
        """The OAuth server that refreshes installation tokens."""
        return self._oauth or OAuthServer.from_settings(self.settings)

    def tokens(self, member_id: str) -> StoredTokens:
        """The stored tokens of the installed portal `member_id`, refreshed as this process
        refreshes them (in a detached child for the worker and the web app)."""
        return StoredTokens(self.installations, member_id, self.oauth, detached=self._detached())

    def _detached(self) -> DetachedRefresh | None:
        return self._refresher if self.detached_refresh else None

    @cached_property
    def _refresher(self) -> DetachedRefresh:
        """The process's one refresh child (b24app.refresher), shared by every client."""
        return DetachedRefresh(self.settings)

    def variants(self, member_id: str) -> dict[str, str]:
        """What `b24app doctor` recorded for the portal ({name: value}; {} when it never ran),
        handed to a conversion so it takes the portal's path at once."""
        return PortalVariants(self.engine).of(member_id)

    def journal(self, member_id: str, **kwargs: Any) -> Journal:
        """The conversion journal of a portal."""
        return Journal(self.engine, portal=member_id, **kwargs)

    def client(self, member_id: str) -> PortalClient:
        """A client for the installed portal `member_id` (close it when done)."""
        found = self.installations.get_installation(member_id)
        # Bitrix24's bucket is the portal's, shared by every app and webhook on it: keyed by the
        # portal's host, as a webhook client keys it, so a CLI run and the workers share it.
        host = urlsplit(found.client_endpoint).netloc if found else member_id
        with self._lock:
            bucket = self._buckets.get(host)
            if bucket is None:
                bucket = make_bucket(
                    self.settings.rate_limit, key=host, redis_url=self.settings.redis_url
                )
                self._buckets[host] = bucket
            budget = self._budgets.get(member_id)
            if budget is None:
                budget = make_budget(key=member_id, redis_url=self.settings.redis_url)
                self._budgets[member_id] = budget
        return installation_client(
            self.installations,
            member_id,
            settings=self.settings,
            oauth=self.oauth,
            detached=self._detached(),
            bucket=bucket,
            operating=budget,
        )
