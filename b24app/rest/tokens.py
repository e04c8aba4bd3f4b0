"""Where an OAuth client gets its tokens, and how it refreshes them exactly once per portal.

`TokenSource` is the seam: the transport reads, refreshes and relocates tokens through it and
knows nothing of where they are kept. `MemoryTokens` holds them in memory (a script, a test);
the installation store implements the protocol for installed portals
(`b24app.store.tokens.StoredTokens`: one refresh per portal across processes, persisted before
use, since a refresh token may be single-use,
https://apidocs.bitrix24.com/settings/oauth/auto-renewal.html).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from b24app.rest.oauth import OAuthServer


@dataclass(frozen=True)
class Tokens:
    """The credentials an OAuth call needs; the tokens never appear in repr."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float | None
    client_endpoint: str
    member_id: str = ""


class TokenSource(Protocol):
    """Gives the current tokens of one portal and refreshes them."""

    @property
    def key(self) -> str:
        """A stable name of the portal (member_id when known) for throttling and logs."""
        ...

    def current(self) -> Tokens:
        """The tokens to use now."""
        ...

    def refresh(self, failed_access_token: str) -> Tokens:
        """Fresh tokens after `failed_access_token` was rejected or expired: those another
        caller already rotated, else one OAuth refresh. Raises the classified error when
        refreshing fails."""
        ...

    def reload(self) -> Tokens:
        """Re-read the tokens from where they are kept, without refreshing."""
        ...

    def moved(self, client_endpoint: str) -> None:
        """The portal now answers at `client_endpoint`."""
        ...


class MemoryTokens:
    """Tokens held in memory (a script, a test): refreshed once across threads, handed to
    `on_rotate` (to persist them) before they are used."""

    def __init__(
        self,
        tokens: Tokens,
        oauth: OAuthServer,
        *,
        on_rotate: Callable[[Tokens], None] | None = None,
    ) -> None:
        self._tokens = tokens
        self._oauth = oauth
        self._on_rotate = on_rotate
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryTokens({self.key})"

    @property
    def key(self) -> str:
        """The member_id, else the endpoint."""
        return self._tokens.member_id or self._tokens.client_endpoint

    def current(self) -> Tokens:
        """The tokens held."""
        return self._tokens

    def reload(self) -> Tokens:
        """The tokens held (memory has nothing to re-read)."""
        return self._tokens

    def refresh(self, failed_access_token: str) -> Tokens:
        """Refresh once; callers that failed with an older token get the newer one."""
        with self._lock:
            if self._tokens.access_token != failed_access_token:
                return self._tokens
            grant = self._oauth.refresh(self._tokens.refresh_token)
            fresh = Tokens(
                access_token=grant.access_token,
                refresh_token=grant.refresh_token,
                expires_at=grant.expires_at,
                client_endpoint=grant.client_endpoint or self._tokens.client_endpoint,
                member_id=grant.member_id or self._tokens.member_id,
            )
            if self._on_rotate is not None:
                self._on_rotate(fresh)
            self._tokens = fresh
            return fresh

    def moved(self, client_endpoint: str) -> None:
        """Use `client_endpoint` from now on."""
        with self._lock:
            self._tokens = replace(self._tokens, client_endpoint=client_endpoint)
