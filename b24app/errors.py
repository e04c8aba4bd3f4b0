"""Every error b24app raises: one root, classes keyed on the Bitrix24 `error` code.

The class of a Bitrix24 error is chosen from its `error` string, never from the HTTP status: the
docs disagree about statuses (https://apidocs.bitrix24.com/api-reference/common/system/...; see
the platform facts, "Status-code contradictions"). Messages never contain tokens or webhook codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class B24AppError(Exception):
    """Root of every error b24app raises on purpose."""


class ConfigError(B24AppError):
    """A setting is missing or malformed; the message names every problem at once."""


class UsageError(B24AppError):
    """The caller asked for something that cannot be done (bad flag value, unknown pipeline)."""


class PortalBusy(B24AppError):
    """Another run holds this portal's conversion lock and this run was told not to wait
    (CLI exit code 4)."""


class B24Error(B24AppError):
    """A Bitrix24 portal or OAuth server said no, or could not be reached.

    Keeps the Bitrix24 `code` and `description`, the REST `method` and the HTTP `status`
    (None for a command inside a batch, whose envelope is always 200).
    https://apidocs.bitrix24.com/api-reference/common/system/error-codes.html
    """

    def __init__(
        self,
        description: str = "",
        *,
        code: str = "",
        method: str | None = None,
        status: int | None = None,
    ) -> None:
        self.code = code
        self.description = description
        self.method = method
        self.status = status
        super().__init__(self._message())

    def _message(self) -> str:
        parts = [p for p in (self.method, self.code) if p]
        text = ": ".join([*parts, self.description or "no description"])
        return f"{text} (HTTP {self.status})" if self.status else text

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), dict(self.__dict__)))


def _rebuild(cls: type[B24Error], state: dict[str, Any]) -> B24Error:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._message())
    return error


class AuthError(B24Error):
    """The portal or the OAuth server rejected the credentials (bad webhook code, bad token)."""


class ExpiredToken(AuthError):
    """The access token has expired (`expired_token`); the client refreshes it once and retries."""


class InvalidGrant(AuthError):
    """The refresh token is dead (`invalid_grant`): the app must be reinstalled on the portal."""


class InvalidClient(AuthError):
    """The OAuth server does not know this client id/secret (`invalid_client`, `wrong_client`)."""


class NotInstalled(AuthError):
    """No usable installation is stored for the portal (never installed, or uninstalled)."""


class AccessDenied(B24Error):
    """The user or app lacks the right (`ACCESS_DENIED`, legacy "Access denied.")."""


class InsufficientScope(AccessDenied):
    """The app was not granted the method's scope (`insufficient_scope`)."""


class NotFound(B24Error):
    """The entity does not exist (`NOT_FOUND`, legacy "Not found")."""


class MethodNotFound(B24Error):
    """The portal has no such REST method (`ERROR_METHOD_NOT_FOUND`)."""


class AlreadyExists(B24Error):
    """The thing is already there (`ERROR_HANDLER_ALREADY_EXIST`, `ACTIVITY_IS_ALREADY_BOUND`)."""


class InvalidRequest(B24Error):
    """Bad parameters or a malformed request; repeating it will not help."""


class LimitExceeded(B24Error):
    """A portal limit: requests per second, operating time, or a manual block."""


class QueryLimitExceeded(LimitExceeded):
    """The portal's leaky bucket is full (`QUERY_LIMIT_EXCEEDED`); nothing ran, retry later.

    https://apidocs.bitrix24.com/limits.html
    """


class OperationTimeLimit(LimitExceeded):
    """The method used its operating-time budget (`OPERATION_TIME_LIMIT`); nothing ran.

    `reset_at` (unix seconds) is when part of the budget frees up, when the portal said so.
    https://apidocs.bitrix24.com/limits.html
    """

    reset_at: float | None = None


class Overloaded(LimitExceeded):
    """The portal blocked REST for abuse (`OVERLOAD_LIMIT`): only Bitrix24 support can lift it."""


