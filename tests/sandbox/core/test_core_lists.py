"""Every *.list: 50 per page, start/total/next, start=-1, filter prefixes, order, select."""

from __future__ import annotations

import pytest

from sandbox import query
from sandbox.store import Store


@pytest.fixture
def leads(call):
    """120 leads: OPPORTUNITY 100 * n, every third IN_PROCESS, names with a pattern."""
    ids = []
    for n in range(1, 121):
        ids.append(
            call.lead(
                TITLE=f"Lead {n:03d}",
                NAME="Maria" if n % 2 else "Boris",
                OPPORTUNITY=100 * n,
                STATUS_ID="IN_PROCESS" if n % 3 == 0 else "NEW",
                SOURCE_ID="WEB" if n % 5 == 0 else "CALL",
                PHONE=[{"VALUE": f"+1555{n:04d}"}],
            )
        )
    return ids


def test_pages_of_fifty_with_total_and_next(call, leads):
    first = call.full("crm.lead.list", select=["ID"])
    second = call.full("crm.lead.list", select=["ID"], start=50)
    last = call.full("crm.lead.list", select=["ID"], start=100)

    assert (len(first.result), first.total, first.next) == (50, 120, 50)
    assert (len(second.result), second.next) == (50, 100)
    assert (len(last.result), last.total, last.next) == (20, 120, None)
    ids = [int(r["ID"]) for r in first.result + second.result + last.result]
    assert ids == leads


def test_start_minus_one_gives_one_page_without_counting(call, leads):
    page = call.full("crm.lead.list", select=["ID"], start=-1)

    assert (len(page.result), page.total, page.next) == (50, None, None)


def test_start_from_a_form_is_a_string(call, leads):
    assert call.full("crm.lead.list", select=["ID"], start="100").result[0]["ID"] == str(leads[100])


def test_keyset_enumeration_reads_every_lead_once(call, leads):
    seen, last = [], 0
    while True:
        page = call.full(
            "crm.lead.list", select=["ID"], filter={">ID": last}, order={"ID": "ASC"}, start=-1
        )
        if not page.result:
            break
        seen += [int(r["ID"]) for r in page.result]
        last = int(page.result[-1]["ID"])

    assert seen == leads


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({">OPPORTUNITY": 11900}, [120]),
        ({">=OPPORTUNITY": 11900}, [119, 120]),
        ({"<OPPORTUNITY": 300}, [1, 2]),
        ({"<=OPPORTUNITY": 200}, [1, 2]),
        ({"=OPPORTUNITY": 500}, [5]),
        ({"OPPORTUNITY": "500"}, [5]),
        ({"@ID": [3, 4, 99999]}, [3, 4]),
        ({"ID": [3, 4]}, [3, 4]),
        ({"!@STATUS_ID": ["NEW"], "<ID": 10}, [3, 6, 9]),
        ({"!STATUS_ID": "NEW", "<ID": 10}, [3, 6, 9]),
        ({"!=STATUS_ID": "NEW", "<ID": 10}, [3, 6, 9]),
        ({"%TITLE": "ead 01", "<ID": 13}, [10, 11, 12]),
        ({"=%TITLE": "lead 00%"}, [1, 2, 3, 4, 5, 6, 7, 8, 9]),
        ({"!%TITLE": "0", ">ID": 110}, list(range(111, 120))),
        ({"NAME": "maria", "SOURCE_ID": "WEB", "<ID": 30}, [5, 15, 25]),
        ({"PHONE": "+15550007"}, [7]),
        ({">ID": "117"}, [118, 119, 120]),
        ({"NO_SUCH_FIELD": "x", ">ID": 118}, [119, 120]),
    ],
)
def test_filter_prefixes(call, leads, flt, expected):
    found = call("crm.lead.list", filter=flt, select=["ID"])

    assert [int(r["ID"]) for r in found] == [leads[n - 1] for n in expected]


def test_ids_compare_as_numbers_not_strings(call, leads):
    found = call("crm.lead.list", filter={">ID": 9, "<ID": 12}, select=["ID"])

    assert [r["ID"] for r in found] == ["10", "11"]


