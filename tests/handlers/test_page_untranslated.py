"""Every page in every language, as admin and as a plain user, holds no English outside the
portal's own data (rendered by the Flask app; tests/browser does the same in Chromium)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from handlers import i18n
from sandbox import Sandbox
from tests.handlers.page_support import PageApp, make_page_app, page_token, seed_jobs
from tests.handlers.untranslated import english_left, visible_texts

ADMIN, READER = 1, 2


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Iterator[tuple[PageApp, dict[str, int]]]:
    with Sandbox(seed_leads=9, seed=21, plan="fast") as portal:
        page = make_page_app(portal, Path(tmp_path_factory.mktemp("untranslated")))
        yield page, seed_jobs(page)


def pages(page: PageApp, user_id: int, lang: str, jobs: dict[str, int]) -> dict[str, str]:
    """Every page `user_id` can open, rendered in `lang`."""
    client = page.client()
    opened = page.open(user_id, lang=lang, client=client)
    html = opened.get_data(as_text=True)
    token = page_token(html)
    shown = {"overview": html}
    if user_id == ADMIN:
        form = {"page_token": token, "leads": "all", "client": "both", "pipeline": "0"}
        shown["preview"] = client.post(
            "/app/preview", data={**form, "activities": "move", "match_clients": "phone"}
        ).get_data(as_text=True)
    else:
        shown["preview"] = client.get("/app/preview", query_string={"t": token}).get_data(
            as_text=True
        )
    for name, job_id in jobs.items():
        shown[f"job {name}"] = client.get(
            f"/app/jobs/{job_id}", query_string={"t": token}
        ).get_data(as_text=True)
    # the undo preview of the report's job (a plain user gets the "administrators only" page)
    shown["undo preview"] = client.get(
        f"/app/jobs/{jobs['report']}/undo", query_string={"t": token}
    ).get_data(as_text=True)
    shown["older jobs"] = client.get(
        "/app", query_string={"t": token, "before": jobs["stopped"]}
    ).get_data(as_text=True)
    shown["missing job"] = client.get("/app/jobs/999", query_string={"t": token}).get_data(
        as_text=True
    )
    shown["refused"] = client.post("/app", query_string={"LANG": lang}, data={}).get_data(
        as_text=True
    )
    shown["installer"] = client.get("/install", query_string={"LANG": lang}).get_data(as_text=True)
    return shown


@pytest.mark.parametrize("lang", [lang for lang in i18n.LOCALES if lang != "en"])
@pytest.mark.parametrize("user_id", [ADMIN, READER])
def test_no_english_is_left_on_a_translated_page(seeded, lang: str, user_id: int) -> None:
    page, jobs = seeded
    left = {
        name: english_left(visible_texts(html), lang)
        for name, html in pages(page, user_id, lang, jobs).items()
    }
    assert {name: texts for name, texts in left.items() if texts} == {}


def test_the_english_pages_show_what_the_translated_ones_are_checked_for(seeded) -> None:
    page, jobs = seeded
    shown = pages(page, ADMIN, "en", jobs)
    assert "lead not found" in shown["job report"]
    assert "already converted by job 1" in shown["job again"]
    assert "stage JUNK is not an active lead stage" in shown["job report"]
    assert "Waits for job" in shown["job waiting"]
    assert "Older jobs" in shown["overview"]
    assert "There is no such job on this portal." in shown["missing job"]


def test_the_check_finds_english_on_a_portuguese_page() -> None:
    html = '<p>Leads ativos</p><p>lead not found</p><td translate="no">New inquiry</td>'
    assert english_left(visible_texts(html), "br") == ["lead not found"]
    assert english_left(["o(s) 1 lead(s) ativo(s)"], "br") == ["o(s) 1 lead(s) ativo(s)"]


def test_every_page_rendered_for_the_check_is_the_page_itself(seeded) -> None:
    page, jobs = seeded
    for user_id in (ADMIN, READER):
        shown = pages(page, user_id, "en", jobs)
        assert 'id="preview-summary"' in shown["preview"]
        assert 'id="job-list"' in shown["overview"] and 'id="jobs-older"' in shown["overview"]
        assert 'id="jobs-newest"' in shown["older jobs"]
        assert 'id="report-table"' in shown["job report"]
        assert "Stopped: the run was interrupted (Ctrl-C)" in shown["job stopped"]
        assert 'id="error"' in shown["refused"] and 'id="status"' in shown["installer"]
    assert 'id="undo-table"' in pages(page, ADMIN, "en", jobs)["undo preview"]
    assert 'id="error"' in pages(page, READER, "en", jobs)["undo preview"]