class PaymentRequired(B24Error):
    """The app's subscription or trial on the portal ran out (`PAYMENT_REQUIRED`)."""


class PortalDeleted(B24Error):
    """The portal no longer exists (`PORTAL_DELETED`)."""


class ServerError(B24Error):
    """The portal failed while running the request (5xx, `INTERNAL_SERVER_ERROR`)."""


class UnexpectedResponse(B24Error):
    """The answer was not Bitrix24 JSON (an HTML error page, an empty body, a proxy); `status`
    tells which. Treated like a ServerError when it is a 5xx or a garbled 2xx."""


class TransportError(B24Error):
    """The portal could not be reached or did not answer, after every allowed retry."""


class OutcomeUnknown(B24Error):
    """A write was sent but its outcome is unknown (timeout, dropped connection, 5xx).

    It is never repeated blindly: reconcile by looking the entities up (e.g. by ORIGIN_ID).
    `commands` holds what was sent: `((key, method), ...)`, one pair for a single call.
    """

    commands: tuple[tuple[str, str], ...] = ()


class ListingError(B24Error):
    """Keyset listing could not advance (ids not increasing) or passed its page cap."""


# One table: Bitrix24 / OAuth `error` code (upper-cased) -> class.
# https://apidocs.bitrix24.com/api-reference/common/system/error-codes.html (system errors),
# https://apidocs.bitrix24.com/settings/oauth/error-codes.html (OAuth server).
ERROR_CLASSES: dict[str, type[B24Error]] = {
    # system errors table
    "INTERNAL_SERVER_ERROR": ServerError,
    "ERROR_UNEXPECTED_ANSWER": ServerError,
    "QUERY_LIMIT_EXCEEDED": QueryLimitExceeded,
    "OPERATION_TIME_LIMIT": OperationTimeLimit,
    "OVERLOAD_LIMIT": Overloaded,
    "ERROR_BATCH_METHOD_NOT_ALLOWED": InvalidRequest,
    "ERROR_BATCH_LENGTH_EXCEEDED": InvalidRequest,
    "INVALID_REQUEST": InvalidRequest,
    "NO_AUTH_FOUND": AuthError,
    "ACCESS_DENIED": AccessDenied,
    "INVALID_CREDENTIALS": AuthError,
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": NotFound,
    "INSUFFICIENT_SCOPE": InsufficientScope,
    "EXPIRED_TOKEN": ExpiredToken,
    "USER_ACCESS_ERROR": AccessDenied,
    "PORTAL_DELETED": PortalDeleted,
    "ERROR_METHOD_NOT_FOUND": MethodNotFound,
    # codes the official SDKs know beyond the table
    "INVALID_TOKEN": AuthError,
    "AUTHORIZATION_ERROR": AuthError,
    "WRONG_AUTH_TYPE": AuthError,
    "APPLICATION_NOT_FOUND": AuthError,
    "ERROR_OAUTH": AuthError,
    "METHOD_CONFIRM_WAITING": AccessDenied,
    "ALLOWED_ONLY_INTRANET_USER": AccessDenied,
    "PAYMENT_REQUIRED": PaymentRequired,
    "NOT_FOUND": NotFound,
    "ERROR_CORE": InvalidRequest,
    "ERROR_ARGUMENT": InvalidRequest,
    "ERROR_EVENT_NOT_FOUND": InvalidRequest,
    "ERROR_HANDLER_ALREADY_EXIST": AlreadyExists,
    # activity bindings (api-reference/crm/timeline/activities/binding/)
    "OWNER_NOT_FOUND": NotFound,
    "BINDING_NOT_FOUND": NotFound,
    "ACTIVITY_IS_ALREADY_BOUND": AlreadyExists,
    # OAuth server (settings/oauth/error-codes.md; phpSDK also handles wrong_client)
    "INVALID_GRANT": InvalidGrant,
    "INVALID_CLIENT": InvalidClient,
    "WRONG_CLIENT": InvalidClient,
    "INVALID_SCOPE": InsufficientScope,
}

