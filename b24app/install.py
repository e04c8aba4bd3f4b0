"""Installing the app on a portal: prove the tokens, store the installation, bind the events.

Two ways in: the Market installer request (a UI app's install page gets `AUTH_ID`, `REFRESH_ID`,
`member_id`, `APPLICATION_TOKEN`, ... https://apidocs.bitrix24.com/settings/oauth/simple-way.html)
and the ONAPPINSTALL event (`auth[access_token]`, `auth[refresh_token]`, ...
https://apidocs.bitrix24.com/api-reference/common/events/on-app-install.html).

Both are only claims until proven: anyone can POST `member_id=<a victim's portal>` with tokens of
their own portal. The proof asks the OAuth server configured in the settings (never an address
from the request): refreshing `REFRESH_ID` with our client id and secret succeeds only for a
token issued to this app, and the answer names the portal's `member_id` and `client_endpoint`
(https://apidocs.bitrix24.com/settings/oauth/auto-renewal.html). The claimed `member_id` and
`DOMAIN` must match it; then `app.info` on that endpoint confirms the portal takes the new token.
Nothing is stored before the proof. The endpoints stored are the OAuth server's, so later calls -
including those an event triggers - never go where a request said.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from b24app import messages as msg
from b24app.config import Settings
from b24app.errors import (
    AuthError,
    B24AppError,
    B24Error,
    ConfigError,
    InvalidClient,
    PaymentRequired,
    PortalDeleted,
)
from b24app.events import Event
from b24app.rest import OAuthServer, PortalClient, TokenGrant, Tokens
from b24app.rest.bindings import Bindings, app_info, ensure_bindings
from b24app.services import installation_client
from b24app.store import installations as inst
from b24app.vocabulary import BOUND_EVENTS

log = logging.getLogger("b24app.install")

EVENTS_PATH = "/events"
_MEMBER_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_DOMAIN = re.compile(r"^[A-Za-z0-9.\-]{1,253}(:\d{1,5})?$")
_TOKEN = re.compile(r"^[A-Za-z0-9_.\-]{8,512}$")


class InstallError(B24AppError):
    """The installation did not happen; the message is safe to show (no secrets)."""

    status = 500


class BadInstallRequest(InstallError):
    """The request lacks a field Bitrix24 always sends, or one is malformed (400)."""

    status = 400


class InstallRejected(InstallError):
    """The tokens were not proven for the claimed portal: nothing was stored (403)."""

    status = 403


class RefreshRefused(InstallRejected):
    """The OAuth server refused the claimed refresh token (forged, or already used) (403)."""


class InstallUnavailable(InstallError):
    """The OAuth server or the portal could not be asked; nothing was stored, try again (503)."""

    status = 503


class BindFailed(InstallError):
    """The installation was stored but its event handlers could not be bound (502)."""

    status = 502


@dataclass(frozen=True)
class InstallClaim:
    """What an install request says: the portal and its tokens, not yet proven."""

    member_id: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    application_token: str = field(repr=False)
    domain: str = ""
    source: str = "market"

    @classmethod
    def from_market(cls, form: Mapping[str, Any]) -> InstallClaim:
        """The claim of a Market installer request (query string and form merged)."""

        def text(name: str) -> str:
            value = form.get(name, "")
            return value.strip() if isinstance(value, str) else ""

        return cls(
            member_id=text("member_id"),
            access_token=text("AUTH_ID"),
            refresh_token=text("REFRESH_ID"),
            application_token=text("APPLICATION_TOKEN"),
            domain=text("DOMAIN"),
            source="market",
        ).checked()

    @classmethod
    def from_event(cls, event: Event) -> InstallClaim:
        """The claim of an ONAPPINSTALL delivery."""
        return cls(
            member_id=event.member_id,
            access_token=event.auth_value("access_token").strip(),
            refresh_token=event.auth_value("refresh_token").strip(),
            application_token=event.application_token.strip(),
            domain=event.domain.strip(),
            source="event",
        ).checked()

    def checked(self) -> InstallClaim:
        """This claim, or BadInstallRequest naming the first missing or malformed field."""
        if not _MEMBER_ID.match(self.member_id):
            raise BadInstallRequest(msg.INSTALL_MALFORMED.format(field="member_id"))
        for name, value in (
            (msg.INSTALL_ACCESS_TOKEN, self.access_token),
            (msg.INSTALL_REFRESH_TOKEN, self.refresh_token),
            (msg.INSTALL_APPLICATION_TOKEN, self.application_token),
        ):
            if not _TOKEN.match(value):
                raise BadInstallRequest(msg.INSTALL_MALFORMED.format(field=name))
        if self.domain and not _DOMAIN.match(self.domain):
            raise BadInstallRequest(msg.INSTALL_MALFORMED_DOMAIN)
        return self


@dataclass(frozen=True)
class InstallResult:
    """A stored installation, its bindings, and what `app.info` said (None for a duplicate)."""

    installation: inst.Installation
    bindings: Bindings
    app_installed: bool | None = None
    duplicate: bool = False


def events_url(settings: Settings) -> str:
    """Where Bitrix24 delivers events: `<B24APP_PUBLIC_URL>/events`."""
    settings.require("B24APP_PUBLIC_URL")
    base = (settings.public_url or "").rstrip("/")
    if urlsplit(base).scheme not in ("http", "https"):
        raise ConfigError("B24APP_PUBLIC_URL must start with http:// or https://")
    return base + EVENTS_PATH


def install_from_market(
    store: inst.InstallationStore,
    form: Mapping[str, Any],
    *,
    settings: Settings,
    oauth: OAuthServer | None = None,
) -> InstallResult:
    """Install from the Market installer request (query + form merged): prove, store, bind."""
    return install(store, InstallClaim.from_market(form), settings=settings, oauth=oauth)


def install_from_event(
    store: inst.InstallationStore,
    event: Event,
    *,
    settings: Settings,
    oauth: OAuthServer | None = None,
) -> InstallResult:
    """Install from an ONAPPINSTALL delivery: prove, store, bind."""
    return install(store, InstallClaim.from_event(event), settings=settings, oauth=oauth)


def install(
    store: inst.InstallationStore,
    claim: InstallClaim,
    *,
    settings: Settings,
    oauth: OAuthServer | None = None,
) -> InstallResult:
    """Prove `claim` with the OAuth server, store the installation, bind the app's events.

    When the OAuth server refuses the refresh token but the claim's application token equals
    the one stored for an active installation, the request repeats an install already proven
    (ONAPPINSTALL after the installer page, a duplicate delivery: the first one used the
    single-use refresh token): only the bindings are checked again. Fresh tokens always win, so
    an app update re-stores them. Raises BadInstallRequest, InstallRejected, InstallUnavailable
    (nothing stored) or BindFailed (stored, handlers missing).
    """
    handler = events_url(settings)
    oauth = oauth or OAuthServer.from_settings(settings)
    try:
        grant = _prove(oauth, claim)
    except RefreshRefused:
        stored = _already_installed(store, claim)
        if stored is None:
            raise
        log.info("portal %s: install request repeats the stored installation", claim.member_id)
        bindings = _bind(store, claim.member_id, handler, settings, oauth)
        return InstallResult(stored, bindings, duplicate=True)
    tokens, installed = _confirm(grant, settings, oauth)
    installation = store.save_installation(
        inst.Installation(
            member_id=claim.member_id,
            domain=inst.domain_of(tokens.client_endpoint),
            client_endpoint=tokens.client_endpoint,
            server_endpoint=grant.server_endpoint,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            application_token=claim.application_token,
            expires_at=int(tokens.expires_at) if tokens.expires_at is not None else None,
            scope=grant.scope,
        )
    )
    log.info(
        "portal %s (%s) installed the app via %s",
        claim.member_id,
        installation.domain,
        claim.source,
    )
    bindings = _bind(store, claim.member_id, handler, settings, oauth)
    return InstallResult(installation, bindings, app_installed=installed)


def _already_installed(
    store: inst.InstallationStore, claim: InstallClaim
) -> inst.Installation | None:
    """The active installation whose application token the claim repeats (constant time)."""
    stored = store.get_installation(claim.member_id)
    if stored is None or stored.status != inst.ACTIVE:
        return None
    if not store.verify_application_token(claim.member_id, claim.application_token):
        return None
    return stored


def _prove(oauth: OAuthServer, claim: InstallClaim) -> TokenGrant:
    """The OAuth server's answer for the claimed refresh token, checked against the claim."""
    try:
        grant = oauth.refresh(claim.refresh_token)
    except InvalidClient as exc:
        log.warning(
            "install for portal %s: the OAuth server refused our client (%s); "
            "check B24_CLIENT_ID and B24_CLIENT_SECRET",
            claim.member_id,
            exc.code,
        )
        raise InstallRejected(msg.INSTALL_TOKENS_REFUSED) from None
    except AuthError as exc:
        log.warning("install for portal %s: refresh refused (%s)", claim.member_id, exc.code)
        raise RefreshRefused("the OAuth server did not accept these tokens") from None
    except (PortalDeleted, PaymentRequired) as exc:
        log.warning(
            "install for portal %s rejected: refresh failed (%s)", claim.member_id, exc.code
        )
        raise InstallRejected(msg.INSTALL_TOKENS_REFUSED) from None
    except B24Error as exc:
        log.warning(
            "install for portal %s: OAuth server unavailable (%s)", claim.member_id, exc.code
        )
        raise InstallUnavailable(msg.INSTALL_OAUTH_DOWN) from None
    if grant.member_id != claim.member_id:
        log.warning(
            "install rejected: tokens belong to portal %s, the request claimed %s",
            grant.member_id or "(none)",
            claim.member_id,
        )
        raise InstallRejected(msg.INSTALL_OTHER_PORTAL)
    endpoint = urlsplit(grant.client_endpoint)
    if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
        raise InstallUnavailable(msg.INSTALL_NO_ENDPOINT)
    if claim.domain and claim.domain.lower() != endpoint.netloc.lower():
        log.warning(
            "install for portal %s rejected: DOMAIN %s is not the portal's %s",
            claim.member_id,
            claim.domain,
            endpoint.netloc,
        )
        raise InstallRejected(msg.INSTALL_OTHER_DOMAIN)
    return grant


