"""How a request is authorised: an incoming webhook URL, or OAuth installation tokens.

https://apidocs.bitrix24.com/settings/how-to-call-rest-api/authorization.html
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from b24app.errors import ConfigError, UnexpectedResponse
from b24app.rest.clock import SYSTEM_CLOCK, Clock
from b24app.rest.redact import redact_url
from b24app.rest.tokens import TokenSource

log = logging.getLogger("b24app.rest")

# Refresh proactively once `expires` has passed (a token that lapses in transit is refreshed
# reactively); a margin would refresh on every call for short-lived tokens.
EXPIRY_SKEW_SECONDS = 0.0


@dataclass(frozen=True)
class Signed:
    """Where to send one request and what to add to its body; `token` is what was used."""

    url: str
    extra: dict[str, str] = field(default_factory=dict, repr=False)
    token: str = field(default="", repr=False)


class Auth(Protocol):
    """Signs requests for one portal and reacts when the portal rejects or moves."""

    @property
    def key(self) -> str:
        """A stable name of the portal, for the shared throttle."""
        ...

    def sign(self, method: str) -> Signed:
        """The URL and body additions for calling `method`."""
        ...

    def expired(self, sent: Signed) -> bool:
        """The portal said `expired_token`: refresh; False when this auth cannot refresh."""
        ...

    def rejected(self, sent: Signed) -> bool:
        """The portal rejected the token: True when newer stored credentials exist to retry."""
        ...

    def moved(self, location: str) -> None:
        """The portal redirected to `location`: call it there from now on."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never reach a log or a message."""
        ...


def rest_base(location: str) -> tuple[str, str]:
    """(scheme://host, path) of a redirect target that must lie under /rest/."""
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https") or not parts.netloc or "/rest/" not in parts.path:
        raise UnexpectedResponse(
            f"the portal redirected outside its REST API ({parts.netloc})", code="REDIRECT"
        )
    return f"{parts.scheme}://{parts.netloc}", parts.path


class WebhookAuth:
    """An incoming webhook: `https://portal/rest/<user>/<code>/`; the code is the secret."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url.strip())
        segments = [s for s in parts.path.split("/") if s]
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or len(segments) < 3
            or segments[-3] != "rest"
        ):
            raise ConfigError("B24_WEBHOOK_URL must look like https://<portal>/rest/<user>/<code>/")
        self._url = urlunsplit((parts.scheme, parts.netloc, "/" + "/".join(segments) + "/", "", ""))
        self._code = segments[-1]

    def __repr__(self) -> str:
        return f"WebhookAuth({redact_url(self._url)})"

    @property
    def url(self) -> str:
        """The webhook URL, secret included (never log it; use `display`)."""
        return self._url

    @property
    def display(self) -> str:
        """The webhook URL with its code masked."""
        return redact_url(self._url)

    @property
    def key(self) -> str:
        """The portal's host."""
        return urlsplit(self._url).netloc

    def sign(self, method: str) -> Signed:
        """`<webhook>/<method>`; nothing in the body."""
        return Signed(url=self._url + method)

    def expired(self, sent: Signed) -> bool:
        """A webhook has nothing to refresh."""
        return False

    def rejected(self, sent: Signed) -> bool:
        """A webhook has nothing newer to retry with."""
        return False

    def moved(self, location: str) -> None:
        """Keep the webhook's path, on the new host."""
        origin, _ = rest_base(location)
        old = self.key
        self._url = origin + urlsplit(self._url).path
        log.warning("portal moved from %s to %s; update B24_WEBHOOK_URL", old, self.key)

    def secrets(self) -> tuple[str, ...]:
        """The webhook code."""
        return (self._code,)


class OAuthAuth:
    """Installation tokens from a TokenSource, sent as `auth` in the JSON body (never in the
    URL, which proxies log); refreshed proactively when `expires` has passed."""

    def __init__(self, source: TokenSource, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._source = source
        self._clock = clock

    def __repr__(self) -> str:
        return f"OAuthAuth({self._source!r})"

    @property
    def key(self) -> str:
        """The portal's member_id (or endpoint)."""
        return self._source.key

    def sign(self, method: str) -> Signed:
        """`<client_endpoint><method>` with `auth` in the body."""
        tokens = self._source.current()
        if (
            tokens.expires_at is not None
            and self._clock.now() >= tokens.expires_at - EXPIRY_SKEW_SECONDS
        ):
            tokens = self._source.refresh(tokens.access_token)
        endpoint = (
            tokens.client_endpoint
            if tokens.client_endpoint.endswith("/")
            else tokens.client_endpoint + "/"
        )
        return Signed(
            url=endpoint + method, extra={"auth": tokens.access_token}, token=tokens.access_token
        )

    def expired(self, sent: Signed) -> bool:
        """Refresh (or adopt tokens someone else rotated)."""
        self._source.refresh(sent.token)
        return True

    def rejected(self, sent: Signed) -> bool:
        """Another worker may have rotated the token we sent: retry if the store has a new one."""
        return self._source.reload().access_token != sent.token

    def moved(self, location: str) -> None:
        """Store the new client endpoint (`https://new-host/rest/`)."""
        origin, _ = rest_base(location)
        self._source.moved(origin + "/rest/")
        log.warning("portal %s moved to %s", self.key, urlsplit(origin).netloc)

    def secrets(self) -> tuple[str, ...]:
        """The tokens in use."""
        try:
            tokens = self._source.current()
        except Exception:
            return ()
        return (tokens.access_token, tokens.refresh_token)