# Legacy CRM methods answer `error: ""` and put the meaning in the description only.
_LEGACY_DESCRIPTIONS: tuple[tuple[str, type[B24Error]], ...] = (
    ("access denied", AccessDenied),
    ("not found", NotFound),
)


def error_class(code: str, description: str = "", status: int | None = None) -> type[B24Error]:
    """The class for a Bitrix24 error: by `code`; when the code is empty, by the description.

    An empty code with a 5xx status is a ServerError: a failed write's outcome is then unknown.
    """
    if code:
        return ERROR_CLASSES.get(code.upper(), B24Error)
    lowered = description.lower()
    for needle, cls in _LEGACY_DESCRIPTIONS:
        if needle in lowered:
            return cls
    if status is not None and status >= 500:
        return ServerError
    return InvalidRequest


def make_error(
    code: str,
    description: str = "",
    *,
    method: str | None = None,
    status: int | None = None,
    reset_at: float | None = None,
) -> B24Error:
    """Build the typed error for a Bitrix24 `error`/`error_description` pair."""
    error = error_class(code, description, status)(
        description, code=code, method=method, status=status
    )
    if isinstance(error, OperationTimeLimit):
        error.reset_at = reset_at
    return error


def outcome_unknown(
    description: str,
    *,
    method: str,
    commands: Sequence[tuple[str, str]],
    status: int | None = None,
) -> OutcomeUnknown:
    """An OutcomeUnknown naming what was sent, so the caller can reconcile it."""
    error = OutcomeUnknown(description, code="OUTCOME_UNKNOWN", method=method, status=status)
    error.commands = tuple(commands)
    return error


# -- hints: what a person should check, for every error the CLI and the page can show -----------

# Where Bitrix24 keeps inbound webhooks (https://apidocs.bitrix24.com/local-integrations/local-webhooks.html).
_WEBHOOK_PLACE = "Bitrix24: Developer resources > Other > Inbound webhook"
_NEW_KEY = (
    'make one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"  and set B24APP_SECRET_KEY to it (environment or .env)'
)

# Bitrix24 `error` codes whose hint differs from their class's.
_CODE_HINTS: dict[str, str] = {
    "NO_AUTH_FOUND": "the webhook code in B24_WEBHOOK_URL is wrong or the webhook was deleted: "
    f"copy the URL again from {_WEBHOOK_PLACE}",
    # What a portal answers to a webhook URL whose user or code it does not know
    # (rest/lib/apauth/auth.php:131-135 in Bitrix24's server code), or whose user is blocked.
    "INVALID_CREDENTIALS": "the webhook code in B24_WEBHOOK_URL is wrong, the webhook was "
    f"deleted or its user is blocked: copy the URL again from {_WEBHOOK_PLACE}",
    "WRONG_AUTH_TYPE": "this method does not take webhook calls: install b24app as an app and "
    "use --portal",
}

