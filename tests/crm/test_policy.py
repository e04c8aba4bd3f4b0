"""Policy: defaults, JSON round trip, every problem reported at once, checks against the portal."""

from __future__ import annotations

import json
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b24app.crm.policy import (
    Activities,
    AutoConvert,
    Client,
    LeadSelection,
    MatchBy,
    Policy,
    PolicyError,
)
from b24app.errors import UsageError

from .factories import facts, lead


def test_defaults_mirror_bitrix24() -> None:
    policy = Policy()
    assert policy.client is Client.CONTACT
    assert policy.pipeline == 0
    assert policy.activities is Activities.COMPLETE
    assert policy.match_clients == ()
    assert policy.auto == AutoConvert(enabled=False)
    assert Policy.from_json("{}") == policy
    assert Policy.from_dict(None) == policy


def test_missing_keys_take_defaults() -> None:
    policy = Policy.from_json('{"client": "both", "leads": {"stages": ["NEW"]}}')
    assert policy == Policy(client=Client.BOTH, leads=LeadSelection(stages=("NEW",)))


FULL = Policy(
    client=Client.COMPANY,
    pipeline=7,
    activities=Activities.MOVE,
    leads=LeadSelection(
        ids=(5, 6),
        stages=("NEW",),
        sources=("CALL", "WEB"),
        created_after=date(2024, 1, 1),
        created_before=date(2024, 12, 31),
    ),
    match_clients=(MatchBy.PHONE, MatchBy.EMAIL),
    auto=AutoConvert(enabled=True, stages=("NEW",), sources=("WEB",)),
)


def test_json_round_trip_of_every_setting() -> None:
    text = FULL.to_json()
    assert json.loads(text)["leads"]["created_after"] == "2024-01-01"
    assert Policy.from_json(text) == FULL


policies = st.builds(
    Policy,
    client=st.sampled_from(Client),
    pipeline=st.integers(0, 10**6),
    activities=st.sampled_from(Activities),
    leads=st.builds(
        LeadSelection,
        ids=st.lists(st.integers(1, 10**9), max_size=3).map(tuple),
        stages=st.lists(st.sampled_from(["NEW", "IN_PROCESS"]), max_size=2).map(tuple),
        sources=st.lists(st.text("ABCXYZ_", min_size=1), max_size=2).map(tuple),
        created_after=st.none() | st.dates(max_value=date(2030, 1, 1)),
        created_before=st.none(),
    ),
    match_clients=st.lists(st.sampled_from(MatchBy), unique=True).map(tuple),
    auto=st.builds(
        AutoConvert,
        enabled=st.booleans(),
        stages=st.lists(st.sampled_from(["NEW"]), max_size=1).map(tuple),
    ),
)


@given(policies)
def test_json_round_trip_property(policy: Policy) -> None:
    assert Policy.from_json(policy.to_json()) == policy


def test_every_problem_is_reported_at_once() -> None:
    raw = {
        "client": "person",
        "activities": "close",
        "pipeline": -1,
        "leads": {"ids": ["x", 3], "created_after": "yesterday", "colour": "red"},
        "match_clients": ["phone", "fax"],
        "auto": {"enabled": "maybe"},
        "clinet": "both",
    }
    with pytest.raises(PolicyError) as caught:
        Policy.from_dict(raw)
    problems = caught.value.problems
    assert len(problems) == 9, problems
    expected = [
        "client must be contact | company | both (got 'person')",
        "activities must be move | complete (got 'close')",
        "pipeline must be a whole number >= 0 (got -1)",
        "leads.ids must hold positive whole numbers (got 'x')",
        "leads.created_after must be a date YYYY-MM-DD (got 'yesterday')",
        "unknown setting 'leads.colour'",
        "match_clients must be phone | email (got 'fax')",
        "auto.enabled must be true or false (got 'maybe')",
        "unknown setting 'clinet'",
    ]
    assert sorted(problems) == sorted(expected)
    assert isinstance(caught.value, UsageError)
    assert str(caught.value).startswith("invalid conversion policy: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"leads": 5}', "leads must be an object"),
        ('{"match_clients": {"a": 1}}', "match_clients must be a list"),
        (
            '{"leads": {"created_after": "2024-02-01", "created_before": "2024-01-01"}}',
            "created_after must be earlier",
        ),
        ('{"leads": {"stages": ["", "NEW"]}}', "leads.stages must hold non-empty strings"),
    ],
)
def test_bad_json_gives_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy.from_json(text)


