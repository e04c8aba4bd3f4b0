"""The Bitrix24 REST client: one per portal, on a `requests.Session`.

It keeps under the portal's limits (a mirrored leaky bucket at a rate learned from the portal's
503s, and an operating-time budget), treats a busy portal as a reason to slow down rather than a
failure, repeats what is safe to repeat, refreshes OAuth tokens once per portal, follows a renamed
portal, and turns every Bitrix24 error into a typed exception that keeps the code and description.
https://apidocs.bitrix24.com/settings/how-to-call-rest-api/general-principles.html
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import orjson
import requests
import urllib3.exceptions

from b24app.config import PLANS, RateLimit, Settings
from b24app.errors import (
    AuthError,
    B24Error,
    ExpiredToken,
    OperationTimeLimit,
    OutcomeUnknown,
    QueryLimitExceeded,
    ServerError,
    TransportError,
    UnexpectedResponse,
    UsageError,
    make_error,
    outcome_unknown,
)
from b24app.rest.auth import Auth, OAuthAuth, WebhookAuth
from b24app.rest.clock import SYSTEM_CLOCK, Clock
from b24app.rest.command import Command
from b24app.rest.encoding import command_string, to_json
from b24app.rest.listing import ListShape, iterate
from b24app.rest.oauth import OAuthServer
from b24app.rest.redact import install_log_redaction, redact, redact_data
from b24app.rest.response import BatchResult, Response, Time
from b24app.rest.retry import RetryPolicy, all_reads, is_read
from b24app.rest.throttle import OperatingBudget, RateBucket, make_bucket
from b24app.rest.tokens import MemoryTokens, Tokens, TokenSource
from b24app.vocabulary import MAX_BATCH

log = logging.getLogger("b24app.rest")
# Refreshes one call may make when its token keeps expiring (a storm of expiries; each refresh
# takes the pair the refusal named, so this bounds a loop, never a healthy call).
REFRESHES_PER_CALL = 3

_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")
_REF_KEY = re.compile(r"\$result(?:_[a-z]+)?\[([^\]]*)\]")
# Codes meaning "this token is not (or no longer) valid": worth one re-read of stored tokens.
_REJECTED = frozenset({"INVALID_TOKEN", "NO_AUTH_FOUND", "INVALID_CREDENTIALS"})
_REDIRECTS = (301, 302, 303, 307, 308)


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request surely never reached the portal (no connection was made)."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    reason: Any = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


class PortalClient:
    """Calls one portal: `call`, `batch`, `batch_many`, `iterate`; thread-safe.

    Build it with `from_webhook`, `from_settings`, `from_source` or `from_tokens`
    (`b24app.services.installation_client` for an installed portal).
    `requests_made` counts every HTTP request sent to the portal, `requests_refused` those the
    portal refused as over its rate limit.
    """

    def __init__(
        self,
        auth: Auth,
        *,
        rate: RateLimit | None = None,
        bucket: RateBucket | None = None,
        redis_url: str | None = None,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        clock: Clock = SYSTEM_CLOCK,
        retry: RetryPolicy | None = None,
        operating: OperatingBudget | None = None,
        rng: random.Random | None = None,
    ) -> None:
        install_log_redaction()
        self._auth = auth
        self._clock = clock
        self.rate_limit = rate or RateLimit(*PLANS["standard"])
        self._rng = rng or random.Random()
        self.bucket = bucket or make_bucket(
            self.rate_limit, key=auth.key, redis_url=redis_url, clock=clock, rng=self._rng
        )
        self._operating = operating or OperatingBudget(clock=clock)
        self._retry = retry or RetryPolicy()
        self.timeout = timeout
        self._session = session or requests.Session()
        self._lock = threading.Lock()
        self._requests = 0
        self._refused = 0

    def __repr__(self) -> str:
        return f"PortalClient({self._auth!r})"

    # -- construction --------------------------------------------------------------------------

    @staticmethod
    def _options(settings: Settings | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        if settings is not None:
            kwargs.setdefault("rate", settings.rate_limit)
            kwargs.setdefault("redis_url", settings.redis_url)
            kwargs.setdefault("timeout", settings.timeout)
        return kwargs

    @classmethod
    def from_webhook(
        cls, url: str, *, settings: Settings | None = None, **kwargs: Any
    ) -> PortalClient:
        """A client calling through the incoming webhook `url` (https://portal/rest/1/code/)."""
        return cls(WebhookAuth(url), **cls._options(settings, kwargs))

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> PortalClient:
        """A webhook client from B24_WEBHOOK_URL and the rate/timeout/Redis settings."""
        settings.require("B24_WEBHOOK_URL")
        return cls.from_webhook(settings.webhook_url or "", settings=settings, **kwargs)

    @classmethod
    def from_source(
        cls, source: TokenSource, *, settings: Settings | None = None, **kwargs: Any
    ) -> PortalClient:
        """An OAuth client whose tokens come from `source` (e.g. the installation store's
        `StoredTokens`, built by `b24app.services.installation_client`)."""
        clock = kwargs.get("clock", SYSTEM_CLOCK)
        return cls(OAuthAuth(source, clock=clock), **cls._options(settings, kwargs))

    @classmethod
    def from_tokens(
        cls,
        tokens: Tokens,
        *,
        oauth: OAuthServer,
        settings: Settings | None = None,
        on_rotate: Callable[[Tokens], None] | None = None,
        **kwargs: Any,
    ) -> PortalClient:
        """A client for tokens held in memory; `on_rotate(tokens)` runs before new tokens are
        used (persist them there)."""
        clock = kwargs.get("clock", SYSTEM_CLOCK)
        source = MemoryTokens(tokens, oauth, on_rotate=on_rotate)
        return cls(OAuthAuth(source, clock=clock), **cls._options(settings, kwargs))

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def __enter__(self) -> PortalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def requests_made(self) -> int:
        """HTTP requests sent to the portal so far (retries included)."""
        return self._requests

    @property
    def cache_key(self) -> str:
        """The portal's stable name (per-portal caches key on it)."""
        return self._auth.key

    @property
    def requests_refused(self) -> int:
        """Requests the portal refused with 503 QUERY_LIMIT_EXCEEDED so far (each sent again)."""
        return self._refused

    # -- public calls --------------------------------------------------------------------------

    def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        idempotent: bool | None = None,
    ) -> Response:
        """Call one REST method; raises the typed B24Error on failure.

        `idempotent=True` lets a write be repeated after an unknown outcome (e.g. setting a field
        to a fixed value); by default only reads (`is_read`) are.
        """
        _check_method(method)
        body = to_json(dict(params or {}))
        read = is_read(method) if idempotent is None else idempotent
        log.debug("call %s %s", method, _Preview(body))
        raw = self._post(method, body, read=read, sent=(("", method),), methods=(method,))
        response = Response.parse(method, raw)
        self._operating.observe(method, response.time)
        return response

    def download(self, url: str, *, limit: int = 50 * 1024 * 1024) -> tuple[str, bytes]:
        """A custom-field file by its `downloadUrl`, with this client's auth: (name, bytes).

        The URL names a REST controller (`.../rest/crm.controller.item.getFile/?...`); it is
        signed like a call of that method (a webhook's path, or `auth=` for an app). Counted as
        a request. Raises the typed B24Error when the portal answers with an error, and
        UnexpectedResponse for a file larger than `limit` bytes.
        """
        parts = urlsplit(url)
        method = next((p for p in reversed(parts.path.split("/")) if p), "")
        _check_method(method)
        self._wait_for_budget(method, (method,))
        slot = self.bucket.take()
        self._clock.sleep(slot.wait)
        signed = self._auth.sign(method)
        query = (
            parts.query + ("&" if parts.query and signed.extra else "") + urlencode(signed.extra)
        )
        try:
            http = self._session.get(
                f"{signed.url}/?{query}", timeout=self.timeout, allow_redirects=False, stream=True
            )
        except requests.RequestException as exc:
            self._count()
            text = redact(f"{type(exc).__name__}: {exc}", self._secrets())
            raise TransportError(text, code="TRANSPORT", method=method) from None
        self._count()
        with http:
            kind = http.headers.get("Content-Type", "").split(";")[0]
            if http.status_code != 200 or kind == "application/json":
                _, failure = self._parse(method, http)
                raise failure or UnexpectedResponse(
                    f"the portal answered HTTP {http.status_code} for a file",
                    method=method,
                    status=http.status_code,
                )
            data = b""
            for piece in http.iter_content(65536):
                data += piece
                if len(data) > limit:
                    raise UnexpectedResponse(
                        f"the file is larger than {limit // (1024 * 1024)} MB", method=method
                    )
        found = re.search(
            r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', http.headers.get("Content-Disposition", "")
        )
        name = unquote(found.group(1)) if found else f"file-{len(data)}"
        return name, data

    def batch(
        self, commands: Sequence[Command], *, halt: bool = False, idempotent: bool | None = None
    ) -> BatchResult:
        """Run up to 50 commands in one request; each command's result or typed error comes back
        side by side (never all-or-nothing). Later commands may use `Command.ref(...)`.

        https://apidocs.bitrix24.com/settings/how-to-call-rest-api/batch.html
        """
        commands = list(commands)
        if not commands:
            return BatchResult()
        _check_batch(commands)
        methods = {c.key: c.method for c in commands}
        read = all_reads(methods.values()) if idempotent is None else idempotent
        body = {
            "halt": 1 if halt else 0,
            "cmd": {c.key: command_string(c.method, c.params) for c in commands},
        }
        log.debug("batch %s", _Preview(body))
        raw = self._post(
            "batch", body, read=read, sent=tuple(methods.items()), methods=tuple(methods.values())
        )
        result = BatchResult.parse(raw, methods)
        for key, time in result.times.items():
            if key in methods:
                self._operating.observe(methods[key], time)
        for key, error in result.errors.items():
            if isinstance(error, OperationTimeLimit) and key in methods:
                self._operating.block(methods[key], error.reset_at)
        log.info(
            "batch: %s -> %d ok, %d failed, %d not run",
            _summary(commands),
            len(result.results),
            len(result.errors),
            len(result.skipped),
        )
        return result

    def batch_many(
        self, commands: Sequence[Command], *, halt: bool = False, idempotent: bool | None = None
    ) -> BatchResult:
        """Run any number of commands in as few batches as possible (50 per request).

        `$result[...]` references must point inside the same chunk of 50. A chunk whose outcome
        is unknown records an OutcomeUnknown for each of its commands and the rest still run;
        with `halt`, chunks after the first failure are not sent.
        """
        commands = list(commands)
        _check_keys(commands)
        for start in range(0, len(commands), MAX_BATCH):
            _check_refs_inside(commands[start : start + MAX_BATCH])
        merged = BatchResult()
        for start in range(0, len(commands), MAX_BATCH):
            chunk = commands[start : start + MAX_BATCH]
            try:
                result = self.batch(chunk, halt=halt, idempotent=idempotent)
            except OutcomeUnknown as exc:
                result = BatchResult(
                    errors={c.key: exc for c in chunk}, keys=tuple(c.key for c in chunk)
                )
            merged = merged.merged(result)
            if halt and result.errors:
                merged = merged.merged(
                    BatchResult(keys=tuple(c.key for c in commands[start + MAX_BATCH :]))
                )
                break
        return merged

    def iterate(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        shape: ListShape | None = None,
        max_pages: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every row of a list method, by ID keyset (`>ID`, `order ID ASC`, `start=-1`: no COUNT),
        50 chained pages per request (about 2,500 rows). `params` may hold `filter` and `select`.

        https://apidocs.bitrix24.com/settings/performance/huge-data.html
        """
        return iterate(self, method, params, shape=shape, max_pages=max_pages)

    # -- the request loop ----------------------------------------------------------------------

    def _count(self) -> None:
        with self._lock:
            self._requests += 1

    def _count_refusal(self) -> None:
        with self._lock:
            self._refused += 1

    def _wait_for_budget(self, method: str, methods: Sequence[str]) -> None:
        delay = self._operating.delay(methods)
        if delay <= 0:
            return
        if delay > self._retry.max_block_wait:
            error = OperationTimeLimit(
                f"blocked for another {delay:.0f} s by the operating-time limit",
                code="OPERATION_TIME_LIMIT",
                method=method,
            )
            error.reset_at = self._clock.now() + delay
            raise error
        log.warning("%s: waiting %.1f s for the operating-time budget", method, delay)
        self._clock.sleep(delay)

    def _secrets(self) -> tuple[str, ...]:
        return self._auth.secrets()

    def _post(
        self,
        method: str,
        body: Mapping[str, Any],
        *,
        read: bool,
        sent: tuple[tuple[str, str], ...],
        methods: Sequence[str],
    ) -> Mapping[str, Any]:
        failures = 0
        refreshes, reloaded = 0, False
        redirects = 0
        busy_since: float | None = None  # when the portal began refusing this request
        while True:
            self._wait_for_budget(method, methods)
            slot = self.bucket.take()
            self._clock.sleep(slot.wait)
            signed = self._auth.sign(method)
            try:
                http = self._session.post(
                    signed.url,
                    json={**body, **signed.extra},
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                self._count()
                text = redact(f"{type(exc).__name__}: {exc}", self._secrets())
                if not (read or _never_sent(exc)):
                    raise outcome_unknown(
                        f"{text}; the write may or may not have run", method=method, commands=sent
                    ) from None
                error: B24Error = TransportError(text, code="TRANSPORT", method=method)
                failures += 1
                if failures >= self._retry.attempts:
                    raise error from None
                self._backoff(method, failures, error)
                continue
            self._count()
            if http.status_code in _REDIRECTS and http.headers.get("Location"):
                redirects += 1
                if redirects > 3:
                    raise UnexpectedResponse(
                        "too many redirects", method=method, status=http.status_code
                    )
                self._auth.moved(http.headers["Location"])
                continue
            data, failure = self._parse(method, http)
            if failure is None:
                return data
            error = failure
            if isinstance(error, ExpiredToken) or (
                isinstance(error, AuthError) and error.code.upper() in _REJECTED
            ):
                # A few refreshes (each of the token this call was refused with: a pair that
                # lapses again while the call waits for its refresh is refreshed again), and one
                # re-read of tokens another worker rotated, per call.
                if (
                    isinstance(error, ExpiredToken)
                    and refreshes < REFRESHES_PER_CALL
                    and self._auth.expired(signed)
                ):
                    refreshes += 1
                    log.info("%s: token expired; refreshed", method)
                    continue
                if not reloaded and self._auth.rejected(signed):
                    reloaded = True
                    continue
                raise error
            if isinstance(error, QueryLimitExceeded):
                # The portal is busy, not failing: the refused request did not run, so even a
                # write is sent again (https://apidocs.bitrix24.com/limits.html), as many times
                # as it takes, at the rate the bucket learns from the refusal.
                self._count_refusal()
                self.bucket.refused(slot)
                now = self._clock.monotonic()
                busy_since = now if busy_since is None else busy_since
                if now - busy_since >= self._retry.max_busy_wait:
                    raise error
                log.info(
                    "%s: portal busy (QUERY_LIMIT_EXCEEDED); sent again when it has room", method
                )
                continue
            if isinstance(error, OperationTimeLimit):
                for name in methods:
                    self._operating.block(name, error.reset_at)
            elif _server_failure(error):
                if not read:
                    raise outcome_unknown(
                        f"the portal answered {error.code or 'HTTP'} {http.status_code}; the "
                        "write may or may not have run",
                        method=method,
                        commands=sent,
                        status=http.status_code,
                    ) from error
            else:
                raise error
            failures += 1
            if failures >= self._retry.attempts:
                raise error
            self._backoff(method, failures, error)

    def _backoff(self, method: str, failures: int, error: B24Error) -> None:
        delay = (
            0.0 if isinstance(error, OperationTimeLimit) else self._retry.delay(failures, self._rng)
        )
        log.warning(
            "%s: %s; retry %d in %.2f s",
            method,
            error.code or type(error).__name__,
            failures,
            delay,
        )
        self._clock.sleep(delay)

    def _parse(
        self, method: str, http: requests.Response
    ) -> tuple[Mapping[str, Any], B24Error | None]:
        try:
            data = orjson.loads(http.content)  # a batch answer is large; orjson parses 2-3x faster
        except (ValueError, TypeError):
            data = None
        if not isinstance(data, Mapping):
            kind = http.headers.get("Content-Type", "no content type").split(";")[0]
            return {}, UnexpectedResponse(
                f"the portal answered {kind}, not Bitrix24 JSON",
                code="BAD_RESPONSE",
                method=method,
                status=http.status_code,
            )
        if "error" in data and "result" not in data:
            time = Time.parse(data.get("time"))
            return data, make_error(
                str(data.get("error") or ""),
                redact(str(data.get("error_description") or ""), self._secrets()),
                method=method,
                status=http.status_code,
                reset_at=time.operating_reset_at if time else None,
            )
        if http.status_code >= 500:
            return data, ServerError(
                "a 5xx answer without an error code", method=method, status=http.status_code
            )
        return data, None


def _server_failure(error: B24Error) -> bool:
    """True when the portal (or a proxy before it) failed while the request may have run."""
    if isinstance(error, ServerError):
        return True
    return isinstance(error, UnexpectedResponse) and (
        error.status is None or error.status >= 500 or error.status < 300
    )


def _check_method(method: str) -> None:
    if not method or not re.fullmatch(r"[A-Za-z0-9_.]+", method):
        raise UsageError(f"not a REST method name: {method!r}")


def _check_keys(commands: Sequence[Command]) -> None:
    seen: set[str] = set()
    for command in commands:
        if not _KEY.match(command.key):
            raise UsageError(f"batch key {command.key!r}: use letters, digits, _ and - only")
        if command.key in seen:
            raise UsageError(f"batch key {command.key!r} is used twice")
        seen.add(command.key)
        _check_method(command.method)
        if command.method.lower() == "batch":
            raise UsageError("a batch cannot contain another batch")


def _check_batch(commands: Sequence[Command]) -> None:
    if len(commands) > MAX_BATCH:
        raise UsageError(
            f"a batch holds at most {MAX_BATCH} commands (got {len(commands)}); use batch_many"
        )
    _check_keys(commands)


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield from _REF_KEY.findall(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _refs(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _refs(item)


def _check_refs_inside(chunk: Sequence[Command]) -> None:
    keys = {c.key for c in chunk}
    for command in chunk:
        for ref in _refs(command.params):
            if ref not in keys:
                raise UsageError(
                    f"command {command.key!r} refers to $result[{ref}], which is not "
                    "in the same batch of 50"
                )


def _summary(commands: Sequence[Command]) -> str:
    counts: dict[str, int] = {}
    for command in commands:
        counts[command.method] = counts.get(command.method, 0) + 1
    return ", ".join(f"{m} x{n}" for m, n in counts.items())


class _Preview:
    """A request body for a DEBUG line, redacted and cut only if the line is written.

    Built eagerly it cost a worker about 4% of its CPU (a JSON dump and a redaction pass of every
    batch) for a line that is dropped at INFO (`python -m bench.scale --portals 10 --workers 1`
    under py-spy --gil).
    """

    __slots__ = ("body",)

    def __init__(self, body: Any) -> None:
        self.body = body

    def __str__(self) -> str:
        text = json.dumps(redact_data(self.body), ensure_ascii=False, default=str)
        return text if len(text) <= 2000 else text[:2000] + "..."
