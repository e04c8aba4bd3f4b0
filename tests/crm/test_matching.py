"""Client matching by phone / e-mail through crm.duplicate.findbycomm."""

from __future__ import annotations

from b24app.crm.matching import ClientMatch, match_commands, read_match
from b24app.crm.policy import Client, MatchBy, Policy

from .factories import lead


def test_no_lookups_unless_asked() -> None:
    assert match_commands(lead(5), Policy()) == ()


def test_one_lookup_per_type_and_wanted_entity() -> None:
    policy = Policy(client=Client.BOTH, match_clients=(MatchBy.PHONE, MatchBy.EMAIL))
    commands = match_commands(lead(5), policy)
    assert [c.key for c in commands] == ["L5mpc", "L5mpo", "L5mec", "L5meo"]
    assert {c.method for c in commands} == {"crm.duplicate.findbycomm"}
    assert commands[0].params == {
        "type": "PHONE",
        "values": ["+15550000005"],
        "entity_type": "CONTACT",
    }
    assert commands[3].params == {
        "type": "EMAIL",
        "values": ["lead5@example.com"],
        "entity_type": "COMPANY",
    }


def test_a_repeat_lead_only_looks_for_what_it_lacks_and_values_are_capped() -> None:
    phones = [{"VALUE": f"+1{n:03d}", "VALUE_TYPE": "WORK"} for n in range(25)] * 2
    policy = Policy(client=Client.BOTH, match_clients=(MatchBy.PHONE,))
    commands = match_commands(lead(5, CONTACT_ID="77", PHONE=phones, EMAIL=[]), policy)
    assert [c.key for c in commands] == ["L5mpo"]
    assert len(commands[0].params["values"]) == 20
    assert match_commands(lead(5, PHONE=[]), Policy(match_clients=(MatchBy.PHONE,))) == ()


def test_the_oldest_match_wins_and_empty_answers_are_fine() -> None:
    results = {
        "L5mpc": {"CONTACT": [275, 2297]},
        "L5mec": {"CONTACT": ["180"]},
        "L5mpo": [],
        "L6mpc": {"CONTACT": [1]},
    }
    assert read_match(5, results) == ClientMatch(contact_id=180, company_id=None)
    assert read_match(7, results) == ClientMatch()
