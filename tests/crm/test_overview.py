"""The app page's overview: parsed from documented answers, read from the sandbox in 2 requests."""

from __future__ import annotations

from collections import Counter

import pytest

from b24app.crm.facts import FactsError
from b24app.crm.mode import Mode, ModeError
from b24app.crm.overview import (
    count_commands,
    overview_commands,
    parse_overview,
    parse_sources,
    read_overview,
)
from b24app.rest import PortalClient
from sandbox import Sandbox

from .factories import doc

SOURCES = [
    {"ENTITY_ID": "SOURCE", "STATUS_ID": "WEB", "NAME": "Website", "SORT": "20"},
    {"ENTITY_ID": "SOURCE", "STATUS_ID": "CALL", "NAME": "Call", "SORT": "10"},
]


def first_batch(**overrides: object) -> dict[str, object]:
    results: dict[str, object] = {
        "mode": doc("crm.settings.mode.get")["result"],
        "ls": doc("crm.status.list.lead-stages")["result"],
        "cat": doc("crm.category.list.deal")["result"],
        "src": SOURCES,
    }
    return results | overrides


def test_parse_overview_from_the_docs_examples() -> None:
    overview = parse_overview(first_batch(), {"n_0": 42}, requests=2)
    assert overview.mode is Mode.CLASSIC
    assert [(c.stage.id, c.leads) for c in overview.stages] == [("NEW", 42)]
    assert overview.active_leads == 42
    assert overview.facts.pipeline_ids == (0, 7)
    assert [s.id for s in overview.sources] == ["CALL", "WEB"]
    assert overview.source("WEB").name == "Website" and overview.source("X") is None
    assert overview.requests == 2


def test_count_commands_ask_one_counted_page_per_active_stage() -> None:
    facts = parse_overview(first_batch(), {}).facts
    (command,) = count_commands(facts)
    assert command.method == "crm.lead.list"
    assert command.params["filter"] == {"STATUS_ID": "NEW"}
    assert command.params["select"] == ["ID"] and command.params["start"] == 0
    assert [c.method for c in overview_commands()] == [
        "crm.settings.mode.get",
        "crm.status.list",
        "crm.category.list",
        "crm.status.list",
    ]


def test_a_stage_without_a_total_reads_none() -> None:
    overview = parse_overview(first_batch(), {})
    assert [c.leads for c in overview.stages] == [None]
    assert overview.active_leads == 0


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"mode": 3}, ModeError),
        ({"src": "nope"}, FactsError),
        ({"cat": {"items": []}}, FactsError),
    ],
)
def test_bad_answers_are_one_clear_error(overrides: dict, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_overview(first_batch(**overrides), {})


def test_sources_accept_an_object_with_holes() -> None:
    assert [s.id for s in parse_sources({"result": {"0": SOURCES[0], "2": SOURCES[1]}})] == [
        "CALL",
        "WEB",
    ]


def test_read_overview_from_the_sandbox_matches_its_leads() -> None:
    with Sandbox(seed_leads=60, seed=3) as portal:
        client = PortalClient.from_webhook(portal.webhook_url)
        overview = read_overview(client)
        leads = list(client.iterate("crm.lead.list", {"select": ["ID", "STATUS_ID"]}))
    by_stage = Counter(lead["STATUS_ID"] for lead in leads)
    assert overview.requests == 2
    assert overview.mode is Mode.CLASSIC
    assert {c.stage.id: c.leads for c in overview.stages} == {
        stage: by_stage[stage] for stage in overview.facts.active_lead_stages
    }
    assert overview.active_leads > 0
    assert overview.facts.pipeline_ids == (0, 7, 9)
    assert "WEB" in {s.id for s in overview.sources}
