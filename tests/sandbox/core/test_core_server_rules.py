"""Rules of issue 13 read in Bitrix24's server code (yuliai/bitrix-modules), one test each."""

from __future__ import annotations

import pytest

from sandbox.errors import ApiError
from sandbox.portal import CallContext
from sandbox.query import parse_offset, parse_start


def test_legacy_access_denied_keeps_an_empty_code(portal) -> None:
    """crm/classes/general/restservice.php:1310-1322, :5886: `{"error": "", "error_description":
    "Access denied."}` with HTTP 400 for a user without CRM rights."""
    outsider = CallContext(user_id=3, is_admin=False, crm_access=False)
    with pytest.raises(ApiError) as caught:
        portal.dispatch("crm.lead.get", {"id": 1}, outsider)
    error = caught.value
    assert (error.body(), error.status) == (
        {"error": "", "error_description": "Access denied."},
        400,
    )


@pytest.mark.parametrize("bad", [0, "x"])
def test_legacy_invalid_id_text(call, bad) -> None:
    """crm/classes/general/restservice.php:1310-1313: "ID is not defined or invalid."."""
    for method in ("crm.lead.get", "crm.deal.get", "crm.contact.get", "crm.company.get"):
        error = call.error(method, id=bad)
        assert (error.code, error.description, error.status) == (
            "",
            "ID is not defined or invalid.",
            400,
        )


def test_unknown_and_read_only_fields_are_dropped_silently(call) -> None:
    """crm/classes/general/restservice.php:1870-1912 (internalizeFields): a field the entity
    does not have, and a read-only one (DATE_CREATE, LEAD_ID on a deal), is unset - no error."""
    lead_id = call.lead(NO_SUCH_FIELD="x", DATE_CREATE="2001-01-01T00:00:00+00:00", ID=777)
    lead = call("crm.lead.get", id=lead_id)
    deal_id = call("crm.deal.add", fields={"TITLE": "D", "LEAD_ID": lead_id, "WHATEVER": 1})
    assert call("crm.deal.update", id=deal_id, fields={"LEAD_ID": lead_id, "NOPE": 2}) is True

    assert "NO_SUCH_FIELD" not in lead
    assert lead["ID"] != "777" and not lead["DATE_CREATE"].startswith("2001")
    assert call("crm.deal.get", id=deal_id)["LEAD_ID"] is None


def test_multifield_key_is_absent_when_the_record_has_none(call) -> None:
    """crm/classes/general/restservice.php:3426-3476: FM keys are added per value found, so a
    lead without phones has no PHONE key at all - not [] - even when PHONE is selected."""
    bare = call.lead()
    phoned = call.lead(PHONE=[{"VALUE": "+4930123", "VALUE_TYPE": "WORK"}])

    got = call("crm.lead.get", id=bare)
    listed = call("crm.lead.list", filter={"@ID": [bare, phoned]}, select=["ID", "PHONE"])

    assert not {"PHONE", "EMAIL", "WEB", "IM"} & set(got)
    assert listed[0] == {"ID": str(bare)}
    assert listed[1]["PHONE"][0]["VALUE"] == "+4930123"
    assert isinstance(listed[1]["PHONE"][0]["ID"], str)


def test_start_rounds_down_to_a_page_of_fifty(call) -> None:
    """rest/classes/general/rest.php:987-1010 (getNavData: page = start / 50 + 1) and the D7
    controllers' rest/lib/engine/restmanager.php:202-210: start=75 reads rows 51-100 and next is
    100; crm.address.list takes the exact offset (ORM, restservice.php:14381)."""
    for _ in range(120):
        call.lead()
    page = call.full("crm.lead.list", select=["ID"], start=75)
    items = call.full("crm.item.list", entityTypeId=1, select=["id"], start=99)

    assert [r["ID"] for r in page.result] == [str(i) for i in range(51, 101)]
    assert (page.total, page.next) == (120, 100)
    assert [r["id"] for r in items.result["items"]][:1] == [51]
    assert (parse_start("49"), parse_start(50), parse_start(-1)) == (0, 50, -1)
    assert parse_offset("49") == 49
