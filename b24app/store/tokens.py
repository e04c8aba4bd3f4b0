"""Installed portals' tokens: the store's implementation of the transport's `TokenSource`.

A refresh token may be single-use (https://apidocs.bitrix24.com/settings/oauth/auto-renewal.html),
so concurrent refreshes must not race: `StoredTokens` refreshes inside the installation's write
lock (BEGIN IMMEDIATE on SQLite, SELECT ... FOR UPDATE on PostgreSQL), re-reads the row first and
uses the tokens another thread or process already rotated, and persists the new pair before it
is used. A failed refresh marks the installation and stops: it is never retried in a loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from b24app.errors import (
    B24Error,
    InvalidGrant,
    NotInstalled,
    PaymentRequired,
    PortalDeleted,
)
from b24app.rest.oauth import OAuthServer, TokenGrant
from b24app.rest.tokens import Tokens
from b24app.store import installations as inst
from b24app.store.db import write_lock

log = logging.getLogger("b24app.rest")


# What a failed refresh means for the installation (https://apidocs.bitrix24.com/settings/oauth/
# error-codes.html): a dead grant needs a reinstall; a deleted or unpaid portal is skipped.
REFRESH_FAILURES: dict[type[B24Error], str] = {
    InvalidGrant: inst.REINSTALL_NEEDED,
    PortalDeleted: inst.DELETED,
    PaymentRequired: inst.PAYMENT_REQUIRED,
}


def _status_failure(installation: inst.Installation | None, member_id: str) -> B24Error | None:
    if installation is None:
        return NotInstalled(f"no installation stored for portal {member_id}", code="NOT_INSTALLED")
    if installation.status == inst.ACTIVE:
        return None
    message = f"portal {installation.domain} is {installation.status}; not calling it"
    cls: type[B24Error] = {
        inst.REINSTALL_NEEDED: InvalidGrant,
        inst.DELETED: PortalDeleted,
        inst.PAYMENT_REQUIRED: PaymentRequired,
    }.get(installation.status, NotInstalled)
    return cls(message, code=installation.status.upper())


def _tokens(installation: inst.Installation) -> Tokens:
    return Tokens(
        access_token=installation.access_token,
        refresh_token=installation.refresh_token,
        expires_at=installation.expires_at,
        client_endpoint=installation.client_endpoint,
        member_id=installation.member_id,
    )


class StoredTokens:
    """Tokens of the installation `member_id` in an InstallationStore, refreshed through
    `oauth` once per portal across threads and processes."""

    def __init__(
        self,
        store: inst.InstallationStore,
        member_id: str,
        oauth: OAuthServer,
        *,
        detached: Callable[[str, str], None] | None = None,
    ) -> None:
        self._store = store
        self._member_id = member_id
        self._oauth = oauth
        # Refreshes in a process of its own (b24app.refresher), which outlives this one.
        self._detached = detached
        self._lock = threading.Lock()
        self._cached: Tokens | None = None

    def __repr__(self) -> str:
        return f"StoredTokens({self._member_id})"

    @property
    def key(self) -> str:
        """The portal's member_id."""
        return self._member_id

    def current(self) -> Tokens:
        """The cached tokens, read from the store on first use."""
        cached = self._cached
        return cached if cached is not None else self.reload()

    def reload(self) -> Tokens:
        """Re-read the installation; raises when it is not active."""
        installation = self._store.get_installation(self._member_id)
        failure = _status_failure(installation, self._member_id)
        if failure is not None:
            raise failure
        assert installation is not None
        self._cached = _tokens(installation)
        return self._cached

    def refresh(self, failed_access_token: str) -> Tokens:
        """One refresh per portal: inside the row's write lock, use the tokens someone else
        already rotated, else ask the OAuth server and persist the pair before returning it."""
        if self._detached is not None:
            return self._refresh_detached(failed_access_token)
        failure: B24Error | None = None
        with self._lock, write_lock(self._store.engine) as conn:
            installation = self._store.lock_installation(conn, self._member_id)
            failure = _status_failure(installation, self._member_id)
            if failure is None:
                assert installation is not None
                if installation.access_token != failed_access_token:
                    log.info(
                        "portal %s: using tokens rotated by another worker", installation.domain
                    )
                else:
                    try:
                        grant = self._oauth.refresh(installation.refresh_token)
                    except tuple(REFRESH_FAILURES) as exc:
                        status = next(s for c, s in REFRESH_FAILURES.items() if isinstance(exc, c))
                        self._store.mark_status(self._member_id, status, reason=exc.code, conn=conn)
                        log.warning(
                            "portal %s: token refresh failed (%s); marked %s",
                            installation.domain,
                            exc.code,
                            status,
                        )
                        failure = exc
                    else:
                        installation = self._rotate(conn, grant)
        return self._settle(installation, failure)

    def _refresh_detached(self, failed_access_token: str) -> Tokens:
        """`refresh` done by the detached child: it settles the stored row, this reads it."""
        assert self._detached is not None
        with self._lock:
            installation = self._store.get_installation(self._member_id)
            failure = _status_failure(installation, self._member_id)
            if failure is None and installation is not None:
                if installation.access_token == failed_access_token:
                    self._detached(self._member_id, failed_access_token)
                    installation = self._store.get_installation(self._member_id)
                    failure = _status_failure(installation, self._member_id)
                else:
                    log.info(
                        "portal %s: using tokens rotated by another worker", installation.domain
                    )
        return self._settle(installation, failure)

    def _settle(self, installation: inst.Installation | None, failure: B24Error | None) -> Tokens:
        """Cache and return the refreshed tokens, or forget them and raise why there are none."""
        if failure is not None:
            self._cached = None
            raise failure
        assert installation is not None
        self._cached = _tokens(installation)
        return self._cached

    def _rotate(self, conn: object, grant: TokenGrant) -> inst.Installation:
        return self._store.rotate_tokens(
            self._member_id,
            access_token=grant.access_token,
            refresh_token=grant.refresh_token,
            expires_at=grant.expires_at,
            client_endpoint=grant.client_endpoint or None,
            server_endpoint=grant.server_endpoint,
            scope=grant.scope or None,
            conn=conn,  # type: ignore[arg-type]
        )

    def moved(self, client_endpoint: str) -> None:
        """Store the portal's new address."""
        self._store.move_installation(self._member_id, client_endpoint)
        if self._cached is not None:
            self._cached = replace(self._cached, client_endpoint=client_endpoint)
