"""Converting from the app page: the job is created pending, run by the queue (in-process here),
followed by polling, and reported per lead on the page and as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

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


def text(response) -> str:
    return response.get_data(as_text=True)


def active_leads(page: PageApp) -> list[int]:
    rows = page.ctx.client(page.member_id).iterate(
        "crm.lead.list", {"filter": {"STATUS_SEMANTIC_ID": "P"}, "select": ["ID"]}
    )
    return sorted(int(row["ID"]) for row in rows)


def test_convert_all_runs_to_100_percent_with_a_report_and_csv(page: PageApp) -> None:
    before = active_leads(page)
    assert before
    token = page.token(1)
    client = page.client()
    started = client.post("/app/convert", data={"page_token": token, "leads": "all"})
    assert started.status_code == 303
    location = urlsplit(started.headers["Location"])
    assert location.path == "/app/jobs/1" and parse_qs(location.query)["t"] == [token]

    job = page.ctx.journal(page.member_id).job(1)
    assert job.kind == "app" and job.status == "done" and job.lead_ids is None

    progress = client.get("/app/jobs/1/progress", headers={"X-Page-Token": token})
    assert progress.get_json() == {
        "job_id": 1,
        "status": "done",
        "finished": True,
        "total": len(before),
        "done": len(before),
        "converted": len(before),
        "failed": 0,
        "skipped": 0,
        "percent": 100,
        "eta_seconds": None,
        "error": None,
        "status_text": "done",
        "count_text": f"{len(before)} of {len(before)} leads",
        "eta_text": "",
    }

    html = text(client.get(started.headers["Location"]))
    assert 'aria-valuenow="100"' in html and 'id="progress-percent">100%<' in html
    assert f'id="report-converted">{len(before)}<' in html
    assert html.count('class="converted"') == len(before)

    report = client.get("/app/jobs/1/report.csv", query_string={"t": token})
    assert report.status_code == 200 and report.mimetype == "text/csv"
    assert 'filename="b24app-job-1.csv"' in report.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(text(report))))
    assert sorted(int(r["lead_id"]) for r in rows) == before
    assert {r["status"] for r in rows} == {"converted"} and all(r["deal_id"] for r in rows)

    assert active_leads(page) == []
    overview = text(client.get("/app", query_string={"t": token}))
    assert 'href="/app/jobs/1?t=' in overview and 'id="active-total">0<' in overview


def test_convert_the_leads_ticked_in_the_preview(page: PageApp) -> None:
    chosen = active_leads(page)[:2]
    token = page.token(1)
    client = page.client()
    started = client.post(
        "/app/convert",
        data={"page_token": token, "leads": "chosen", "lead_id": [str(i) for i in chosen]},
    )
    assert started.status_code == 303
    job = page.ctx.journal(page.member_id).job(1)
    assert job.lead_ids == tuple(chosen) and job.status == "done"
    rows = csv.DictReader(io.StringIO(text(client.get(f"/app/jobs/1/report.csv?t={token}"))))
    assert sorted(int(r["lead_id"]) for r in rows) == chosen
    assert len(active_leads(page)) > 0


def test_typed_lead_ids_are_checked(page: PageApp) -> None:
    token = page.token(1)
    client = page.client()
    bad = client.post(
        "/app/convert", data={"page_token": token, "leads": "chosen", "lead_ids": "3, x"}
    )
    assert bad.status_code == 422 and "positive whole numbers" in text(bad)
    empty = client.post(
        "/app/convert", data={"page_token": token, "leads": "chosen", "lead_ids": " "}
    )
    assert empty.status_code == 422 and "Tick at least one lead" in text(empty)
    assert page.ctx.journal(page.member_id).jobs() == []
    first = active_leads(page)[0]
    typed = client.post(
        "/app/convert",
        data={"page_token": token, "leads": "chosen", "lead_ids": f" {first} ,{first}"},
    )
    assert typed.status_code == 303
    assert page.ctx.journal(page.member_id).job(1).lead_ids == (first,)


def test_a_second_conversion_waits_for_the_live_one(page: PageApp) -> None:
    journal = page.ctx.journal(page.member_id)
    live = journal.create_job(kind="app", policy={})
    token = page.token(1)
    response = page.client().post("/app/convert", data={"page_token": token, "leads": "all"})
    assert response.status_code == 409
    assert f"Job {live.id} is still running" in text(response)
    assert [job.id for job in journal.jobs()] == [live.id]


def test_the_switch_converts_as_a_switch_job(page: PageApp) -> None:
    token = page.token(1)
    response = page.client().post(
        "/app/convert", data={"page_token": token, "leads": "all", "kind": "switch"}
    )
    assert response.status_code == 303
    assert page.ctx.journal(page.member_id).job(1).kind == "switch"


def test_progress_needs_a_token_and_a_job_of_this_portal(page: PageApp) -> None:
    token = page.token(1)
    client = page.client()
    refused = client.get("/app/jobs/1/progress")
    assert refused.status_code == 403 and refused.get_json() == {"error": "err_token"}
    assert client.get("/app/jobs/1/progress", headers={"X-Page-Token": token}).status_code == 404
    other = page.ctx.journal("another-portal").create_job(kind="app", policy={})
    assert client.get(f"/app/jobs/{other.id}", query_string={"t": token}).status_code == 404
    assert (
        client.get(f"/app/jobs/{other.id}/report.csv", query_string={"t": token}).status_code == 404
    )


def test_a_running_job_shows_its_progress_and_polls(page: PageApp) -> None:
    journal = page.ctx.journal(page.member_id)
    job = journal.create_job(kind="app", policy={})
    token = page.token(2)  # anyone may watch
    html = text(page.client().get(f"/app/jobs/{job.id}", query_string={"t": token}))
    assert 'data-finished="false"' in html and 'aria-valuenow="0"' in html
    assert f'data-url="/app/jobs/{job.id}/progress"' in html
    assert 'id="report-table"' not in html


def test_a_non_admin_reads_the_report_but_cannot_convert(page: PageApp) -> None:
    admin = page.token(1)
    page.client().post("/app/convert", data={"page_token": admin, "leads": "all"})
    reader = page.token(2)
    client = page.client()
    assert client.get("/app/jobs/1", query_string={"t": reader}).status_code == 200
    assert client.get("/app/jobs/1/report.csv", query_string={"t": reader}).status_code == 200
    assert (
        client.post("/app/convert", data={"page_token": reader, "leads": "all"}).status_code == 403
    )
    assert [job.id for job in page.ctx.journal(page.member_id).jobs()] == [1]


def test_progress_texts_come_with_the_numbers_in_the_pages_language(page: PageApp) -> None:
    """One answer carries the bar, the count, the status word and the time left, translated:
    the page's script sets them together, so they cannot contradict each other."""
    import datetime as dt

    from handlers import i18n
    from handlers.page import progress_of

    journal = page.ctx.journal(page.member_id)
    job = journal.create_job(kind="app", policy={}, lead_ids=(5, 6, 7, 8))
    started = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    running = job.__class__(**{**job.__dict__, "status": "running", "started_at": started})
    later = started + dt.timedelta(minutes=3)
    shown = progress_of(running, {"converted": 1}, i18n.texts("br"), now=later)
    assert (shown["total"], shown["done"], shown["percent"]) == (4, 1, 25)
    assert shown["status_text"] == "em andamento"
    assert shown["count_text"] == "1 de 4 leads"
    assert shown["eta_seconds"] == 540 and shown["eta_text"] == "cerca de 9 min restantes"

    token = page.token(2)
    html = text(page.client().get(f"/app/jobs/{job.id}", query_string={"t": token}))
    answer = page.client().get(f"/app/jobs/{job.id}/progress", headers={"X-Page-Token": token})
    data = answer.get_json()
    assert f'id="progress-count">{data["count_text"]}<' in html
    assert f'data-status="{data["status"]}">{data["status_text"]}<' in html


def test_a_two_lead_request_reads_two_of_two(page: PageApp) -> None:
    chosen = active_leads(page)[:2]
    token = page.token(1)
    client = page.client()
    started = client.post(
        "/app/convert",
        data={"page_token": token, "leads": "chosen", "lead_ids": ", ".join(map(str, chosen))},
    )
    assert started.status_code == 303
    data = client.get("/app/jobs/1/progress", headers={"X-Page-Token": token}).get_json()
    assert (data["done"], data["total"], data["percent"]) == (2, 2, 100)
    assert data["count_text"] == "2 of 2 leads"


def test_a_job_of_chosen_leads_has_its_total_from_the_start(page: PageApp) -> None:
    from handlers.page import progress_of

    job = page.ctx.journal(page.member_id).create_job(kind="app", policy={}, lead_ids=(1, 2, 3))
    assert progress_of(job, {})["total"] == 3
    assert progress_of(job, {"converted": 2})["total"] == 3
