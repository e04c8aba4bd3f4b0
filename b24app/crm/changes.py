"""What changed on a portal since a moment, for the sweep that catches leads whose events were
lost: active leads modified since then, and the portal's offline event queue where the app may
read it (admin installs, app auth).

https://apidocs.bitrix24.com/api-reference/crm/leads/crm-lead-list.html
https://apidocs.bitrix24.com/api-reference/events/offline-events.html
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from b24app.crm import mapping
from b24app.crm.facts import PortalFacts
from b24app.crm.mapping import link_id
from b24app.crm.reader import LeadStream
from b24app.errors import (
    AccessDenied,
    AlreadyExists,
    AuthError,
    B24Error,
    InvalidRequest,
    MethodNotFound,
)
from b24app.rest.listing import Listing
from b24app.rest.portal import Portal
from b24app.vocabulary import LEAD_EVENTS

log = logging.getLogger("b24app.crm")

OFFLINE_PAGE = 50
OFFLINE_PAGES = 20  # at most 1000 queued records per sweep; the rest wait for the next one
# Where the portal does not grant offline events: not an admin, not app auth, no such method.
_UNAVAILABLE = (AccessDenied, MethodNotFound, InvalidRequest, AuthError)


def _unavailable(exc: B24Error) -> bool:
    """Offline events are not granted here (as opposed to credentials that stopped working)."""
    return not isinstance(exc, AuthError) or (exc.code or "").upper() == "WRONG_AUTH_TYPE"


def changed_active_leads(
    portal: Portal, facts: PortalFacts, since: dt.datetime
) -> list[dict[str, Any]]:
    """Active leads (any active stage) modified at or after `since`, oldest id first."""
    listing = Listing(
        "l",
        "crm.lead.list",
        {
            "@STATUS_ID": list(facts.active_lead_stages),
            ">=DATE_MODIFY": since.astimezone(dt.UTC).isoformat(timespec="seconds"),
        },
        tuple(mapping.LEAD_SELECT),
    )
    return [lead for chunk in LeadStream(portal, iter([listing])).chunks() for lead in chunk]


@dataclass(frozen=True)
class OfflineLeads:
    """Lead ids from the offline queue, reserved under `process_id` until `clear_offline`."""

    process_id: str | None
    lead_ids: tuple[int, ...]


def bind_offline_lead_events(portal: Portal) -> bool:
    """Make the portal queue lead add/update events offline; False where it does not allow it.

    https://apidocs.bitrix24.com/api-reference/events/event-bind.html (event_type=offline)
    """
    try:
        rows = portal.call("event.get").result or []
        bound = {
            str(row.get("event", "")).upper()
            for row in rows
            if isinstance(row, Mapping) and str(row.get("offline", "0")) not in ("0", "")
        }
        for event in LEAD_EVENTS:
            if event in bound:
                continue
            with contextlib.suppress(AlreadyExists):  # bound meanwhile: fine
                portal.call("event.bind", {"event": event, "event_type": "offline"})
    except _UNAVAILABLE as exc:
        if not _unavailable(exc):
            raise
        log.info("offline events unavailable (%s); the sweep lists changed leads", exc.code)
        return False
    return True


def take_offline_leads(portal: Portal) -> OfflineLeads | None:
    """Reserve the queued offline lead events and return their lead ids; None where the portal
    does not grant offline events. https://apidocs.bitrix24.com/api-reference/events/event-offline-get.html
    """
    process_id: str | None = None
    lead_ids: dict[int, None] = {}
    try:
        for _ in range(OFFLINE_PAGES):
            params: dict[str, Any] = {"clear": 0, "limit": OFFLINE_PAGE}
            if process_id:
                params["process_id"] = process_id
            result = portal.call("event.offline.get", params).result or {}
            process_id = str(result.get("process_id") or process_id or "") or None
            events = result.get("events") or []
            for record in events:
                lead_id = _lead_of(record)
                if lead_id is not None:
                    lead_ids[lead_id] = None
            if len(events) < OFFLINE_PAGE:
                break
    except _UNAVAILABLE as exc:
        if not _unavailable(exc):
            raise
        log.info("offline events unavailable (%s)", exc.code)
        return None
    return OfflineLeads(process_id=process_id, lead_ids=tuple(lead_ids))


def clear_offline(portal: Portal, process_id: str | None) -> None:
    """Delete the records reserved under `process_id` (they were handled)."""
    if not process_id:
        return
    try:
        portal.call("event.offline.clear", {"process_id": process_id})
    except B24Error as exc:  # reserved records expire on the portal's side anyway
        log.warning("event.offline.clear failed (%s); the records stay reserved", exc.code)


def _lead_of(record: Any) -> int | None:
    if not isinstance(record, Mapping):
        return None
    if str(record.get("EVENT_NAME", "")).upper() not in LEAD_EVENTS:
        return None
    data = record.get("EVENT_DATA")
    fields = data.get("FIELDS") if isinstance(data, Mapping) else None
    return link_id(fields.get("ID")) if isinstance(fields, Mapping) else None
