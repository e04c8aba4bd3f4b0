"""Finding an existing client for a lead by phone or e-mail (`crm.duplicate.findbycomm`).

One command per lead, communication type and wanted entity type, so each answer belongs to exactly
one lead (the method returns the ids matching *any* of the values, not per value) and a crowd of
duplicate leads cannot hide the contacts: with no `entity_type` the method stops returning the
other types once one type has 20 hits. Up to 20 values per command.
https://apidocs.bitrix24.com/api-reference/crm/duplicates/crm-duplicate-find-by-comm.html
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from b24app.crm.mapping import link_id, multifield
from b24app.crm.policy import MatchBy, Policy
from b24app.rest.command import Command

MAX_VALUES = 20
_TYPES = {MatchBy.PHONE: ("PHONE", "p"), MatchBy.EMAIL: ("EMAIL", "e")}
_ENTITIES = {"contact": ("CONTACT", "c"), "company": ("COMPANY", "o")}


@dataclass(frozen=True)
class ClientMatch:
    """Existing clients found for one lead (None: none found, or not searched)."""

    contact_id: int | None = None
    company_id: int | None = None


def _wanted(lead: Mapping[str, Any], policy: Policy) -> list[str]:
    wanted = []
    if policy.client.wants_contact and link_id(lead.get("CONTACT_ID")) is None:
        wanted.append("contact")
    if policy.client.wants_company and link_id(lead.get("COMPANY_ID")) is None:
        wanted.append("company")
    return wanted


def match_key(lead_id: int, by: MatchBy, entity: str) -> str:
    """The batch key of one lookup, e.g. `L123mpc` (phone, contact), `L123meo` (e-mail, company)."""
    return f"L{int(lead_id)}m{_TYPES[by][1]}{_ENTITIES[entity][1]}"


def match_commands(lead: Mapping[str, Any], policy: Policy) -> tuple[Command, ...]:
    """Lookups for the clients this lead still needs, by the policy's `match_clients` types.

    None when matching is off, when the lead already links the clients (a repeat lead), or when it
    has no value of that type.
    """
    lead_id = link_id(lead.get("ID"))
    if lead_id is None:
        return ()
    commands = []
    for by in policy.match_clients:
        comm_type, _ = _TYPES[by]
        values = list(dict.fromkeys(v["VALUE"] for v in multifield(lead.get(comm_type))))
        if not values:
            continue
        for entity in _wanted(lead, policy):
            commands.append(
                Command(
                    match_key(lead_id, by, entity),
                    "crm.duplicate.findbycomm",
                    {
                        "type": comm_type,
                        "values": values[:MAX_VALUES],
                        "entity_type": _ENTITIES[entity][0],
                    },
                )
            )
    return tuple(commands)


def read_match(lead_id: int, results: Mapping[str, Any]) -> ClientMatch:
    """The match for one lead from batch results keyed like `match_commands` (others ignored).

    When several clients match, the oldest (lowest id) wins; missing keys mean "not searched".
    """
    found: dict[str, int | None] = {}
    for entity, (entity_type, _) in _ENTITIES.items():
        ids: list[int] = []
        for by in MatchBy:
            raw = results.get(match_key(lead_id, by, entity))
            if isinstance(raw, Mapping):
                ids.extend(i for i in map(link_id, raw.get(entity_type) or ()) if i)
        found[entity] = min(ids) if ids else None
    return ClientMatch(contact_id=found["contact"], company_id=found["company"])
