"""Undo from the app page: an admin sees the preview, confirms, the queue runs the undo; the job's
page shows what was reverted and kept. Others see no "Undo" and are refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import Sandbox
from tests.handlers.page_support import PageApp, make_page_app


@pytest.fixture
def portal() -> Iterator[Sandbox]:
    with Sandbox(seed_leads=15, seed=8, plan="fast") as sandbox:
        yield sandbox


@pytest.fixture
def page(portal: Sandbox, tmp_path: Path) -> PageApp:
    return make_page_app(portal, tmp_path)


def active_leads(page: PageApp) -> list[int]:
    rows = page.ctx.client(page.member_id).iterate(
        "crm.lead.list", {"filter": {"STATUS_SEMANTIC_ID": "P"}, "select": ["ID"]}
    )
    return sorted(int(row["ID"]) for row in rows)


def test_an_admin_previews_confirms_and_the_job_page_reports_the_undo(page: PageApp) -> None:
    before = active_leads(page)
    token = page.token(1)
    client = page.client()
    assert (
        client.post("/app/convert", data={"page_token": token, "leads": "all"}).status_code == 303
    )
    assert not set(before) & set(active_leads(page))

    job_page = client.get("/app/jobs/1", query_string={"t": token}).get_data(as_text=True)
    assert 'id="undo-link"' in job_page and 'id="undo-none"' in job_page

    preview = client.get("/app/jobs/1/undo", query_string={"t": token})
    assert preview.status_code == 200
    html = preview.get_data(as_text=True)
    assert f"{len(before)} leads would be reverted." in html
    assert html.count('class="revert"') == len(before)
    assert not set(before) & set(active_leads(page))  # the preview changed nothing

    unconfirmed = client.post("/app/jobs/1/undo", data={"page_token": token})
    assert unconfirmed.status_code == 303 and "/app/jobs/1/undo" in unconfirmed.headers["Location"]
    assert not set(before) & set(active_leads(page))

    done = client.post("/app/jobs/1/undo", data={"page_token": token, "confirm": "yes"})
    assert done.status_code == 303 and "/app/jobs/1" in done.headers["Location"]
    assert active_leads(page) == before

    job_page = client.get("/app/jobs/1", query_string={"t": token}).get_data(as_text=True)
    assert 'id="undo-status"' in job_page
    assert f'id="undo-reverted">{len(before)}<' in job_page
    assert job_page.count('class="reverted"') == len(before)
    assert 'id="undo-link"' in job_page  # a second undo is offered, and says it changes nothing
    again = client.get("/app/jobs/1/undo", query_string={"t": token}).get_data(as_text=True)
    assert "is already undone" in again and 'id="undo-form"' not in again


def test_a_non_admin_sees_no_undo_and_is_refused(page: PageApp) -> None:
    admin = page.token(1)
    client = page.client()
    client.post("/app/convert", data={"page_token": admin, "leads": "all"})
    reader = page.token(2)
    job_page = client.get("/app/jobs/1", query_string={"t": reader}).get_data(as_text=True)
    assert 'id="undo-link"' not in job_page
    assert client.get("/app/jobs/1/undo", query_string={"t": reader}).status_code == 403
    refused = client.post("/app/jobs/1/undo", data={"page_token": reader, "confirm": "yes"})
    assert refused.status_code == 403


def test_the_page_speaks_the_readers_language(page: PageApp) -> None:
    token = page.token(1, lang="de")
    client = page.client()
    client.post("/app/convert", data={"page_token": token, "leads": "all"})
    html = client.get("/app/jobs/1/undo", query_string={"t": token}).get_data(as_text=True)
    assert "would be reverted" not in html and "Undo" not in html.split("<main", 1)[-1]


def test_the_undo_jobs_own_page_counts_its_leads(page: PageApp) -> None:
    before = active_leads(page)
    token = page.token(1)
    client = page.client()
    client.post("/app/convert", data={"page_token": token, "leads": "all"})
    client.post("/app/jobs/1/undo", data={"page_token": token, "confirm": "yes"})
    progress = client.get("/app/jobs/2/progress", headers={"X-Page-Token": token}).get_json()
    assert progress["status"] == "done" and progress["done"] == len(before)
    html = client.get("/app/jobs/2", query_string={"t": token}).get_data(as_text=True)
    assert "Undo job 2" in html and 'id="undo-link"' not in html
    assert html.count('class="reverted"') == len(before)


def test_the_preview_lists_the_custom_fields_the_job_created(tmp_path: Path) -> None:
    with Sandbox(seed_leads=10, seed=8, plan="fast", custom_fields=True) as sandbox:
        page = make_page_app(sandbox, tmp_path)
        token = page.token(1)
        client = page.client()
        form = {"page_token": token, "leads": "all", "client": "both", "create_fields": "on"}
        assert client.post("/app/convert", data=form).status_code == 303

        html = client.get("/app/jobs/1/undo", query_string={"t": token}).get_data(as_text=True)

        assert 'id="undo-fields"' in html
        assert html.count('data-field="') == html.count('class="remove"') > 0
        done = client.post("/app/jobs/1/undo", data={"page_token": token, "confirm": "yes"})
        assert done.status_code == 303
        ledger = page.ctx.journal(page.member_id).created_fields().all()
        assert ledger == []  # every created field deleted, and forgotten by the ledger
