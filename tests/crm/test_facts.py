"""Portal facts built from the documented crm.status.list / crm.category.list answers."""

from __future__ import annotations

import pytest

from b24app.crm.facts import FactsError, PortalFacts, deal_stage_entity, facts_commands

from .factories import deal_stages, doc, facts


def test_facts_from_the_docs_examples() -> None:
    portal = facts()
    assert portal.active_lead_stages == ("NEW",)
    assert portal.success_stage == "CONVERTED"
    assert portal.pipeline_ids == (0, 7)
    assert portal.pipeline(0).is_default and not portal.pipeline(7).is_default
    assert [s.id for s in portal.pipeline(7).stages] == ["C7:NEW", "C7:WON", "C7:LOSE"]
    assert [s.id for s in portal.pipeline(0).stages] == ["NEW", "WON", "LOSE"]


def test_the_success_stage_is_read_not_assumed() -> None:
    statuses = [
        {"ENTITY_ID": "STATUS", "STATUS_ID": "FRESH", "SORT": "10", "SEMANTICS": None},
        {"ENTITY_ID": "STATUS", "STATUS_ID": "CALLED", "SORT": "20", "SEMANTICS": None},
        {"ENTITY_ID": "STATUS", "STATUS_ID": "QUALIFIED", "SORT": "30", "SEMANTICS": "S"},
        {"ENTITY_ID": "STATUS", "STATUS_ID": "SPAM", "SORT": "40", "SEMANTICS": "F"},
        {"ENTITY_ID": "STATUS", "STATUS_ID": "LOST", "SORT": "50", "SEMANTICS": "F"},
    ]
    portal = PortalFacts.from_results(statuses={"result": statuses}, categories=None)
    assert portal.success_stage == "QUALIFIED"
    assert portal.active_lead_stages == ("FRESH", "CALLED")
    assert portal.pipeline_ids == (0,)


def test_stages_are_ordered_by_sort_and_extra_semantics_is_a_fallback() -> None:
    statuses = [
        {"ENTITY_ID": "STATUS", "STATUS_ID": "B", "SORT": "20", "EXTRA": {"SEMANTICS": "success"}},
        {"ENTITY_ID": "STATUS", "STATUS_ID": "A", "SORT": "10", "EXTRA": {"SEMANTICS": "process"}},
    ]
    portal = PortalFacts.from_results(statuses=statuses)
    assert [s.id for s in portal.lead_stages] == ["A", "B"]
    assert portal.success_stage == "B"


def test_a_portal_without_success_stage_is_an_error() -> None:
    portal = PortalFacts.from_results(statuses=[{"ENTITY_ID": "STATUS", "STATUS_ID": "NEW"}])
    with pytest.raises(FactsError, match="no lead stage with success semantics"):
        _ = portal.success_stage


@pytest.mark.parametrize(
    ("statuses", "categories", "message"),
    [
        ("oops", None, "not a list of stages"),
        ([{"ENTITY_ID": "STATUS"}], None, "no STATUS_ID"),
        ([], {"result": {"items": []}}, "no `categories` list"),
        ([], {"categories": [{"name": "x"}]}, "no numeric id"),
    ],
)
def test_malformed_results_give_clear_errors(
    statuses: object, categories: object, message: str
) -> None:
    with pytest.raises(FactsError, match=message):
        PortalFacts.from_results(statuses=statuses, categories=categories)


def test_activity_by_stage_falls_back_to_the_leads_own_semantic() -> None:
    portal = facts()
    assert portal.is_active({"STATUS_ID": "NEW"})
    assert not portal.is_active({"STATUS_ID": "JUNK", "STATUS_SEMANTIC_ID": "P"})
    assert portal.is_active({"STATUS_ID": "IN_PROCESS", "STATUS_SEMANTIC_ID": "P"})
    assert not portal.is_active({"STATUS_ID": "UNKNOWN"})


def test_deal_stage_directories() -> None:
    assert deal_stage_entity(0) == "DEAL_STAGE"
    assert deal_stage_entity(7) == "DEAL_STAGE_7"


def test_facts_commands_fetch_everything_in_one_batch_and_from_batch_reads_it() -> None:
    commands = facts_commands([0, 7, 7])
    assert [(c.key, c.method) for c in commands] == [
        ("ls", "crm.status.list"),
        ("cat", "crm.category.list"),
        ("dt", "crm.status.list"),
        ("rp", "crm.requisite.preset.list"),
        ("ds0", "crm.status.list"),
        ("ds7", "crm.status.list"),
    ]
    assert commands[0].params == {"filter": {"ENTITY_ID": "STATUS"}}
    assert commands[1].params == {"entityTypeId": 2}
    assert commands[2].params == {"filter": {"ENTITY_ID": "DEAL_TYPE"}}
    assert commands[5].params == {"filter": {"ENTITY_ID": "DEAL_STAGE_7"}}
    results = {
        "ls": doc("crm.status.list.lead-stages")["result"],
        "cat": doc("crm.category.list.deal")["result"],
        "ds0": deal_stages(0),
        "ds7": deal_stages(7),
    }
    assert PortalFacts.from_batch(results) == facts()
    typed = PortalFacts.from_batch(
        results
        | {
            "dt": [{"ENTITY_ID": "DEAL_TYPE", "STATUS_ID": "SALE", "NAME": "Sales", "SORT": 10}],
            "rp": [
                {"ID": "1", "XML_ID": "#CRM_REQUISITE_PRESET_DEF_US_COMPANY#", "SORT": "500"},
                {"ID": "2", "XML_ID": "#CRM_REQUISITE_PRESET_DEF_US_PERSON#", "SORT": "510"},
            ],
        }
    )
    assert (typed.deal_type, dict(typed.presets)) == ("SALE", {"company": 1, "contact": 2})
    with pytest.raises(FactsError, match="no lead stages or no pipelines"):
        PortalFacts.from_batch({"ls": []})
