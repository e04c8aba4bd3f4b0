"""Bulk reads against the sandbox: chained keyset listings, chunks, extras, the product-row
fallback, and how few requests it all takes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest

from b24app.crm.mapping import ORIGINATOR_ID, origin_id
from b24app.crm.policy import Client, MatchBy, Policy
from b24app.crm.reader import Reader
from b24app.errors import ListingError
from b24app.rest import PortalClient
from b24app.rest.command import Command
from b24app.rest.listing import Listing, Listings
from b24app.rest.response import BatchResult

from .conftest import client_for
from .portalstate import call, rows, snapshot


class RefusingRowLists:
    """A portal whose `crm.item.productrow.list` takes one owner only (the current docs)."""

    def __init__(self, client: PortalClient) -> None:
        self.client = client
        self.refused = 0  # requests that asked for several owners' rows

    @property
    def requests_made(self) -> int:
        return self.client.requests_made

    def batch(self, commands: Sequence[Command], **kw: Any) -> BatchResult:
        sent = []
        refused = False
        for command in commands:
            flt = dict(command.params.get("filter") or {})
            if command.method == "crm.item.productrow.list" and isinstance(
                flt.get("=ownerId"), list
            ):
                refused = True
                flt.pop("=ownerId")  # the portal ignores the array: the key is missing
                command = Command(command.key, command.method, {**command.params, "filter": flt})
            sent.append(command)
        self.refused += refused
        return self.client.batch(sent, **kw)

    def batch_many(self, commands: Sequence[Command], **kw: Any) -> BatchResult:
        return self.client.batch_many(commands, **kw)


def test_listings_share_requests_and_chain_pages(make_sandbox: Any) -> None:
    sandbox = make_sandbox(seed_leads=300)
    client = client_for(sandbox)
    lists = Listings(
        client,
        [
            Listing("l", "crm.lead.list", {}, ("ID", "TITLE"), pages=3, count=True),
            Listing("a", "crm.activity.list", {"OWNER_TYPE_ID": 1}, ("ID",), pages=2),
            Listing("e", "crm.deal.list", {"ORIGINATOR_ID": "nobody"}, ("ID",)),
        ],
    )

    found = lists.read()

    assert [int(r["ID"]) for r in found["l"]] == [
        int(r["ID"]) for r in rows(sandbox.portal, "crm.lead.list")
    ]
    assert len(found["a"]) == len(rows(sandbox.portal, "crm.activity.list", {"OWNER_TYPE_ID": 1}))
    assert found["e"] == [] and lists.totals == {"l": 300} and lists.errors == {}
    # 6 + 9-ish pages of leads and activities at 50 pages per request after the first
    assert client.requests_made == 2


def test_listing_errors_are_kept_per_listing(make_sandbox: Any) -> None:
    client = client_for(make_sandbox(seed_leads=5))
    lists = Listings(
        client,
        [
            Listing("r", "crm.item.productrow.list", {"=ownerType": "L"}),
            Listing("l", "crm.lead.list", {}, ("ID",)),
        ],
    )
    found = lists.read()
    assert len(found["l"]) == 5 and found["r"] == []
    assert lists.errors["r"].code == "REQUIRED_ARG_MISSING"


def test_extras_hold_each_leads_activities_rows_and_created_entities(make_sandbox: Any) -> None:
    sandbox = make_sandbox(seed_leads=120)
    core = sandbox.portal
    before = snapshot(core)
    leads = [before.leads[i] for i in before.active]
    target = before.active[0]
    older = call(
        core,
        "crm.deal.add",
        {
            "fields": {
                "TITLE": "made before",
                "ORIGINATOR_ID": ORIGINATOR_ID,
                "ORIGIN_ID": origin_id(target),
            }
        },
    )
    call(
        core,
        "crm.deal.add",
        {
            "fields": {
                "TITLE": "a duplicate",
                "ORIGINATOR_ID": ORIGINATOR_ID,
                "ORIGIN_ID": origin_id(target),
            }
        },
    )
    call(
        core,
        "crm.contact.add",
        {
            "fields": {
                "NAME": "not ours",
                "ORIGINATOR_ID": "someone",
                "ORIGIN_ID": origin_id(target),
            }
        },
    )
    client = client_for(sandbox)

    extras = Reader(client).extras(leads, Policy(client=Client.BOTH), origins=before.active)

    opened = {
        i: {a["ID"] for a in acts if a["COMPLETED"] == "N"} for i, acts in extras.activities.items()
    }
    assert {i: a for i, a in opened.items() if a} == {
        i: a for i, a in before.open_activities.items() if i in before.active
    }
    closed = {a["ID"] for acts in extras.activities.values() for a in acts if a["COMPLETED"] == "Y"}
    assert closed  # completed activities are found too (they follow to the deal)
    assert {i: len(r) for i, r in extras.product_rows.items()} == {
        i: n for i, n in before.product_rows.items() if n and i in before.active
    }
    assert extras.created == {target: {"deal": older}}
    assert extras.matches == {}
    # the listings, then one comment listing per lead (crm.timeline.comment.list takes one)
    assert client.requests_made == 1 + math.ceil(
        (len(leads) + sum(1 for lead in leads if lead.get("CONTACT_ID"))) / 50
    )


def test_product_rows_fall_back_to_one_lead_per_command(make_sandbox: Any) -> None:
    sandbox = make_sandbox(seed_leads=120)
    before = snapshot(sandbox.portal)
    leads = [before.leads[i] for i in before.active]
    portal = RefusingRowLists(client_for(sandbox))
    reader = Reader(portal)  # type: ignore[arg-type]

    extras = reader.extras(leads, Policy())
    again = reader.extras(leads[:10], Policy())

    expected = {i: n for i, n in before.product_rows.items() if n and i in before.active}
    assert {i: len(r) for i, r in extras.product_rows.items()} == expected
    assert reader.rows_per_lead and portal.refused == 1  # asked once, then one lead at a time
    assert {i: len(r) for i, r in again.product_rows.items()} == {
        i: n for i, n in expected.items() if i in before.active[:10]
    }


class StuckRowLists(RefusingRowLists):
    """A portal whose product-row listing ignores the `>id` filter: its ids never advance."""

    def batch(self, commands: Sequence[Command], **kw: Any) -> BatchResult:
        result = self.client.batch(commands, **kw)
        for command in commands:
            answer = result.results.get(command.key)
            if command.method == "crm.item.productrow.list" and isinstance(answer, dict):
                for row in answer.get("productRows") or []:
                    row["id"] = 0  # every row the same (unusable) id
        return result


def test_a_product_row_listing_that_does_not_advance_is_raised_not_read_one_by_one(
    make_sandbox: Any,
) -> None:
    sandbox = make_sandbox(seed_leads=40)
    before = snapshot(sandbox.portal)
    assert any(before.product_rows.values())
    leads = [before.leads[i] for i in before.active]
    reader = Reader(StuckRowLists(client_for(sandbox)))  # type: ignore[arg-type]

    with pytest.raises(ListingError, match="did not advance"):
        reader.extras(leads, Policy())
    assert not reader.rows_per_lead  # a listing that loops is not a refusal of owner lists


def test_matches_find_existing_clients_by_phone(make_sandbox: Any) -> None:
    sandbox = make_sandbox(seed_leads=10)
    core = sandbox.portal
    lead = snapshot(core).leads[snapshot(core).active[0]]
    phone = lead["PHONE"][0]["VALUE"]
    contact = call(
        core, "crm.contact.add", {"fields": {"NAME": "Known", "PHONE": [{"VALUE": phone}]}}
    )
    policy = Policy(match_clients=(MatchBy.PHONE,))

    extras = Reader(client_for(sandbox)).extras([lead], policy)

    assert extras.matches[int(lead["ID"])].contact_id == contact


def test_reads_stay_a_handful_of_requests_for_a_thousand_leads(make_sandbox: Any) -> None:
    sandbox = make_sandbox(seed_leads=1000)
    client = client_for(sandbox)
    reader = Reader(client)
    facts = reader.facts((0,))
    stream = reader.active_leads(facts, Policy().leads)
    chunks = [chunk for chunk in stream.chunks()]
    for chunk in chunks:
        reader.extras(chunk, Policy(client=Client.BOTH), origins=[int(r["ID"]) for r in chunk])

    listed = sum(len(chunk) for chunk in chunks)
    assert listed == stream.total == len(snapshot(sandbox.portal).active)
    assert [len(chunk) for chunk in chunks[:-1]] == [500] * (len(chunks) - 1)
    # facts, leads, then per chunk its listings and its per-lead reads (comments, contacts)
    per_lead = [len(c) + sum(1 for lead in c if lead.get("CONTACT_ID")) for c in chunks]
    assert client.requests_made == 1 + 1 + sum(1 + math.ceil(n / 50) for n in per_lead)


def _import(sandbox: Any, leads: int) -> list[int]:
    """Leads added through a webhook of their own, 50 `crm.lead.add` per batch (an import)."""
    importer = client_for(sandbox, url=sandbox.add_webhook())
    ids: list[int] = []
    for start in range(0, leads, 50):
        commands = [
            Command(f"a{i}", "crm.lead.add", {"fields": {"TITLE": f"import {i}", "NAME": "Ana"}})
            for i in range(start, min(leads, start + 50))
        ]
        result = importer.batch(commands)
        result.raise_first()
        ids += [int(value) for value in result.results.values()]
    return ids


def test_the_facts_request_counts_an_import_just_before_it_into_the_bucket(
    make_sandbox: Any,
) -> None:
    # 1,000 leads imported in 20 requests a moment ago; the run knows the first ten (their
    # events came first). The facts request reads the portal's newest leads beside them: the
    # client's mirror then holds what is left of the import's 20 requests (2/s drained since the
    # first lead's second), so its next requests wait for the room the import left.
    sandbox = make_sandbox(seed_leads=0)
    ids = _import(sandbox, 1000)
    client = client_for(sandbox, plan="standard")
    before = client.requests_made
    Reader(client).facts_and_mode((0,), leads=ids[:10])
    assert client.requests_made == before + 1  # the newest leads ride in the facts request
    level = client.bucket.take().level - 1  # its own request and what the import left
    assert 12 <= level <= 21


def test_leads_added_long_ago_leave_the_bucket_as_it_was(make_sandbox: Any) -> None:
    sandbox = make_sandbox(seed_leads=600)  # created in 2024: their requests drained long ago
    client = client_for(sandbox, plan="standard")
    ids = [int(lead["ID"]) for lead in rows(sandbox.portal, "crm.lead.list")][:10]
    Reader(client).facts_and_mode((0,), leads=ids)
    assert 1.5 < client.bucket.take().level <= 2.0  # the facts request and this one
