"""The OAuth side of the portal: app installation, access/refresh tokens, webhooks, `/oauth/token/`.

Inconvenient on purpose, as the docs allow: refresh tokens are single-use (the older docs'
"28 days or until first use"), a refresh also kills the access token it replaces, access tokens
live `token_ttl` seconds, and a refresh on an unpaid portal answers PAYMENT_REQUIRED.
https://apidocs.bitrix24.com/settings/oauth/index.html
https://apidocs.bitrix24.com/settings/oauth/auto-renewal.html
"""

from __future__ import annotations

import hashlib
import random
import secrets
import string
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from sandbox.errors import ApiError

REFRESH_TTL = 180 * 24 * 3600
CODE_TTL = 30
ALWAYS_ALLOWED_SCOPE = "basic"
PORTAL_STATES = ("active", "unpaid", "deleted")

_TOKEN_ALPHABET = string.ascii_lowercase + string.digits


def _token() -> str:
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(32))


def parse_scope(scope: str | Iterable[str]) -> tuple[str, ...]:
    """A scope list from "crm,user" (commas or spaces) or an iterable, basic always included."""
    items = scope.replace(" ", ",").split(",") if isinstance(scope, str) else list(scope)
    names = [item.strip() for item in items if item and item.strip()]
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Grant:
    """What an access token stands for."""

    user_id: int
    scope: tuple[str, ...]
    expires_at: float
    pair: str = ""  # the token issued together with this one (access <-> refresh)
    # An event's token carries the hops its chain has left (rest/lib/event/sender.php:185-243,
    # rest/lib/event/session.php); a call made with it passes them on (rest.php:610-614).
    session: int | None = None


@dataclass(frozen=True)
class Webhook:
    """An incoming webhook: `/rest/<user_id>/<code>/`."""

    user_id: int
    code: str
    scope: tuple[str, ...]


@dataclass(frozen=True)
class TokenPair:
    """A freshly issued access + refresh token."""

    access_token: str
    refresh_token: str
    expires_at: float
    expires_in: int
    user_id: int
    scope: tuple[str, ...]


@dataclass
class Installation:
    """The app as installed on this portal (one app per sandbox)."""

    app_id: int = 5
    code: str = "sandbox.b24app"
    version: int = 1
    status: str = "F"  # F free, D demo, T trial, P paid, L local
    scope: tuple[str, ...] = ("crm", "user")
    application_token: str = ""
    installed: bool = False
    active: bool = False
    user_id: int = 1
    language_id: str = "en"
    event_handler_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _seeded_identity(seed: int) -> tuple[str, str, str]:
    rng = random.Random(f"sandbox-identity-{seed}")
    member_id = hashlib.md5(f"member-{seed}".encode(), usedforsecurity=False).hexdigest()
    client_id = f"app.{rng.getrandbits(56):014x}.{rng.randrange(10**8):08d}"
    alphabet = string.ascii_letters + string.digits
    client_secret = "".join(rng.choice(alphabet) for _ in range(50))
    return member_id, client_id, client_secret


