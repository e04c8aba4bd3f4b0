"""Who opened the app: the user behind the `AUTH_ID` Bitrix24 posts to the app page.

Bitrix24 opens an app page with a POST holding the opening user's access token (`AUTH_ID`)
(https://apidocs.bitrix24.com/settings/oauth/simple-way.html). The token proves nothing until the
portal accepts it, so the user is read back from the portal with `user.current` and `user.admin`
(https://apidocs.bitrix24.com/api-reference/common/users/user-admin.html), in one batch, sent to
the *stored* client endpoint of the installation - never to an address taken from the request.
The token is borrowed for that one request: it is never refreshed, stored or logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from b24app.config import Settings
from b24app.errors import ExpiredToken, UnexpectedResponse
from b24app.rest.auth import OAuthAuth
from b24app.rest.client import PortalClient
from b24app.rest.command import Command
from b24app.rest.portal import Portal
from b24app.rest.tokens import Tokens

CURRENT_KEY = "me"
ADMIN_KEY = "admin"


@dataclass(frozen=True)
class Viewer:
    """The user who opened the app page: portal user id, display name, whether portal admin."""

    user_id: int
    name: str
    is_admin: bool


class BorrowedToken:
    """A TokenSource for a user's access token that is used as is and never refreshed."""

    def __init__(self, access_token: str, *, client_endpoint: str, member_id: str) -> None:
        self._tokens = Tokens(
            access_token=access_token,
            refresh_token="",
            expires_at=None,
            client_endpoint=client_endpoint,
            member_id=member_id,
        )

    def __repr__(self) -> str:
        return f"BorrowedToken({self.key})"

    @property
    def key(self) -> str:
        """The portal's member_id (the throttle is the portal's)."""
        return self._tokens.member_id or self._tokens.client_endpoint

    def current(self) -> Tokens:
        """The borrowed token."""
        return self._tokens

    def reload(self) -> Tokens:
        """The borrowed token (nothing newer exists)."""
        return self._tokens

    def refresh(self, failed_access_token: str) -> Tokens:
        """A borrowed token is not ours to refresh: the user reopens the app for a new one."""
        raise ExpiredToken("the user's token has expired; reopen the app", code="expired_token")

    def moved(self, client_endpoint: str) -> None:
        """A renamed portal: the installation learns it on its own next call, not from here."""
        raise UnexpectedResponse(
            "the portal answered from another address; reopen the app", code="REDIRECT"
        )


def viewer_client(
    access_token: str,
    *,
    client_endpoint: str,
    member_id: str,
    settings: Settings | None = None,
    **kwargs: Any,
) -> PortalClient:
    """A client calling `client_endpoint` (the stored one) with a user's borrowed token."""
    source = BorrowedToken(access_token, client_endpoint=client_endpoint, member_id=member_id)
    if settings is not None:
        kwargs.setdefault("rate", settings.rate_limit)
        kwargs.setdefault("redis_url", settings.redis_url)
        kwargs.setdefault("timeout", settings.timeout)
    return PortalClient(OAuthAuth(source), **kwargs)


def viewer_commands() -> tuple[Command, ...]:
    """`user.current` and `user.admin`, for one batch."""
    return (Command(CURRENT_KEY, "user.current", {}), Command(ADMIN_KEY, "user.admin", {}))


def parse_viewer(current: Any, admin: Any) -> Viewer:
    """A Viewer from the `user.current` and `user.admin` results."""
    if not isinstance(current, Mapping):
        raise UnexpectedResponse("user.current did not return a user", code="USER")
    try:
        user_id = int(current.get("ID"))
    except (TypeError, ValueError):
        raise UnexpectedResponse("user.current returned no numeric ID", code="USER") from None
    name = " ".join(str(current.get(k) or "").strip() for k in ("NAME", "LAST_NAME")).strip()
    return Viewer(
        user_id=user_id,
        name=name or str(current.get("EMAIL") or f"#{user_id}"),
        is_admin=admin is True or str(admin).strip().lower() in ("true", "y", "1"),
    )


def read_viewer(portal: Portal) -> Viewer:
    """Ask the portal who its caller is and whether they are an admin (one request)."""
    result = portal.batch(viewer_commands(), halt=True, idempotent=True)
    result.raise_first()
    return parse_viewer(result.results.get(CURRENT_KEY), result.results.get(ADMIN_KEY))
