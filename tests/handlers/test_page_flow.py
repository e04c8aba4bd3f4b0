"""What a person sees on the app page: the preview converts the policy on screen after showing its
numbers, a finished job says what it did in words with links into the portal, the job history
pages through, and a waiting job says what it waits for."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from b24app.store.installations import domain_of
from b24app.waits import WaitReason, why_waiting
from sandbox import Sandbox
from tests.handlers.page_support import PageApp, make_page_app


@pytest.fixture
def portal() -> Iterator[Sandbox]:
    with Sandbox(seed_leads=9, seed=21, plan="fast") as sandbox:
        yield sandbox


@pytest.fixture
def page(portal: Sandbox, tmp_path: Path) -> PageApp:
    return make_page_app(portal, tmp_path)


def text(response) -> str:
    return response.get_data(as_text=True)


def active(page: PageApp) -> int:
    return (
        page.ctx.client(page.member_id)
        .call(
            "crm.lead.list", {"filter": {"STATUS_SEMANTIC_ID": "P"}, "select": ["ID"], "start": 0}
        )
        .total
    )


ON_SCREEN = {"client": "both", "pipeline": "7", "activities": "move", "match_clients": ["phone"]}


def test_the_preview_shows_the_unsaved_policy_and_its_numbers_before_converting(
    page: PageApp,
) -> None:
    count = active(page)
    token = page.token(1)
    client = page.client()
    shown = client.post("/app/preview", data={"page_token": token, "leads": "all", **ON_SCREEN})
    html = text(shown)
    assert shown.status_code == 200
    assert "This is the policy on the page, not saved" in html
    assert "with a contact and a company" in html and "stay open and move to the deal" in html
    assert f"{count} leads would be converted." in html
    assert f"{count} deals created" in html and f"Convert {count} leads now" in html
    assert page.ctx.portal_settings.policy_data(page.member_id) is None  # previewing saves nothing
    assert page.ctx.journal(page.member_id).jobs() == []
    confirm = re.search(
        r'<form method="post" action="/app/convert" id="confirm-form".*?</form>', html, re.S
    )
    assert confirm is not None
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', confirm.group(0)))
    assert fields["client"] == "both" and fields["pipeline"] == "7" and fields["leads"] == "all"

    started = client.post("/app/convert", data=fields)
    assert started.status_code == 303
    job = page.ctx.journal(page.member_id).job(1)
    assert job.policy["client"] == "both" and job.policy["pipeline"] == 7
    assert job.policy["activities"] == "move"
    assert page.ctx.portal_settings.policy_data(page.member_id) is None


def test_a_get_preview_says_the_saved_policy_applies(page: PageApp) -> None:
    token = page.token(2)  # a plain user may preview the saved policy
    html = text(page.client().get("/app/preview", query_string={"t": token}))
    assert "This is the saved policy." in html
    assert 'id="confirm-form"' not in html and 'name="lead_id"' not in html


def test_the_overview_offers_preview_with_the_policy_on_screen_not_a_blind_convert(
    page: PageApp,
) -> None:
    html = text(page.open(1))
    assert 'id="preview-button" form="policy-form" formaction="/app/preview"' in html
    assert "The preview uses the policy shown above, saved or not" in html
    assert 'action="/app/convert"' not in html  # converting happens only from the preview
    reader = text(page.open(2))
    assert 'id="preview-button"' not in reader and 'id="preview-link"' in reader


def test_a_finished_job_says_what_it_did_and_links_into_the_portal(page: PageApp) -> None:
    count = active(page)
    token = page.token(1)
    client = page.client()
    client.post(
        "/app/convert",
        data={
            "page_token": token,
            "leads": "all",
            "client": "contact",
            "pipeline": "0",
            "activities": "complete",
        },
    )
    html = text(client.get("/app/jobs/1", query_string={"t": token}))
    assert f"{count} leads were converted." in html
    # A repeat lead gets a deal only, with its own clients (native conversion): the words count
    # what the deals are linked to, not what the policy asked for.
    words = re.search(
        rf"They now have {count} deals, linked to (\d+) contacts? and \d+ compan", html
    )
    assert words and 0 < int(words.group(1)) <= count
    installation = page.ctx.installations.get_installation(page.member_id)
    base = installation.client_endpoint.split("/rest")[0]
    assert domain_of(installation.client_endpoint) in base
    lead_links = re.findall(
        rf'href="{re.escape(base)}/crm/lead/details/(\d+)/"[^>]*>([^<]+)<', html
    )
    assert len(lead_links) == count
    assert all(not title.startswith("#") for _, title in lead_links)  # titles, not ids
    assert html.count(f'href="{base}/crm/deal/details/') == count
    assert html.count(f'href="{base}/crm/contact/details/') == int(words.group(1))
    assert "<th>Details</th>" in html and "<th>Error</th>" not in html


def test_a_skipped_lead_reads_as_skipped_with_its_reason_in_the_language(page: PageApp) -> None:
    token = page.token(1, lang="br")
    client = page.client()
    client.post("/app/convert", data={"page_token": token, "leads": "chosen", "lead_ids": "999999"})
    html = text(client.get("/app/jobs/1", query_string={"t": token}))
    assert "Nenhum lead foi convertido." in html
    assert "1 lead foi ignorado; cada linha diz o motivo." in html
    row = re.search(r'<tr data-lead="999999" class="skipped">.*?</tr>', html, re.S).group(0)
    assert "ignorado" in row and "lead não encontrado" in row
    assert "lead not found" not in html and "Erro" not in html
    assert "(s)" not in html


def test_the_job_history_pages_through_every_job(page: PageApp) -> None:
    journal = page.ctx.journal(page.member_id)
    for _ in range(23):
        job = journal.create_job(kind="app", policy={})
        journal.finish_job(job.id, status="done", error=None, counts=None)
    token = page.token(1)
    client = page.client()
    seen: list[int] = []
    url, query = "/app", {"t": token}
    for _ in range(5):
        html = text(client.get(url, query_string=query))
        seen += [int(i) for i in re.findall(r'<tr data-job="(\d+)">', html)]
        older = re.search(r'id="jobs-older"', html)
        if not older:
            break
        before = re.search(r'href="/app\?t=[^"]*&amp;before=(\d+)#jobs" id="jobs-older"', html)
        query = {"t": token, "before": before.group(1)}
    assert seen == list(range(23, 0, -1))
    assert 'id="jobs-newest"' in html


def test_a_waiting_job_says_what_it_waits_for(page: PageApp) -> None:
    journal = page.ctx.journal(page.member_id)
    running = journal.create_job(kind="convert", policy={})
    journal.claim_job(running.id)
    waiting = journal.create_job(kind="event", policy={})
    token = page.token(2, lang="de")
    html = text(page.client().get(f"/app/jobs/{waiting.id}", query_string={"t": token}))
    assert "Wartet auf das Ende von Vorgang" in html
    assert f"/app/jobs/{running.id}?t=" in html
    overview = text(page.client().get("/app", query_string={"t": token}))
    assert "automatisch (neuer oder geänderter Lead)" in overview  # the "event" kind, translated


def test_why_waiting_names_the_job_ahead() -> None:
    import datetime as dt

    from b24app.store.journal import JobRow

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def job(job_id: int, status: str, started: bool = False) -> JobRow:
        return JobRow(job_id, "p", "app", {}, None, status, now, now if started else None)

    assert why_waiting(job(3, "pending"), [job(2, "running"), job(1, "pending")]).behind == 2
    queued = why_waiting(job(3, "pending"), [job(1, "pending"), job(2, "pending")])
    assert (queued.reason, queued.behind) == (WaitReason.QUEUED, 1)
    assert why_waiting(job(3, "pending", True), []).reason is WaitReason.NEXT_SLICE
    assert why_waiting(job(3, "pending"), [job(4, "pending")]).reason is WaitReason.WORKER
    assert why_waiting(job(3, "done"), [job(2, "running")]) is None