def test_lenient_forms_are_accepted() -> None:
    policy = Policy.from_dict(
        {
            "client": " BOTH ",
            "pipeline": "7",
            "match_clients": "phone",
            "leads": {"ids": "12"},
            "auto": {"enabled": "Y"},
        }
    )
    assert policy.client is Client.BOTH and policy.pipeline == 7
    assert policy.match_clients == (MatchBy.PHONE,)
    assert policy.leads.ids == (12,) and policy.auto.enabled


def test_problems_against_the_portal_lists_all() -> None:
    policy = Policy(
        pipeline=9,
        leads=LeadSelection(stages=("NEW", "JUNK", "NOPE")),
        auto=AutoConvert(enabled=True, stages=("CONVERTED",)),
    )
    problems = policy.problems(facts())
    assert problems == [
        "pipeline 9 does not exist or is not visible (pipelines: 0, 7)",
        "leads.stages: lead stage 'JUNK' is closed; only active leads are converted",
        "leads.stages: lead stage 'NOPE' does not exist",
        "auto.stages: lead stage 'CONVERTED' is closed; only active leads are converted",
    ]
    with pytest.raises(PolicyError) as caught:
        policy.check(facts())
    assert caught.value.problems == tuple(problems)
    assert Policy(pipeline=7).check(facts()) == Policy(pipeline=7)


def test_selection_picks_leads() -> None:
    selection = LeadSelection(
        ids=(5,),
        sources=("CALL",),
        created_after=date(2024, 5, 30),
        created_before=date(2024, 6, 1),
    )
    assert selection.selects(lead(5))
    assert not selection.selects(lead(6))
    assert not selection.selects(lead(5, SOURCE_ID="WEB"))
    assert not selection.selects(lead(5, DATE_CREATE="2024-05-30T23:00:00+02:00"))
    assert not selection.selects(lead(5, DATE_CREATE="2024-06-01T00:00:00+02:00"))
    assert not selection.selects(lead(5, DATE_CREATE=None))
    assert LeadSelection().selects(lead(99))


def test_selection_filter_for_crm_lead_list_only_takes_active_stages() -> None:
    selection = LeadSelection(
        ids=(5,),
        stages=("NEW",),
        sources=("CALL",),
        created_after=date(2024, 5, 30),
        created_before=date(2024, 6, 1),
    )
    assert selection.lead_filter(facts()) == {
        "@STATUS_ID": ["NEW"],
        "@ID": [5],
        "@SOURCE_ID": ["CALL"],
        ">=DATE_CREATE": "2024-05-31",
        "<DATE_CREATE": "2024-06-01",
    }
    assert LeadSelection().lead_filter(facts()) == {"@STATUS_ID": ["NEW"]}


def test_auto_convert_rule() -> None:
    portal = facts()
    assert not AutoConvert().matches(lead(1), portal)
    rule = AutoConvert(enabled=True, stages=("NEW",), sources=("WEB",))
    assert rule.matches(lead(1, SOURCE_ID="WEB"), portal)
    assert not rule.matches(lead(1, SOURCE_ID="CALL"), portal)
    assert not rule.matches(lead(1, SOURCE_ID="WEB", STATUS_ID="JUNK"), portal)
    assert AutoConvert(enabled=True).matches(lead(1), portal)
