"""Every error b24app raises: one root, classes keyed on the Bitrix24 `error` code.

The class of a Bitrix24 error is chosen from its `error` string, never from the HTTP status: the
docs disagree about statuses (https://apidocs.bitrix24.com/api-reference/common/system/...; see
the platform facts, "Status-code contradictions"). Messages never contain tokens or webhook codes.
"""

from __future__ import annotations


class B24AppError(Exception):
    """Root of every error b24app raises on purpose."""


class ConfigError(B24AppError):
    """A setting is missing or malformed; the message names every problem at once."""


class UsageError(B24AppError):
    """The caller asked for something that cannot be done (bad flag value, unknown pipeline)."""
