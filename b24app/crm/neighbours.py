"""What others have just spent of the portal's request budget, counted off its newest leads.

Bitrix24 counts every request to a portal in one leaky bucket shared by every app, webhook and
script on it, and never tells a client its level (https://apidocs.bitrix24.com/limits.html). An
import just before an automatic run has filled it: the run's first requests would draw a 503.
The lead-add events do not say so in time - they are delivered after the import, one by one
(the sandbox delivered 20-45 a second while the import added 800; docs/figures.md) - but the
leads themselves do: a lead's ID is an auto-increment key, so ids grow in order of creation, and
DATE_CREATE is set to the time of the add (crm/lib/lead.php:71-73 with
crm/lib/Model/FieldRepository.php:57-63 and :66-85 in yuliai/bitrix-modules).

So the facts request of a run that reads leads by id carries one more command, the newest leads
(`newest_command`: ids and creation times, one page). For every lead the run knows (those read
in that request, and the newest page itself), the leads with a larger id were all added at or
after its creation: at least (newest id - its id + 1) / 50 requests, since a batch carries at
most 50 commands (https://apidocs.bitrix24.com/settings/how-to-call-rest-api/batch.html), made
within the last `age` seconds: the portal's clock at the answer minus the end of the second
DATE_CREATE names (it is truncated to the second: counting from its end errs by less than a
second of drain, toward waiting). `evidence` turns that into (requests, age) pairs; the client's
bucket adds the most that is left of them now (`rest.adaptive.at_least`).

b24app never adds leads, so none of these requests is its own. Leads added by web forms, the UI
or a CSV import in the browser cost no REST request: the estimate is then pessimistic, by at most
that many requests of burst (the run starts at the plan's drain rate instead of at once).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from b24app.rest.command import Command
from b24app.vocabulary import MAX_BATCH

NEWEST_KEY = "newest"


def newest_command() -> Command:
    """The portal's newest leads, newest first: one page of ids and creation times (no count)."""
    return Command(
        NEWEST_KEY,
        "crm.lead.list",
        {"order": {"ID": "DESC"}, "select": ["ID", "DATE_CREATE"], "start": -1},
    )


def _created(row: Mapping[str, Any]) -> tuple[int, float] | None:
    """A row's (id, the end of DATE_CREATE's second as a unix time); None when unreadable."""
    try:
        lead_id = int(row["ID"])
        created = dt.datetime.fromisoformat(str(row["DATE_CREATE"]))
    except (KeyError, TypeError, ValueError):
        return None
    if created.tzinfo is None:  # Bitrix24 always sends an offset; without one it means nothing
        return None
    return lead_id, created.timestamp() + 1.0  # the end of the second it names


def evidence(
    newest: Iterable[Mapping[str, Any]], known: Iterable[Mapping[str, Any]], portal_now: float
) -> list[tuple[float, float]]:
    """(requests, age) pairs: for each lead of `newest` (the newest page) and `known` (leads read
    beside it), the requests that added it and every later lead, made at most `age` seconds
    before `portal_now` (the portal's clock when it answered). [] when nothing is readable."""
    anchors = [found for row in (*newest, *known) if (found := _created(row)) is not None]
    if not anchors:
        return []
    top = max(lead_id for lead_id, _ in anchors)
    first: dict[float, int] = {}  # creation second -> the smallest id created in it
    for lead_id, created in anchors:
        first[created] = min(lead_id, first.get(created, lead_id))
    return [
        ((top - lead_id + 1) / MAX_BATCH, portal_now - created)
        for created, lead_id in sorted(first.items())
    ]