def test_date_filters(call, clock):
    early = call.lead()
    clock.now += 86400
    late = call.lead()

    found = call("crm.lead.list", filter={">DATE_CREATE": "2024-05-30T00:00:00"}, select=["ID"])
    assert [int(r["ID"]) for r in found] == [late]
    found = call("crm.lead.list", filter={"<DATE_CREATE": "2024-05-30T00:00:00+03:00"})
    assert [int(r["ID"]) for r in found] == [early]


def test_logic_or_groups(call, leads):
    flt = {"0": {"LOGIC": "OR", "0": {"ID": 2}, "1": {"ID": 7}}}
    found = call("crm.lead.list", filter=flt, select=["ID"])

    assert [r["ID"] for r in found] == ["2", "7"]


def test_order_any_field_either_direction(call, leads):
    desc = call("crm.lead.list", order={"OPPORTUNITY": "DESC"}, select=["ID"], start=-1)
    by_status = call("crm.lead.list", order={"STATUS_ID": "ASC", "ID": "DESC"}, select=["ID"])

    assert int(desc[0]["ID"]) == leads[-1]
    assert [int(r["ID"]) for r in by_status[:2]] == [leads[119], leads[116]]


def test_select_star_leaves_out_multifields_and_names_bring_them(call, leads):
    star = call("crm.lead.list", select=["*"], start=-1)[0]
    named = call("crm.lead.list", select=["TITLE", "PHONE"], start=-1)[0]
    chosen = call("crm.lead.list", select=["TITLE"], start=-1)[0]

    assert "PHONE" not in star and "TITLE" in star
    assert set(named) == {"ID", "TITLE", "PHONE"}
    assert named["PHONE"][0]["VALUE"] == "+15550001"
    assert chosen == {"TITLE": "Lead 001"}


def test_user_fields_come_with_uf_star_or_by_name(call):
    call(
        "crm.lead.userfield.add",
        fields={"FIELD_NAME": "SOURCE_REF", "USER_TYPE_ID": "string", "LABEL": "Ref"},
    )
    lead_id = call.lead(UF_CRM_SOURCE_REF="ext-1")

    assert "UF_CRM_SOURCE_REF" not in call("crm.lead.list", select=["*"])[0]
    assert call("crm.lead.list", select=["UF_*"])[0] == {"UF_CRM_SOURCE_REF": "ext-1"}
    assert call(
        "crm.lead.list", select=["UF_CRM_SOURCE_REF"], filter={"UF_CRM_SOURCE_REF": "ext-1"}
    )
    assert call("crm.lead.get", id=lead_id)["UF_CRM_SOURCE_REF"] == "ext-1"


def test_select_and_filter_arrive_as_form_arrays(call, leads):
    """`select[0]=ID` and `filter[@ID][0]=2` decode to digit-keyed dicts."""
    found = call("crm.lead.list", select={"0": "ID"}, filter={"@ID": {"0": "2", "1": "3"}})

    assert found == [{"ID": "2"}, {"ID": "3"}]


def test_filter_that_is_not_an_object_is_rejected(call):
    error = call.error("crm.lead.list", filter="ID=1")

    assert error.body() == {"error": "", "error_description": "Parameter 'filter' must be array."}


def test_keyset_page_reads_only_the_rows_it_returns():
    """`>ID` + order by ID + start=-1 bisects the ID list; it never scans the table."""
    store = Store()
    table = store.table("lead")
    for n in range(1, 100_001):
        table.put({"ID": n})
    examined = []
    accessor = query.Accessor(lambda row: examined.append(row["ID"]) or row["ID"], query.int_value)
    where = query.compile_filter({">ID": 90_000}, {"ID": accessor}.get)
    orders = query.compile_order({"ID": "ASC"}, {"ID": accessor}.get)

    rows, total, following = query.find(table, where, orders, -1)

    assert [r["ID"] for r in rows] == list(range(90_001, 90_051))
    assert (total, following) == (None, None)
    assert len(examined) == 50
