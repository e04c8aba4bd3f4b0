"""The Bitrix24 OAuth server: exchanges and refreshes installation tokens.

https://apidocs.bitrix24.com/settings/oauth/auto-renewal.html
https://apidocs.bitrix24.com/settings/oauth/error-codes.html
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from b24app.config import Settings
from b24app.errors import B24Error, TransportError, UnexpectedResponse, make_error
from b24app.rest.clock import SYSTEM_CLOCK, Clock
from b24app.rest.redact import install_log_redaction, redact

log = logging.getLogger("b24app.rest")

TOKEN_PATH = "/oauth/token/"  # noqa: S105 - a path, not a secret


@dataclass(frozen=True)
class TokenGrant:
    """What the OAuth server returns: a new token pair and where the portal lives now."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: int | None
    client_endpoint: str
    server_endpoint: str | None = None
    member_id: str = ""
    scope: str = ""
    status: str = ""
    user_id: int | None = None

    @classmethod
    def parse(cls, body: Mapping[str, Any], now: float) -> TokenGrant:
        """A grant from the token endpoint's JSON (`expires` unix time, else `expires_in`)."""
        expires = body.get("expires")
        if expires is None and body.get("expires_in") is not None:
            expires = now + float(body["expires_in"])
        return cls(
            access_token=str(body["access_token"]),
            refresh_token=str(body["refresh_token"]),
            expires_at=int(float(expires)) if expires is not None else None,
            client_endpoint=str(body.get("client_endpoint") or ""),
            server_endpoint=body.get("server_endpoint"),
            member_id=str(body.get("member_id") or ""),
            scope=str(body.get("scope") or ""),
            status=str(body.get("status") or ""),
            user_id=int(body["user_id"]) if body.get("user_id") is not None else None,
        )


class OAuthServer:
    """Client of the OAuth server at `base_url` (https://oauth.bitrix.info by default)."""

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        install_log_redaction()
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self._session = session or requests.Session()
        self._timeout = timeout
        self._clock = clock
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"OAuthServer({self.base_url}, client_id={self.client_id})"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> OAuthServer:
        """The server of `settings` (B24_OAUTH_SERVER, B24_CLIENT_ID, B24_CLIENT_SECRET)."""
        settings.require("B24_CLIENT_ID", "B24_CLIENT_SECRET")
        return cls(
            base_url=settings.oauth_server,
            client_id=settings.client_id or "",
            client_secret=settings.client_secret or "",
            session=session,
            timeout=settings.timeout,
            clock=clock,
        )

    def refresh(self, refresh_token: str) -> TokenGrant:
        """A new token pair for `refresh_token` (which the server may invalidate: persist the
        result before using it). Raises InvalidGrant, PortalDeleted, PaymentRequired, ..."""
        self.refreshes += 1
        log.info("refreshing OAuth tokens at %s", self.base_url)
        return self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def exchange_code(self, code: str) -> TokenGrant:
        """The first token pair for an authorization `code` (valid 30 s)."""
        return self._token({"grant_type": "authorization_code", "code": code})

    def _token(self, params: dict[str, str]) -> TokenGrant:
        secrets = (self._client_secret, *params.values())
        query = {"client_id": self.client_id, "client_secret": self._client_secret, **params}
        try:
            http = self._session.get(
                self.base_url + TOKEN_PATH, params=query, timeout=self._timeout
            )
        except requests.RequestException as exc:
            # requests' messages include the URL, and this URL carries the secrets.
            raise TransportError(
                redact(f"{type(exc).__name__}: {exc}", secrets), method="oauth/token"
            ) from None
        try:
            body = http.json()
        except ValueError:
            body = None
        if not isinstance(body, Mapping):
            raise UnexpectedResponse(
                f"the OAuth server answered {http.headers.get('Content-Type', 'no content type')}"
                ", not JSON",
                method="oauth/token",
                status=http.status_code,
            )
        if body.get("error") or "access_token" not in body:
            error: B24Error = make_error(
                str(body.get("error") or ""),
                redact(str(body.get("error_description") or "no token in the answer"), secrets),
                method="oauth/token",
                status=http.status_code,
            )
            raise error
        return TokenGrant.parse(body, self._clock.now())
