"""The app page's short-lived signed token: who is looking, on which portal, in which language.

Bitrix24 shows the app page in an iframe, where third-party cookies are lost, so after the
opening user is authenticated (`b24app.rest.user`) the page carries this token in its links,
forms and fetch headers instead of a session cookie. Because a cross-site page cannot read it,
requiring it on every state-changing request is also the CSRF defence.

Signed (HMAC, itsdangerous) with a key derived from `B24APP_SECRET_KEY` under its own salt, so a
page token is useless as anything else and the Fernet keys never sign directly; every configured
key verifies, the first one signs (the same rotation rule as `b24app.store.crypto`).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from b24app.config import Settings
from b24app.errors import B24AppError, ConfigError

SALT = "b24app.page-token.v1"
MAX_AGE = 3600
# A Bitrix24 language code (en, br, la, de, ru, ...); the page picks its catalog from it.
_LANG = re.compile(r"[a-z]{2}\Z")


class PageTokenError(B24AppError):
    """A page token that is missing, tampered with or expired; `.expired` tells which."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        self.expired = expired
        super().__init__(message)


@dataclass(frozen=True)
class PageUser:
    """What a page token vouches for: the portal, the user, admin or not, the page language."""

    member_id: str
    user_id: int
    is_admin: bool
    lang: str = "en"

    def to_dict(self) -> dict[str, Any]:
        """The signed payload (short keys keep URLs short)."""
        return {"m": self.member_id, "u": self.user_id, "a": self.is_admin, "l": self.lang}

    @classmethod
    def from_dict(cls, data: Any) -> PageUser:
        """The PageUser of a verified payload; PageTokenError when it is not one."""
        if not isinstance(data, Mapping):
            raise PageTokenError("the page token holds no user")
        member_id, user_id = data.get("m"), data.get("u")
        if not isinstance(member_id, str) or not member_id or not isinstance(user_id, int):
            raise PageTokenError("the page token holds no user")
        lang = data["l"] if isinstance(data.get("l"), str) and _LANG.match(data["l"]) else "en"
        return cls(member_id=member_id, user_id=user_id, is_admin=data.get("a") is True, lang=lang)


class PageTokens:
    """Issues and verifies page tokens; `max_age` seconds of life (an hour by default)."""

    def __init__(
        self, secret_keys: str, *, max_age: int = MAX_AGE, clock: Callable[[], float] = time.time
    ) -> None:
        keys = [k.strip() for k in secret_keys.split(",") if k.strip()]
        if not keys:
            raise ConfigError("missing setting(s): B24APP_SECRET_KEY")
        # itsdangerous signs with the last key and verifies with all; ours signs with the first.
        derived = [hashlib.sha256(b"b24app page token\0" + k.encode()).digest() for k in keys]

        class _Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock())

        self._serializer = URLSafeTimedSerializer(
            list(reversed(derived)), salt=SALT, signer=_Signer
        )
        self.max_age = max_age

    def __repr__(self) -> str:
        return f"PageTokens(max_age={self.max_age})"

    @classmethod
    def from_settings(
        cls, settings: Settings, *, max_age: int = MAX_AGE, clock: Callable[[], float] = time.time
    ) -> PageTokens:
        """Page tokens keyed by `settings.secret_key`; ConfigError when it is unset."""
        settings.require("B24APP_SECRET_KEY")
        return cls(settings.secret_key or "", max_age=max_age, clock=clock)

    def issue(self, user: PageUser) -> str:
        """A URL-safe token vouching for `user` for `max_age` seconds from now."""
        return str(self._serializer.dumps(user.to_dict()))

    def verify(self, token: str | None) -> PageUser:
        """The user a token vouches for; PageTokenError when missing, tampered or expired."""
        if not token:
            raise PageTokenError("no page token: reopen the app from Bitrix24")
        try:
            data = self._serializer.loads(token, max_age=self.max_age)
        except SignatureExpired:
            raise PageTokenError(
                "the page token has expired: reopen the app from Bitrix24", expired=True
            ) from None
        except BadSignature:
            raise PageTokenError(
                "the page token is not valid: reopen the app from Bitrix24"
            ) from None
        return PageUser.from_dict(data)
