"""Others' requests counted off the portal's newest leads (b24app/crm/neighbours.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from b24app.crm.neighbours import NEWEST_KEY, evidence, newest_command

AT = dt.datetime(2026, 12, 4, 17, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=3)))


def _lead(lead_id: int, seconds: int) -> dict[str, str]:
    return {"ID": str(lead_id), "DATE_CREATE": (AT + dt.timedelta(seconds=seconds)).isoformat()}


def test_the_newest_leads_are_one_page_of_ids_and_creation_times() -> None:
    command = newest_command()
    assert (command.key, command.method) == (NEWEST_KEY, "crm.lead.list")
    assert command.params == {
        "order": {"ID": "DESC"},
        "select": ["ID", "DATE_CREATE"],
        "start": -1,
    }


def test_every_lead_known_bounds_the_requests_since_it_was_created() -> None:
    # An import: leads 101-2,100 in the three seconds from AT, read 6 s after AT. The run knows
    # lead 101 (its event came first); the newest page ends at 2,051.
    newest = [_lead(i, 2) for i in range(2100, 2050, -1)]
    now = AT.timestamp() + 6
    found = evidence(newest, [_lead(101, 0), _lead(102, 0)], now)
    # one pair per creation second, from its smallest id, counted from the end of the second
    # (DATE_CREATE is truncated): 2,000 leads within 5 s (40 requests), 50 within 3 s
    assert found == [(40.0, 5.0), (1.0, 3.0)]


def test_unreadable_rows_are_left_out_and_nothing_readable_is_no_evidence() -> None:
    naive = {"ID": "7", "DATE_CREATE": "2026-12-04T17:00:00"}  # no offset: means nothing
    assert evidence([naive, {"ID": "x", "DATE_CREATE": AT.isoformat()}, {"ID": "9"}], [], 0) == []
    assert evidence([], [], AT.timestamp()) == []
    assert evidence([_lead(50, 0)], [], AT.timestamp() + 3) == [(pytest.approx(0.02), 2.0)]
