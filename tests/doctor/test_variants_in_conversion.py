"""A conversion takes the path `b24app doctor` recorded for the portal: with the product-row
reading `docs` recorded, no request asks for several owners' rows (the sandbox's counters show
it), and the leads convert with every product row; with nothing recorded the reader finds out
as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from b24app.crm.policy import Policy
from b24app.crm.reader import OWNER_ARRAYS, Reader
from sandbox.portal import CallContext
from sandbox.server import Sandbox
from tests.cli.cli_support import Ran, run_cli
from tests.conversion.conftest import client_for

ROWS = "crm.item.productrow.list"


def cli(running: Sandbox, db_url: str, *args: str) -> Ran:
    env = {
        "B24_WEBHOOK_URL": running.webhook_url,
        "B24APP_PLAN": "fast",
        "B24APP_DATABASE_URL": db_url,
    }
    return run_cli(list(args), env)


def lead_rows(running: Sandbox) -> dict[int, int]:
    """Product rows per active lead, read from the sandbox's core."""
    core = running.portal
    leads = core.dispatch("crm.lead.list", {"select": ["ID", "STATUS_ID"]}, CallContext()).result
    found = {}
    for lead in leads:
        if lead["STATUS_ID"] in ("NEW", "IN_PROCESS", "PROCESSED"):
            rows = core.dispatch("crm.lead.productrows.get", {"id": lead["ID"]}, CallContext())
            found[int(lead["ID"])] = len(rows.result)
    return found


def deal_rows(running: Sandbox, deal_id: int) -> int:
    got = running.portal.dispatch("crm.deal.productrows.get", {"id": deal_id}, CallContext())
    return len(got.result)


def convert_counted(running: Sandbox, db_url: str) -> tuple[dict[str, Any], int, int]:
    """Run `b24app convert`; its report, its HTTP requests and its product-row sub-calls."""
    before = running.stats()
    ran = cli(running, db_url, "convert", "--yes", "--json")
    after = running.stats()
    assert ran.code == 0, ran.out + ran.err
    calls = after["sub_calls"].get(ROWS, 0) - before["sub_calls"].get(ROWS, 0)
    return ran.json(), after["http_requests"] - before["http_requests"], calls


def test_recorded_docs_reading_spends_nothing_on_owner_lists(tmp_path: Path) -> None:
    runs = {}
    for recorded in (False, True):
        db_url = f"sqlite:///{tmp_path / f'{recorded}.db'}"
        knobs = {"productrow_owner_arrays": "docs"}
        with Sandbox(plan="fast", seed_leads=40, seed=3, knobs=knobs) as running:
            if recorded:
                doctor = cli(running, db_url, "doctor", "--json")
                assert doctor.json()["variants"][OWNER_ARRAYS] == "docs"
                assert doctor.json()["recorded"] is True
            expected = lead_rows(running)
            report, requests, row_calls = convert_counted(running, db_url)
            converted = {
                lead["lead_id"]: deal_rows(running, lead["deal_id"])
                for lead in report["leads"]
                if lead["status"] == "converted"
            }
        assert converted == expected  # every active lead, each deal with its lead's rows
        runs[recorded] = (requests, row_calls, len(expected))
    (cold_requests, cold_calls, leads), (warm_requests, warm_calls, _) = runs[False], runs[True]
    assert warm_calls == leads  # one lead per command from the first request: no refused list
    # unrecorded: the list's pages are tried in the first request, refused, then one per lead
    assert cold_calls > leads
    assert warm_requests < cold_requests


