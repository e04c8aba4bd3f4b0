"""The app's event handlers on a portal, bound idempotently, and what `app.info` says.

Bitrix24 removes an app's handlers when the app is reinstalled or updated, and answers
`ERROR_HANDLER_ALREADY_EXIST` to a second identical `event.bind`. So the installer lists what is
bound (`event.get`), binds only what is missing, and takes "already exists" as success: running
it again - a reinstall, an update, a duplicate install request - changes nothing.
https://apidocs.bitrix24.com/api-reference/events/event-bind.html
https://apidocs.bitrix24.com/api-reference/events/event-get.html
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from b24app.errors import AlreadyExists, UnexpectedResponse
from b24app.rest.command import Command
from b24app.rest.portal import Portal


@dataclass(frozen=True)
class Bindings:
    """Which of the wanted events were bound now and which were already bound to the handler."""

    handler: str
    bound: tuple[str, ...] = ()
    present: tuple[str, ...] = ()


def bound_events(portal: Portal, handler: str) -> set[str]:
    """The events bound online to exactly `handler` (`event.get`), upper-cased."""
    rows = portal.call("event.get", idempotent=True).result
    if not isinstance(rows, list):
        raise UnexpectedResponse("event.get did not return a list", code="EVENT_GET")
    found = set()
    for row in rows:
        if not isinstance(row, Mapping) or str(row.get("offline", "0")) not in ("0", ""):
            continue
        if str(row.get("handler", "")) == handler:
            found.add(str(row.get("event", "")).upper())
    return found


def ensure_bindings(portal: Portal, handler: str, events: Sequence[str]) -> Bindings:
    """Bind each of `events` to `handler` unless it already is (one `event.get`, then one batch of
    `event.bind` for the missing ones); raises the first error other than "already exists"."""
    wanted = [event.upper() for event in dict.fromkeys(events)]
    present = bound_events(portal, handler)
    missing = [event for event in wanted if event not in present]
    if not missing:
        return Bindings(handler=handler, present=tuple(wanted))
    commands = [
        Command(f"bind{i}", "event.bind", {"event": event, "handler": handler})
        for i, event in enumerate(missing)
    ]
    result = portal.batch(commands, idempotent=True)
    bound, also_present = [], []
    for command, event in zip(commands, missing, strict=True):
        error = result.errors.get(command.key)
        if error is None and command.key in result.results:
            bound.append(event)
        elif isinstance(error, AlreadyExists):
            also_present.append(event)
        elif error is not None:
            raise error
        else:
            raise UnexpectedResponse(f"event.bind {event} was not run", code="EVENT_BIND")
    return Bindings(
        handler=handler,
        bound=tuple(bound),
        present=tuple(e for e in wanted if e in present or e in also_present),
    )


def app_info(portal: Portal) -> dict[str, Any]:
    """The portal's `app.info` result (ID, CODE, VERSION, STATUS, INSTALLED, PAYMENT_EXPIRED, ...).

    https://apidocs.bitrix24.com/api-reference/common/system/app-info.html
    """
    result = portal.call("app.info", idempotent=True).result
    if not isinstance(result, Mapping):
        raise UnexpectedResponse("app.info did not return an object", code="APP_INFO")
    return dict(result)