class Authority:
    """Who may call the portal: webhooks, the installed app's tokens, the OAuth token endpoint."""

    def __init__(
        self,
        *,
        seed: int = 1,
        token_ttl: int = 3600,
        clock: Callable[[], float],
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> None:
        member_id, default_id, default_secret = _seeded_identity(seed)
        self.member_id = member_id
        self.client_id = client_id or default_id
        self.client_secret = client_secret or default_secret
        self.token_ttl = token_ttl
        self.portal_state = "active"
        self.installation = Installation()
        self._clock = clock
        self._lock = threading.Lock()
        self._access: dict[str, Grant] = {}
        self._refresh: dict[str, Grant] = {}
        self._codes: dict[str, Grant] = {}
        self._webhooks: dict[tuple[int, str], Webhook] = {}
        self.refreshes = 0

    # -- webhooks ---------------------------------------------------------------------------

    def add_webhook(self, code: str, *, user_id: int, scope: str | Iterable[str]) -> Webhook:
        """Register an incoming webhook."""
        hook = Webhook(user_id=user_id, code=code, scope=parse_scope(scope))
        with self._lock:
            self._webhooks[(user_id, code)] = hook
        return hook

    def webhook(self, user_id: int, code: str) -> Webhook:
        """The webhook for this URL; NO_AUTH_FOUND (401) when there is none."""
        hook = self._webhooks.get((user_id, code))
        if hook is None:
            raise ApiError("NO_AUTH_FOUND", "Wrong authorization data", 401)
        return hook

    # -- tokens -----------------------------------------------------------------------------

    def _issue(self, user_id: int, scope: tuple[str, ...], session: int | None = None) -> TokenPair:
        now = self._clock()
        access, refresh = _token(), _token()
        expires_at = now + self.token_ttl
        self._access[access] = Grant(user_id, scope, expires_at, pair=refresh, session=session)
        self._refresh[refresh] = Grant(user_id, scope, now + REFRESH_TTL, pair=access)
        return TokenPair(access, refresh, expires_at, self.token_ttl, user_id, scope)

    def issue(self, user_id: int, *, session: int | None = None) -> TokenPair:
        """A new token pair for `user_id` with the installation's scope (events, installs);
        `session` marks an event's token with the hops its chain has left."""
        with self._lock:
            return self._issue(user_id, self.installation.scope, session)

    def authenticate(self, access_token: str) -> Grant:
        """The grant behind an access token, or the 401 Bitrix24 answers for it."""
        grant = self._access.get(access_token)
        if grant is None:
            raise ApiError("invalid_token", "Unable to get application by token", 401)
        if grant.expires_at <= self._clock():
            raise ApiError("expired_token", "The access token provided has expired.", 401)
        return grant

    def expire_all(self) -> int:
        """Expire every live access token now (a mass expiry); how many were live."""
        with self._lock:
            now = self._clock()
            live = [t for t, g in self._access.items() if g.expires_at > now]
            for token in live:
                self._access[token] = replace(self._access[token], expires_at=now)
            return len(live)

    def revoke_all(self) -> None:
        """Forget every token and code (the app was uninstalled)."""
        with self._lock:
            self._access.clear()
            self._refresh.clear()
            self._codes.clear()

    def authorization_code(self, user_id: int) -> str:
        """A one-time `code` (valid 30 s) for `grant_type=authorization_code`."""
        code = _token()
        with self._lock:
            self._codes[code] = Grant(user_id, self.installation.scope, self._clock() + CODE_TTL)
        return code

    # -- installation -----------------------------------------------------------------------

    def install(
        self, *, scope: str | Iterable[str], user_id: int, finish: bool, handler_url: str | None
    ) -> TokenPair:
        """(Re)install the app: a new application_token and a first token pair."""
        with self._lock:
            self.installation = Installation(
                scope=parse_scope(scope),
                application_token=secrets.token_hex(16),
                installed=finish,
                active=True,
                user_id=user_id,
                event_handler_url=handler_url,
            )
            return self._issue(user_id, self.installation.scope)

    def uninstall(self) -> Installation:
        """Remove the app: tokens revoked; the old installation is returned for ONAPPUNINSTALL."""
        with self._lock:
            old = self.installation
            self.installation = replace(old, installed=False, active=False)
            self._access.clear()
            self._refresh.clear()
            self._codes.clear()
            return old

    # -- the token endpoint -----------------------------------------------------------------

    def token_endpoint(
        self,
        params: dict[str, Any],
        *,
        client_endpoint: str,
        server_endpoint: str,
        oauth_domain: str,
    ) -> dict[str, Any]:
        """Answer `/oauth/token/`; raises ApiError with the OAuth server's error codes.

        Statuses follow RFC 6749 (400; 401 for a bad client), since Bitrix24 documents only codes.
        """
        grant_type = str(params.get("grant_type", ""))
        if grant_type not in ("refresh_token", "authorization_code"):
            raise ApiError("invalid_request", "Unsupported or missing grant_type", 400)
        if (
            str(params.get("client_id", "")) != self.client_id
            or str(params.get("client_secret", "")) != self.client_secret
        ):
            raise ApiError("invalid_client", "Invalid client credentials", 401)
        if self.portal_state == "deleted":
            raise ApiError("PORTAL_DELETED", "Portal was deleted", 400)
        with self._lock:
            if not self.installation.active:
                raise ApiError("invalid_grant", "Application is not installed", 400)
            now = self._clock()
            if grant_type == "refresh_token":
                token = str(params.get("refresh_token", ""))
                grant = self._refresh.pop(token, None)
                if grant is None or grant.expires_at <= now:
                    raise ApiError("invalid_grant", "Invalid grant", 400)
                if self.portal_state == "unpaid":
                    self._refresh[token] = grant  # not consumed: paying revives it
                    raise ApiError("PAYMENT_REQUIRED", "Payment required", 400)
                # The access token this refresh token was issued with dies with it.
                old_access = self._access.get(grant.pair)
                if old_access is not None:
                    self._access[grant.pair] = replace(old_access, expires_at=now)
                self.refreshes += 1
            else:
                grant = self._codes.pop(str(params.get("code", "")), None)
                if grant is None or grant.expires_at <= now:
                    raise ApiError("invalid_grant", "Invalid grant", 400)
            pair = self._issue(grant.user_id, grant.scope)
        return {
            "access_token": pair.access_token,
            "client_endpoint": client_endpoint,
            "domain": oauth_domain,
            "expires": int(pair.expires_at),
            "expires_in": pair.expires_in,
            "member_id": self.member_id,
            "refresh_token": pair.refresh_token,
            "scope": ",".join(pair.scope),
            "server_endpoint": server_endpoint,
            "status": self.installation.status,
            "user_id": pair.user_id,
        }

    def set_portal_state(self, state: str) -> None:
        """Mark the portal active, unpaid (refresh -> PAYMENT_REQUIRED) or deleted."""
        if state not in PORTAL_STATES:
            raise ValueError(f"unknown portal state {state!r} (choose {', '.join(PORTAL_STATES)})")
        self.portal_state = state
