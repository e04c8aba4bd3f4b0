"""Keep secrets out of logs, messages and reprs: webhook codes, tokens, client secrets.

https://apidocs.bitrix24.com/settings/how-to-call-rest-api/change-domen.html warns that the
webhook URL's code grants access to the portal: never log it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
SECRET_KEYS = frozenset(
    {
        "auth",
        "access_token",
        "refresh_token",
        "application_token",
        "client_secret",
        "auth_id",
        "refresh_id",
        "password",
        "code",
    }
)

_WEBHOOK = re.compile(r"(/rest/\d+/)[^/?#\s]+")
_QUERY = re.compile(
    r"(?i)\b(auth|access_token|refresh_token|application_token|client_secret|auth_id|refresh_id)"
    r"(=|%3D|\"\s*:\s*\"|'\s*:\s*')([^&\s\"']+)"
)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with webhook codes, token-looking parameters and the given `secrets` masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _WEBHOOK.sub(rf"\1{MASK}", text)
    return _QUERY.sub(rf"\1\2{MASK}", text)


def redact_url(url: str) -> str:
    """A webhook or endpoint URL safe to show: `https://host/rest/1/***/`."""
    return redact(url)


def redact_data(value: Any) -> Any:
    """A copy of a payload with the values of secret keys masked (for DEBUG logs)."""
    if isinstance(value, Mapping):
        return {
            k: MASK if str(k).lower() in SECRET_KEYS else redact_data(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in a record's final message (urllib3 logs request
    lines at DEBUG, and those hold the webhook code or the OAuth query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with secrets masked; never drops a record."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTERED_LOGGERS = ("urllib3.connectionpool", "b24app.rest")


def install_log_redaction() -> None:
    """Mask secrets in the loggers that see request URLs (idempotent)."""
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
