"""What the app page shows about a portal, read in two requests.

1. One batch: the CRM mode (`crm.settings.mode.get`), the lead stages (`crm.status.list`
   `ENTITY_ID=STATUS`), the deal pipelines (`crm.category.list` `entityTypeId=2`) and the lead
   sources (`crm.status.list` `ENTITY_ID=SOURCE`).
2. One batch: per active lead stage, `crm.lead.list` filtered by `STATUS_ID`, selecting only `ID`,
   read for its `total` (the one list call per stage that asks the portal to count).

The parsing is pure (`parse_overview`), so tests can feed it documented answers; `read_overview`
does the I/O. https://apidocs.bitrix24.com/api-reference/crm/leads/crm-lead-list.html
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from b24app.crm.facts import (
    CATEGORIES_KEY,
    DEAL_ENTITY_TYPE_ID,
    LEAD_STAGES,
    LEAD_STAGES_KEY,
    PROCESS,
    FactsError,
    PortalFacts,
    Stage,
)
from b24app.crm.mode import MODE_KEY, Mode, mode_command, parse_mode
from b24app.rest.command import Command
from b24app.rest.portal import Portal

SOURCES = "SOURCE"
SOURCES_KEY = "src"
_COUNT_PREFIX = "n_"


@dataclass(frozen=True)
class Source:
    """A lead source from the portal's `SOURCE` directory (CALL, WEB, ...)."""

    id: str
    name: str


@dataclass(frozen=True)
class StageCount:
    """An active lead stage and how many leads are in it (None: the portal did not say)."""

    stage: Stage
    leads: int | None


@dataclass(frozen=True)
class Overview:
    """The page's picture of a portal: mode, facts (stages, pipelines), sources, active leads."""

    mode: Mode
    facts: PortalFacts
    sources: tuple[Source, ...]
    stages: tuple[StageCount, ...]
    requests: int = 0

    @property
    def active_leads(self) -> int:
        """Leads in work across every active stage (stages without a count add nothing)."""
        return sum(count.leads or 0 for count in self.stages)

    def source(self, source_id: str) -> Source | None:
        """The source with this id, or None."""
        return next((s for s in self.sources if s.id == source_id), None)


def overview_commands() -> tuple[Command, ...]:
    """The first batch: mode, lead stages, deal pipelines and lead sources."""
    return (
        mode_command(MODE_KEY),
        Command(LEAD_STAGES_KEY, "crm.status.list", {"filter": {"ENTITY_ID": LEAD_STAGES}}),
        Command(CATEGORIES_KEY, "crm.category.list", {"entityTypeId": DEAL_ENTITY_TYPE_ID}),
        Command(SOURCES_KEY, "crm.status.list", {"filter": {"ENTITY_ID": SOURCES}}),
    )


def count_commands(facts: PortalFacts) -> tuple[Command, ...]:
    """The second batch: one counting `crm.lead.list` page per active lead stage.

    `start: 0` makes the portal count (`total`); `select: [ID]` keeps the page small. Keys are
    positional (`n_0`, `n_1`, ...) because stage ids may hold characters batch keys may not.
    """
    return tuple(
        Command(
            f"{_COUNT_PREFIX}{index}",
            "crm.lead.list",
            {
                "filter": {"STATUS_ID": stage_id},
                "select": ["ID"],
                "order": {"ID": "ASC"},
                "start": 0,
            },
        )
        for index, stage_id in enumerate(facts.active_lead_stages)
    )


def parse_sources(raw: Any) -> tuple[Source, ...]:
    """Sources from a `crm.status.list` result for `ENTITY_ID=SOURCE`, in portal order."""
    items = raw.get("result", raw) if isinstance(raw, Mapping) else raw
    if isinstance(items, Mapping):
        items = list(items.values())
    if not isinstance(items, list):
        raise FactsError("crm.status.list result for SOURCE is not a list")
    rows = [item for item in items if isinstance(item, Mapping) and item.get("STATUS_ID")]
    rows.sort(key=lambda item: _int(item.get("SORT")))
    return tuple(
        Source(id=str(item["STATUS_ID"]), name=str(item.get("NAME") or item["STATUS_ID"]))
        for item in rows
    )


def parse_facts(results: Mapping[str, Any]) -> PortalFacts:
    """Lead stages and pipelines (without deal stages) from the first batch's results."""
    if LEAD_STAGES_KEY not in results or CATEGORIES_KEY not in results:
        raise FactsError("the overview batch has no lead stages or no pipelines in its results")
    return PortalFacts.from_results(
        statuses=results[LEAD_STAGES_KEY], categories=results[CATEGORIES_KEY]
    )


def parse_overview(
    results: Mapping[str, Any], totals: Mapping[str, int], *, requests: int = 0
) -> Overview:
    """The Overview from the first batch's `results` and the second batch's `totals` (by key)."""
    facts = parse_facts(results)
    active = (s for s in facts.lead_stages if s.semantics == PROCESS)  # count_commands' order
    counts = tuple(
        StageCount(stage=stage, leads=totals.get(f"{_COUNT_PREFIX}{index}"))
        for index, stage in enumerate(active)
    )
    return Overview(
        mode=parse_mode(results.get(MODE_KEY)),
        facts=facts,
        sources=parse_sources(results.get(SOURCES_KEY, [])),
        stages=counts,
        requests=requests,
    )


def read_overview(portal: Portal) -> Overview:
    """Read the overview from the portal: two requests (one when no lead stage is active)."""
    before = portal.requests_made
    first = portal.batch(overview_commands(), halt=False, idempotent=True)
    first.raise_first()
    facts = parse_facts(first.results)
    totals: Mapping[str, int] = {}
    commands = count_commands(facts)
    if commands:
        counted = portal.batch(commands, halt=False, idempotent=True)
        counted.raise_first()
        totals = {key: _total(counted, key) for key in counted.results}
    return parse_overview(first.results, totals, requests=portal.requests_made - before)


def _total(result: Any, key: str) -> int:
    """The stage's `total`; a page without one is counted by its rows (a short list)."""
    total = result.totals.get(key)
    if total is not None:
        return int(total)
    rows = result.results.get(key)
    return len(rows) if isinstance(rows, list | Mapping) else 0


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def count_selected(portal: Portal, policy: Any) -> int:
    """How many active leads `policy` selects (one facts request, one counting list page);
    PolicyError when the policy does not fit the portal."""
    from b24app.crm.reader import Reader

    facts = Reader(portal).facts((policy.pipeline,))
    policy.check(facts)
    found = portal.call(
        "crm.lead.list",
        {"filter": policy.leads.lead_filter(facts), "select": ["ID"], "start": 0},
    )
    return found.total if found.total is not None else len(found.result or [])
