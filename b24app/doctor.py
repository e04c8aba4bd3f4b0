"""`b24app doctor`: know before converting whether a portal behaves as b24app expects.

A read-only probe: at most three requests to the portal (two batches, and one single call when
the token lacks some scope), plus one GET of the app's public URL for the Market app. Nothing is
written to the CRM. The readings live in `b24app.crm.checkup`; this module sends the requests,
turns a failed request into the one line that says what to fix, and records which side of each
docs/code disagreement the portal showed (`b24app.store.portal_variants`).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from b24app import messages as msg
from b24app.crm import checkup
from b24app.crm.checkup import FAIL, OK, UNKNOWN, WARN, Answers, Check, Variant
from b24app.errors import (
    AccessDenied,
    AuthError,
    B24Error,
    PaymentRequired,
    PortalDeleted,
    TransportError,
    hint,
)
from b24app.install import EVENTS_PATH
from b24app.rest.client import PortalClient
from b24app.rest.encoding import command_string
from b24app.rest.response import BatchResult
from b24app.rest.retry import RetryPolicy
from b24app.vocabulary import BOUND_EVENTS

# A dead or black-holed host fails within 5 s, process start included: 1 s to connect,
# twice; a live portal may take 10 s to answer (requests takes a (connect, read) pair).
TIMEOUT: Any = (1.0, 10.0)
RETRY = RetryPolicy(attempts=2, base=0.2, cap=0.4, max_block_wait=0.0)
PUBLIC_URL_TIMEOUT = 3.0
HEALTH_PATH = "/healthz"

HttpGet = Callable[..., requests.Response]


@dataclass(frozen=True)
class Report:
    """The doctor's findings for one portal."""

    portal: str
    checks: tuple[Check, ...]
    variants: tuple[Variant, ...] = ()
    requests: int = 0
    other_requests: int = 0
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        """True when any check failed (the CLI exits 3)."""
        return any(check.status == FAIL for check in self.checks)

    @property
    def warned(self) -> bool:
        """True when any check warned."""
        return any(check.status == WARN for check in self.checks)

    def variant(self, name: str) -> str:
        """The observed value of variant `name` ("unknown" when not probed)."""
        return next((v.value for v in self.variants if v.name == name), UNKNOWN)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of `b24app doctor --json`."""
        return {
            "portal": self.portal,
            "ok": not self.failed,
            "checks": [check.to_dict() for check in self.checks],
            "variants": {v.name: v.value for v in self.variants},
            "variant_details": [v.to_dict() for v in self.variants],
            "requests": {"portal": self.requests, "other": self.other_requests},
            "seconds": round(self.seconds, 3),
        }


def examine(
    client: PortalClient,
    *,
    display: str,
    app: bool,
    configured_plan: str,
    public_url: str | None = None,
    language: str = "en",
    http_get: HttpGet = requests.get,
) -> Report:
    """Probe the portal behind `client`; `app`: through the Market app's tokens (adds the bound
    events and the public URL)."""
    started = time.monotonic()
    before = client.requests_made
    lines: list[Check] = []
    variants: list[Variant] = []
    others = 0

    def report() -> Report:
        return Report(
            portal=display,
            checks=tuple(lines),
            variants=tuple(variants),
            requests=client.requests_made - before,
            other_requests=others,
            seconds=time.monotonic() - started,
        )

    first_commands = checkup.first_commands(app=app, language=language)
    try:
        first = client.batch(first_commands, idempotent=True)
    except B24Error as exc:
        lines.append(_refused(exc, app=app))
        return report()
    answers = Answers(first.results, first.errors, first.times)
    lines.append(Check("reach", OK, msg.DOCTOR_REACHED.format(portal=display)))
    lines.append(checkup.credentials(answers, app=app))
    license_name = checkup.license_of(answers)
    for check in (
        checkup.scopes(answers, app=app),
        checkup.admin(answers),
        checkup.mode(answers, license_name),
    ):
        lines.append(check)
        if check.status == FAIL:  # the checks below need this one: one clear line, not many
            return report()
    lines += [
        checkup.methods(answers),
        checkup.stages(answers),
        checkup.pipelines(answers),
        checkup.custom_fields(answers, language),
        checkup.plan(answers, configured_plan),
    ]

    second, raw_second, second_methods = _second_batch(client, checkup.lead_ids(answers))
    first_methods = {c.key: c.method for c in first_commands}
    timed = [(answers, first_methods)] + ([(second, second_methods)] if second else [])
    lines.append(checkup.operating(timed))

    granted = checkup.granted_scopes(answers) or ()
    probed = checkup.status_probe(granted)
    status, error_code = _status_of(client, probed) if probed else (None, "")
    variants += [
        checkup.productrow_owner_arrays(second),
        checkup.batch_sections(raw_second),
        checkup.error_statuses(status, error_code, probed),
    ]
    if not app:
        variants.append(checkup.app_info_webhook(answers))

    if app:
        handler = (public_url or "").rstrip("/") + EVENTS_PATH
        lines.append(checkup.events(answers, handler, BOUND_EVENTS))
        lines.append(public_url_check(public_url, http_get))
        others += 1 if public_url else 0
    return report()


def recordable(report: Report) -> dict[str, tuple[str, str]]:
    """The definite variants of a report, as `PortalVariants.record` takes them."""
    return {v.name: (v.value, v.detail) for v in report.variants if v.value != UNKNOWN}


def _second_batch(
    client: PortalClient, lead_ids: list[int]
) -> tuple[Answers | None, Mapping[str, Any] | None, dict[str, str]]:
    """The batch keyed 0 and 1, sent raw so the shape of its sections stays visible."""
    commands = checkup.second_commands(lead_ids)
    methods = {c.key: c.method for c in commands}
    body = {"halt": 0, "cmd": {c.key: command_string(c.method, c.params) for c in commands}}
    try:
        raw = client.call("batch", body, idempotent=True).result
    except B24Error:
        return None, None, methods
    raw = raw if isinstance(raw, Mapping) else {}
    parsed = BatchResult.parse({"result": raw}, methods)
    return Answers(parsed.results, parsed.errors, parsed.times), raw, methods


def _status_of(client: PortalClient, method: str) -> tuple[int | None, str]:
    """(HTTP status, error code) of the answer to `method`, which lacks its scope."""
    try:
        client.call(method, idempotent=True)
    except B24Error as exc:
        return exc.status, exc.code
    return None, ""


def _refused(error: B24Error, *, app: bool) -> Check:
    """The one line for a first request that failed as a whole."""
    code = error.code or type(error).__name__
    if isinstance(error, TransportError):
        return Check(
            "reach",
            FAIL,
            msg.DOCTOR_UNREACHABLE.format(reason=_reason(error)),
            fix=msg.DOCTOR_UNREACHABLE_FIX,
        )
    if isinstance(error, PortalDeleted):
        return Check("reach", FAIL, msg.DOCTOR_DELETED, fix=msg.DOCTOR_DELETED_FIX)
    if isinstance(error, PaymentRequired):
        return Check("credentials", FAIL, msg.DOCTOR_UNPAID, fix=msg.DOCTOR_UNPAID_FIX)
    if isinstance(error, AuthError | AccessDenied):
        refused = msg.DOCTOR_REFUSED_TOKEN if app else msg.DOCTOR_REFUSED_WEBHOOK
        default = msg.DOCTOR_REINSTALL if app else msg.DOCTOR_NEW_WEBHOOK
        return Check(
            "credentials",
            FAIL,
            refused.format(code=code),
            fix=hint(error) or default,
            data={"error": code, "status": error.status},
        )
    failed = msg.DOCTOR_PORTAL_FAILED_STATUS if error.status else msg.DOCTOR_PORTAL_FAILED
    return Check(
        "reach",
        FAIL,
        failed.format(code=code, status=error.status),
        fix=msg.DOCTOR_TRY_AGAIN,
        data={"error": code, "status": error.status},
    )


def _reason(error: TransportError) -> str:
    text = str(error)
    for marker in ("Connection refused", "Name or service not known", "timed out", "No route"):
        if marker.lower() in text.lower():
            return marker.lower()
    return error.description or "no answer"


def public_url_check(url: str | None, http_get: HttpGet = requests.get) -> Check:
    """B24APP_PUBLIC_URL answers (`/healthz`), at an address Bitrix24's servers can reach."""
    if not url:
        return Check("public_url", FAIL, msg.DOCTOR_NO_PUBLIC_URL, fix=msg.DOCTOR_NO_PUBLIC_URL_FIX)
    target = url.rstrip("/") + HEALTH_PATH
    try:
        answer = http_get(target, timeout=PUBLIC_URL_TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        return Check(
            "public_url",
            FAIL,
            msg.DOCTOR_URL_SILENT.format(url=url, error=type(exc).__name__),
            fix=msg.DOCTOR_URL_SILENT_FIX,
        )
    if answer.status_code != 200:
        return Check(
            "public_url",
            FAIL,
            msg.DOCTOR_URL_STATUS.format(url=target, status=answer.status_code),
            fix=msg.DOCTOR_URL_STATUS_FIX,
        )
    if _local(urlsplit(url).hostname or ""):
        return Check(
            "public_url",
            WARN,
            msg.DOCTOR_URL_LOCAL.format(url=url),
            fix=msg.DOCTOR_URL_LOCAL_FIX,
        )
    return Check("public_url", OK, msg.DOCTOR_URL_OK.format(url=url, path=HEALTH_PATH))


def _local(host: str) -> bool:
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local