@pytest.mark.parametrize(
    ("reading", "recorded"),
    [
        ("code", {OWNER_ARRAYS: "code"}),  # every lead's rows in one listing (its pages chained)
        ("code", {}),  # nothing recorded: the list first, as always
        ("docs", {OWNER_ARRAYS: "docs"}),  # one per lead, none refused
    ],
)
def test_the_reader_takes_the_recorded_path(reading: str, recorded: dict[str, str]) -> None:
    knobs = {"productrow_owner_arrays": reading}
    with Sandbox(plan="fast", seed_leads=30, seed=3, knobs=knobs) as running:
        expected = {i: n for i, n in lead_rows(running).items() if n}
        leads = running.portal.dispatch(
            "crm.lead.list", {"select": ["*"], "filter": {"@ID": list(expected)}}, CallContext()
        ).result
        reader = Reader(client_for(running), variants=recorded)
        before = running.stats()["sub_calls"].get(ROWS, 0)
        extras = reader.extras(leads, Policy())
        calls = running.stats()["sub_calls"].get(ROWS, 0) - before
    assert {i: len(r) for i, r in extras.product_rows.items()} == expected
    if reading == "docs":
        assert calls == len(leads)  # exactly one per lead: the refused list was never sent
    else:
        assert calls <= 2 < len(leads)  # the one listing of every owner, its pages chained
    assert reader.rows_per_lead is (reading == "docs")


def test_a_recorded_code_reading_on_a_portal_that_refuses_still_finds_out() -> None:
    """A stale record (the portal changed since the doctor ran) costs one refused command, as
    an unrecorded portal does, and the rows are still read."""
    with Sandbox(
        plan="fast", seed_leads=30, seed=3, knobs={"productrow_owner_arrays": "docs"}
    ) as running:
        expected = {i: n for i, n in lead_rows(running).items() if n}
        leads = running.portal.dispatch(
            "crm.lead.list", {"select": ["*"], "filter": {"@ID": list(expected)}}, CallContext()
        ).result
        reader = Reader(client_for(running), variants={OWNER_ARRAYS: "code"})
        extras = reader.extras(leads, Policy())
    assert {i: len(r) for i, r in extras.product_rows.items()} == expected
    assert reader.rows_per_lead


def test_a_dry_run_reads_the_record_and_creates_no_database(tmp_path: Path) -> None:
    knobs = {"productrow_owner_arrays": "docs"}
    with Sandbox(plan="fast", seed_leads=20, seed=3, knobs=knobs) as running:
        leads = len(lead_rows(running))
        absent = tmp_path / "absent.db"
        before = running.stats()["sub_calls"].get(ROWS, 0)
        cold = cli(running, f"sqlite:///{absent}", "convert", "--dry-run", "--json")
        cold_calls = running.stats()["sub_calls"].get(ROWS, 0) - before
        db_url = f"sqlite:///{tmp_path / 'app.db'}"
        assert cli(running, db_url, "doctor", "--json").json()["recorded"] is True
        before = running.stats()["sub_calls"].get(ROWS, 0)
        warm = cli(running, db_url, "convert", "--dry-run", "--json")
        warm_calls = running.stats()["sub_calls"].get(ROWS, 0) - before
    assert cold.code == 0 and warm.code == 0, cold.err + warm.err
    cold_preview, warm_preview = cold.json(), warm.json()
    assert warm_preview.pop("requests") < cold_preview.pop("requests")  # one request fewer
    assert cold_preview == warm_preview  # the same preview either way
    assert not absent.exists()  # a dry run does not create the database to look for a record
    assert warm_calls == leads < cold_calls


def test_the_app_pages_job_takes_the_path_the_panel_recorded(tmp_path: Path) -> None:
    """The page's "Check the portal" records the variants; the worker's job (through
    `Services.variants`) then reads product rows one lead per command from its first request."""
    from tests.handlers.page_support import make_page_app

    knobs = {"productrow_owner_arrays": "docs"}
    with Sandbox(plan="fast", seed_leads=20, seed=3, knobs=knobs) as running:
        page = make_page_app(running, tmp_path)
        expected = lead_rows(running)
        token = page.token(1)
        client = page.client()
        assert client.get("/app/doctor", query_string={"t": token}).status_code == 200
        before = running.stats()["sub_calls"].get(ROWS, 0)
        started = client.post("/app/convert", data={"page_token": token, "leads": "all"})
        calls = running.stats()["sub_calls"].get(ROWS, 0) - before
        job = page.ctx.journal(page.member_id).job(1)
        converted = {
            outcome.lead_id: deal_rows(running, outcome.deal_id)
            for outcome in page.ctx.journal(page.member_id).outcomes(1)
            if outcome.deal_id
        }
    assert started.status_code == 303 and job is not None and job.status == "done"
    assert converted == expected
    assert calls == len(expected)  # no command asked for several owners' rows
