"""Bitrix24 event deliveries: parse the bracket form, verify it came from the portal, route it.

Bitrix24 POSTs events form-encoded with PHP-style keys (`event=ONCRMLEADADD`,
`data[FIELDS][ID]=5`, `auth[member_id]=...`, `auth[application_token]=...`), once, with no retry
(https://apidocs.bitrix24.com/api-reference/events/index.html). A delivery is authentic when its
`auth[application_token]` equals the one stored at install for that `member_id`
(https://apidocs.bitrix24.com/api-reference/events/safe-event-handlers.html). Anything else in
`auth` (domain, endpoints, tokens) is the sender's word and is never used to reach a portal: work
triggered by an event calls the portal through the stored installation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

from b24app.errors import B24AppError
from b24app.store import installations as inst
from b24app.vocabulary import APP_INSTALL, APP_UNINSTALL, LEAD_EVENTS

log = logging.getLogger("b24app.events")


# A real delivery is a few hundred bytes and about 15 fields; anything far beyond is not Bitrix24.
MAX_BODY = 64 * 1024
MAX_FIELDS = 200
MAX_DEPTH = 6
MAX_KEY = 256

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")
_EVENT_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_MEMBER_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_REJECTING_STATUSES = frozenset({inst.UNINSTALLED, inst.DELETED})


class MalformedEvent(B24AppError):
    """The delivery is not a Bitrix24 event form (answered 400); the message names the field."""


class EventRejected(B24AppError):
    """The delivery is well-formed but not authentic for any installed portal (answered 401).

    `reason` is a short code for logs: missing_token, unknown_portal, uninstalled, token_mismatch.
    """

    def __init__(self, message: str, *, reason: str, member_id: str = "", event: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.member_id = member_id
        self.event = event


# -- the bracket form -------------------------------------------------------------------------


def form_pairs(body: bytes | str) -> list[tuple[str, str]]:
    """The (key, value) pairs of an application/x-www-form-urlencoded body; MalformedEvent when
    it is too large, not UTF-8 or has too many fields."""
    if len(body) > MAX_BODY:
        raise MalformedEvent(f"the body is larger than {MAX_BODY} bytes")
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedEvent("the body is not UTF-8") from None
    try:
        return parse_qsl(
            body,
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (ValueError, UnicodeDecodeError):
        raise MalformedEvent(f"the body is not a form of at most {MAX_FIELDS} fields") from None


def _key_path(key: str) -> list[str]:
    if len(key) > MAX_KEY:
        raise MalformedEvent(f"field name longer than {MAX_KEY} characters")
    match = _KEY.match(key)
    if match is None:
        raise MalformedEvent(f"malformed field name {key[:60]!r}")
    path = [match.group(1), *_PART.findall(match.group(2))]
    if len(path) > MAX_DEPTH:
        raise MalformedEvent(f"field {key[:60]!r} is nested deeper than {MAX_DEPTH} levels")
    return path


def nest_form(pairs: Iterable[tuple[Any, Any]]) -> dict[str, Any]:
    """PHP-style bracket keys as nested dicts: `data[FIELDS][ID]=5` -> {"data": {"FIELDS":
    {"ID": "5"}}}; `a[]` appends (keys "0", "1", ...). A repeated or conflicting key is an error,
    never last-wins, so no two readers of one body can disagree on a field."""
    tree: dict[str, Any] = {}
    for count, (key, value) in enumerate(pairs, start=1):
        if count > MAX_FIELDS:
            raise MalformedEvent(f"more than {MAX_FIELDS} fields")
        if not isinstance(key, str) or not isinstance(value, str):
            raise MalformedEvent("every field must be text")
        path = _key_path(key)
        node = tree
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            if part == "" and depth > 0:
                part = str(len(node))
            if last:
                if part in node:
                    raise MalformedEvent(f"field {key[:60]!r} is repeated or conflicts")
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise MalformedEvent(f"field {key[:60]!r} conflicts with a plain value")
                node = child
    return tree


def _pairs_of(form: Any) -> Iterable[tuple[Any, Any]]:
    if isinstance(form, bytes | str):
        return form_pairs(form)
    getlist = getattr(form, "getlist", None)
    if callable(getlist):  # a MultiDict: keep repeated keys so they are caught
        return list(form.items(multi=True))
    if isinstance(form, Mapping):
        return list(form.items())
    if isinstance(form, Iterable):
        pairs = []
        for item in form:
            if not isinstance(item, tuple) or len(item) != 2:
                raise MalformedEvent("the form must be (name, value) pairs")
            pairs.append(item)
        return pairs
    raise MalformedEvent(f"cannot read an event from {type(form).__name__}")


# -- the event --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One event delivery. `auth` (repr hidden) is the sender's `auth[...]` object as sent; only
    `member_id` and `application_token` are ever trusted, and only after `verify_event`."""

    name: str
    member_id: str
    application_token: str = field(repr=False)
    domain: str = ""
    lead_id: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict, compare=False)
    ts: int | None = None
    handler_id: int | None = None
    auth: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def clean(self) -> bool:
        """ONAPPUNINSTALL: the admin ticked "delete app data" (`data[CLEAN]=1`)."""
        return str(self.data.get("CLEAN", "0")).strip() == "1"

    def auth_value(self, name: str) -> str:
        """One text field of `auth[...]` ('' when absent)."""
        value = self.auth.get(name, "")
        return value if isinstance(value, str) else ""


def _optional_int(tree: Mapping[str, Any], name: str) -> int | None:
    raw = tree.get(name)
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise MalformedEvent(f"{name} must be a whole number")
    return int(raw)


