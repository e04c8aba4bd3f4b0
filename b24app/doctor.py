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
    lines.append(Check("reach", OK, f"the portal answered ({display})"))
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
            f"cannot reach the portal ({_reason(error)})",
            fix="check the portal address (B24_WEBHOOK_URL, or the installation's domain), "
            "the network and any proxy",
        )
    if isinstance(error, PortalDeleted):
        return Check("reach", FAIL, "the portal was deleted", fix="nothing to convert there")
    if isinstance(error, PaymentRequired):
        return Check(
            "credentials",
            FAIL,
            "the portal refused the app: its payment has expired",
            fix="renew the app's subscription in the Bitrix24 Market",
        )
    if isinstance(error, AuthError | AccessDenied):
        kind = "the app's token" if app else "the webhook"
        default = (
            "reinstall the app from the Bitrix24 Market"
            if app
            else "create an inbound webhook with the CRM (crm) permission and set "
            "B24_WEBHOOK_URL to its URL"
        )
        return Check(
            "credentials",
            FAIL,
            f"the portal refused {kind} ({code})",
            fix=hint(error) or default,
            data={"error": code, "status": error.status},
        )
    return Check(
        "reach",
        FAIL,
        f"the portal failed ({code}{f', HTTP {error.status}' if error.status else ''})",
        fix="try again in a minute; if it persists, the portal is having trouble",
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
        return Check(
            "public_url",
            FAIL,
            "B24APP_PUBLIC_URL is not set: Bitrix24 has nowhere to send events",
            fix="set B24APP_PUBLIC_URL to the https address where Bitrix24 reaches the app",
        )
    target = url.rstrip("/") + HEALTH_PATH
    try:
        answer = http_get(target, timeout=PUBLIC_URL_TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        return Check(
            "public_url",
            FAIL,
            f"{url} does not answer ({type(exc).__name__})",
            fix="start the web app (gunicorn 'handlers:create_app()') and open its address "
            "to the internet",
        )
    if answer.status_code != 200:
        return Check(
            "public_url",
            FAIL,
            f"{target} answered HTTP {answer.status_code}, not 200",
            fix="B24APP_PUBLIC_URL must point at this app (its /healthz answers 200)",
        )
    if _local(urlsplit(url).hostname or ""):
        return Check(
            "public_url",
            WARN,
            f"{url} answers here, but it is a loopback or private address Bitrix24's servers "
            "cannot reach",
            fix="use a public https address (a tunnel while developing)",
        )
    return Check("public_url", OK, f"{url} answers ({HEALTH_PATH} 200)")


def _local(host: str) -> bool:
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local