# Most specific class first: the first class the error is an instance of gives the hint.
_CLASS_HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (
        PortalBusy,
        "run the command again without --no-wait to wait for it (it shows who holds the "
        "portal); a run on another machine holds it through the shared Redis or database",
    ),
    (
        InvalidGrant,
        "the app's authorisation on this portal is gone: reinstall b24app from the "
        "Bitrix24 Market (Applications > My apps)",
    ),
    (
        InvalidClient,
        "check B24_CLIENT_ID and B24_CLIENT_SECRET against the app's registration "
        "in the Bitrix24 vendor area",
    ),
    (
        NotInstalled,
        "install b24app on the portal from the Bitrix24 Market, or use "
        "B24_WEBHOOK_URL; 'b24app --version' shows which database is read",
    ),
    (ExpiredToken, "the token expired and could not be refreshed: reinstall b24app on the portal"),
    (AuthError, f"check B24_WEBHOOK_URL: copy the webhook URL again from {_WEBHOOK_PLACE}"),
    (
        InsufficientScope,
        f"the webhook lacks the CRM scope: open it in {_WEBHOOK_PLACE}, tick "
        "'CRM (crm)' under permissions and save (for the app: reinstall it with the crm scope)",
    ),
    (
        AccessDenied,
        "the webhook's user may not read or change leads: make the webhook as a "
        "portal administrator, or grant the user rights in CRM > Settings > Access permissions",
    ),
    (
        PaymentRequired,
        "the portal's plan or the app's subscription has run out: renew it in "
        "Bitrix24 (Applications > My apps, or the portal's plan page)",
    ),
    (PortalDeleted, "the portal no longer exists: check the address in B24_WEBHOOK_URL"),
    (Overloaded, "Bitrix24 blocked REST calls on this portal; only Bitrix24 support can lift it"),
    (
        LimitExceeded,
        "the portal is throttling requests: wait a few minutes and run again "
        "(B24APP_PLAN=standard|enterprise sets the pace)",
    ),
    (
        MethodNotFound,
        "the portal does not offer this REST method: check its Bitrix24 edition "
        "and that the CRM is on",
    ),
    (
        TransportError,
        "check the portal address in B24_WEBHOOK_URL, the network and any proxy; "
        "'b24app -v ...' shows each attempt",
    ),
    (
        OutcomeUnknown,
        "a change may or may not have reached the portal: run the same command "
        "again (b24app checks before it repeats anything)",
    ),
    (
        ServerError,
        "the portal failed while answering: try again in a few minutes; "
        "'b24app -v ...' shows the retries",
    ),
    (
        UnexpectedResponse,
        "the answer was not Bitrix24's (a proxy, a login page?): check "
        "B24_WEBHOOK_URL points at the portal's /rest/ address",
    ),
    (NotFound, "the portal has no such record (deleted, or not visible to the webhook's user)"),
    (InvalidRequest, "the portal refused the request: 'b24app -v ...' shows the calls"),
)

# ConfigError: a hint for the first setting the message names.
_SETTING_HINTS: tuple[tuple[str, str], ...] = (
    ("B24APP_SECRET_KEY", _NEW_KEY),
    (
        "B24_WEBHOOK_URL",
        f"create an inbound webhook with the CRM scope ({_WEBHOOK_PLACE}) and set "
        "B24_WEBHOOK_URL to its URL (environment or .env)",
    ),
    (
        "B24_CLIENT_ID",
        "copy the app's client id and secret from its registration in the Bitrix24 "
        "vendor area into B24_CLIENT_ID and B24_CLIENT_SECRET",
    ),
    (
        "B24_CLIENT_SECRET",
        "copy the app's client id and secret from its registration in the "
        "Bitrix24 vendor area into B24_CLIENT_ID and B24_CLIENT_SECRET",
    ),
    (
        "B24APP_DATABASE_URL",
        "B24APP_DATABASE_URL takes sqlite:////path/b24app.db or "
        "postgresql+psycopg://user@host/db; unset, b24app uses its data directory",
    ),
    (
        "B24APP_PUBLIC_URL",
        "set B24APP_PUBLIC_URL to the https:// address Bitrix24 reaches the app at",
    ),
)


def hint(error: BaseException) -> str | None:
    """What a person should check for `error` (None when the message says it all)."""
    if isinstance(error, ConfigError):
        text = str(error)
        named = [(text.find(name), h) for name, h in _SETTING_HINTS if name in text]
        return min(named)[1] if named else None  # the setting named first
    code = (getattr(error, "code", "") or "").upper()
    if code in _CODE_HINTS:
        return _CODE_HINTS[code]
    for cls, text in _CLASS_HINTS:
        if isinstance(error, cls):
            return text
    if isinstance(error, B24Error):
        return "'b24app -v ...' shows the calls and the portal's answers"
    return None
