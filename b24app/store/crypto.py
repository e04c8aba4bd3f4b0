"""Encryption of stored secrets (OAuth tokens, application tokens) with Fernet.

`B24APP_SECRET_KEY` holds one Fernet key, or several separated by commas to rotate keys: the
first encrypts, every one decrypts.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from b24app.config import Settings
from b24app.errors import ConfigError


class Cipher:
    """Encrypts and decrypts short secrets; the key never appears in its repr."""

    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise ConfigError("missing setting(s): B24APP_SECRET_KEY")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in parts])
        except (ValueError, TypeError):
            raise ConfigError(
                "B24APP_SECRET_KEY must be Fernet keys (32 url-safe base64 bytes), comma-separated"
            ) from None

    def __repr__(self) -> str:
        return "Cipher(***)"

    @classmethod
    def from_settings(cls, settings: Settings) -> Cipher:
        """The cipher for `settings.secret_key`; ConfigError when it is unset or malformed."""
        settings.require("B24APP_SECRET_KEY")
        return cls(settings.secret_key or "")

    @staticmethod
    def generate_key() -> str:
        """A fresh key for B24APP_SECRET_KEY."""
        return Fernet.generate_key().decode()

    def encrypt(self, plaintext: str) -> str:
        """`plaintext` encrypted (ASCII, safe to store in a text column)."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext of `ciphertext`; ConfigError when no configured key opens it."""
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                "B24APP_SECRET_KEY cannot decrypt the stored tokens (was the key changed? "
                "list the old key after the new one)"
            ) from None