def _lead_id(data: Mapping[str, Any]) -> int:
    fields = data.get("FIELDS")
    raw = fields.get("ID") if isinstance(fields, Mapping) else None
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise MalformedEvent("data[FIELDS][ID] must be the lead's id")
    lead_id = int(raw)
    if lead_id <= 0:
        raise MalformedEvent("data[FIELDS][ID] must be positive")
    return lead_id


def parse_event(form: Any) -> Event:
    """An Event from a delivery: the raw body (bytes/str), a MultiDict, a mapping or (name, value)
    pairs. MalformedEvent (never anything else) when it is not a Bitrix24 event form."""
    tree = nest_form(_pairs_of(form))
    name = tree.get("event")
    if not isinstance(name, str) or not _EVENT_NAME.match(name.strip().upper()):
        raise MalformedEvent("missing or malformed field 'event'")
    name = name.strip().upper()
    auth = tree.get("auth")
    if not isinstance(auth, dict):
        raise MalformedEvent("missing field 'auth'")
    member_id = auth.get("member_id")
    if not isinstance(member_id, str) or not _MEMBER_ID.match(member_id):
        raise MalformedEvent("missing or malformed field 'auth[member_id]'")
    token = auth.get("application_token", "")
    if not isinstance(token, str):
        raise MalformedEvent("malformed field 'auth[application_token]'")
    data = tree.get("data", {})
    if not isinstance(data, dict):
        raise MalformedEvent("field 'data' must hold fields")
    domain = auth.get("domain", "")
    return Event(
        name=name,
        member_id=member_id,
        application_token=token,
        domain=domain if isinstance(domain, str) else "",
        lead_id=_lead_id(data) if name in LEAD_EVENTS else None,
        data=data,
        ts=_optional_int(tree, "ts"),
        handler_id=_optional_int(tree, "event_handler_id"),
        auth=auth,
    )


def verify_event(store: inst.InstallationStore, event: Event) -> inst.Installation:
    """The installation the event authentically comes from; EventRejected when the token is
    missing, the portal unknown or uninstalled, or the token differs (compared in constant time
    by `InstallationStore.verify_application_token`).

    https://apidocs.bitrix24.com/api-reference/events/safe-event-handlers.html
    """

    def reject(message: str, reason: str) -> EventRejected:
        return EventRejected(message, reason=reason, member_id=event.member_id, event=event.name)

    if not event.application_token:
        raise reject("the event carries no application_token", "missing_token")
    installation = store.get_installation(event.member_id)
    if installation is None:
        raise reject("no installation for this portal", "unknown_portal")
    if installation.status in _REJECTING_STATUSES:
        raise reject(f"the app is {installation.status} on this portal", "uninstalled")
    if not store.verify_application_token(event.member_id, event.application_token):
        raise reject("application_token does not match", "token_mismatch")
    return installation


# -- what an authentic event does -------------------------------------------------------------


class LeadEvents(Protocol):
    """The queue's side the router needs (`b24app.jobs.Jobs`)."""

    def lead_event(self, member_id: str, lead_id: int, event: str) -> None:
        """Enqueue the auto-conversion check of one lead."""


class Purgeable(Protocol):
    """A per-portal store that can forget a portal (`PortalSettings`)."""

    def purge(self, member_id: str) -> None:
        """Delete everything stored for `member_id`."""


class JournalPurge(Protocol):
    """A portal's conversion journal, as far as an uninstall needs it (`Journal`)."""

    def purge(self) -> int:
        """Delete every job and lead state of the portal; how many jobs were deleted."""
        ...


@dataclass(frozen=True)
class Outcome:
    """What handling a delivery did: `action` is enqueued | uninstalled | installed | ignored."""

    action: str
    member_id: str
    event: str
    lead_id: int | None = None


@dataclass(frozen=True)
class EventRouter:
    """Verifies deliveries and does what each event means; `install` handles ONAPPINSTALL
    (`b24app.install.install_from_event` bound to its settings)."""

    store: inst.InstallationStore
    jobs: LeadEvents
    portal_settings: Purgeable
    install: Callable[[Event], object]
    journal: Callable[[str], JournalPurge]  # a portal's journal (`Services.journal`)

    def receive(self, form: Any) -> Outcome:
        """Parse, verify and handle one delivery. Raises MalformedEvent, EventRejected, or the
        installer's errors for ONAPPINSTALL; a duplicate delivery changes nothing new."""
        event = parse_event(form)
        if event.name == APP_INSTALL:
            # A (re)install brings a new application_token: it is proven against the OAuth
            # server instead of the stored token.
            self.install(event)
            return Outcome("installed", event.member_id, event.name)
        verify_event(self.store, event)
        return self.handle(event)

    def handle(self, event: Event) -> Outcome:
        """Do what a verified event means."""
        if event.name in LEAD_EVENTS and event.lead_id is not None:
            self.jobs.lead_event(event.member_id, event.lead_id, event.name)
            return Outcome("enqueued", event.member_id, event.name, event.lead_id)
        if event.name == APP_UNINSTALL:
            self.store.mark_uninstalled(event.member_id, clean=event.clean)
            if event.clean:
                self.portal_settings.purge(event.member_id)
                self.journal(event.member_id).purge()
            log.info(
                "portal %s uninstalled the app%s",
                event.member_id,
                " and asked to delete its data" if event.clean else "",
            )
            return Outcome("uninstalled", event.member_id, event.name)
        return Outcome("ignored", event.member_id, event.name)
