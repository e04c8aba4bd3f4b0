"""The app page shows where each custom lead field goes, and the policy can create missing ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import Sandbox
from tests.handlers.page_support import PageApp, make_page_app


@pytest.fixture
def page(tmp_path: Path) -> Iterator[PageApp]:
    with Sandbox(seed_leads=12, seed=5, plan="fast", custom_fields=True) as sandbox:
        yield make_page_app(sandbox, tmp_path)


def test_the_preview_shows_the_custom_field_mapping(page: PageApp) -> None:
    html = page.client().get("/app/preview", query_string={"t": page.token(1)}).get_data(True)
    assert 'id="custom-fields-table"' in html
    # the default policy makes a contact and a deal: every lead field once per target
    assert html.count('data-target="deal"') == html.count('data-target="contact"') == 21
    assert html.count('class="paired"') > 0
    assert "not copied: no field with the same label, type and multiple" in html
    assert "not copied: Bitrix24 does not convert this type either" in html  # resourcebooking
    assert "will be created" not in html
    assert "custom value not copied" in html  # the contact's list lacks "Hardware"


def test_with_create_fields_the_preview_says_will_be_created(page: PageApp) -> None:
    form = {
        "page_token": page.token(1),
        "client": "contact",
        "pipeline": "0",
        "activities": "complete",
        "create_fields": "on",
        "leads": "all",
    }
    html = page.client().post("/app/preview", data=form).get_data(True)
    assert 'id="custom-fields-table"' in html
    assert "will be created" in html
    assert "not copied: no field with the same label" not in html
    assert 'name="create_fields" value="1"' in html  # the confirm form keeps the option
