"""Dates as the portal stores and renders them: ISO 8601 with the portal's UTC offset.

Bitrix24 REST renders `datetime` fields as "2024-05-23T18:18:25+02:00" and `date` fields the
same way at midnight; an empty value reads as "".
https://apidocs.bitrix24.com/api-reference/data-types.html
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

PORTAL_TZ = timezone(timedelta(hours=3))


def iso_from_timestamp(ts: float) -> str:
    """A unix time as the portal renders datetimes."""
    return datetime.fromtimestamp(int(ts), UTC).astimezone(PORTAL_TZ).isoformat()


def parse_datetime(value: Any) -> str | None:
    """A datetime from REST input in stored form, or None when it is not a date."""
    moment = _parse(value)
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=PORTAL_TZ)
    return moment.astimezone(PORTAL_TZ).replace(microsecond=0).isoformat()


def parse_date(value: Any) -> str | None:
    """A date from REST input in stored form ("YYYY-MM-DD"), or None when it is not a date."""
    moment = _parse(value)
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(PORTAL_TZ)
    return moment.date().isoformat()


def render_date(stored: str | None) -> str:
    """A stored date as REST renders it (midnight, portal offset), "" when empty."""
    if not stored:
        return ""
    return datetime.combine(date.fromisoformat(stored), datetime.min.time(), PORTAL_TZ).isoformat()


def add_days(stored_iso: str, days: int) -> str:
    """The calendar date `days` after a stored datetime, in stored date form."""
    return (datetime.fromisoformat(stored_iso).date() + timedelta(days=days)).isoformat()


def _parse(value: Any) -> datetime | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    for pattern in ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            continue
    return None