def _confirm(grant: TokenGrant, settings: Settings, oauth: OAuthServer) -> tuple[Tokens, bool]:
    """`app.info` on the proven endpoint with the new token: the newest tokens (a refresh on the
    way is kept) and whether Bitrix24 counts the app installed yet."""
    latest = [
        Tokens(
            access_token=grant.access_token,
            refresh_token=grant.refresh_token,
            expires_at=grant.expires_at,
            client_endpoint=grant.client_endpoint,
            member_id=grant.member_id,
        )
    ]
    client = PortalClient.from_tokens(
        latest[0], oauth=oauth, settings=settings, on_rotate=latest.append
    )
    try:
        info = app_info(client)
    except AuthError as exc:
        raise InstallRejected(msg.INSTALL_TOKEN_REFUSED.format(code=exc.code)) from None
    except B24Error as exc:
        raise InstallUnavailable(msg.INSTALL_PORTAL_DOWN.format(code=exc.code or "error")) from None
    finally:
        client.close()
    return latest[-1], info.get("INSTALLED") in (True, "Y", "true", 1)


def _bind(
    store: inst.InstallationStore,
    member_id: str,
    handler: str,
    settings: Settings,
    oauth: OAuthServer,
) -> Bindings:
    client = installation_client(store, member_id, settings=settings, oauth=oauth)
    try:
        bindings = ensure_bindings(client, handler, BOUND_EVENTS)
    except B24Error as exc:
        log.warning("portal %s: binding events failed (%s)", member_id, exc.code)
        raise BindFailed(msg.INSTALL_UNBOUND.format(code=exc.code)) from None
    finally:
        client.close()
    if bindings.bound:
        log.info("portal %s: bound %s to %s", member_id, ", ".join(bindings.bound), handler)
    return bindings
