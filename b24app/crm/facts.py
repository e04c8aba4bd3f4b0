"""Portal facts the planner needs: lead stages (with semantics), deal pipelines and their stages.

Read, never assumed: stages can be renamed and added per portal, and the lead success stage is
whatever stage carries `SEMANTICS: "S"` (usually `CONVERTED`, not necessarily).
https://apidocs.bitrix24.com/tutorials/crm/how-to-get-lists/how-to-get-stages-with-semantics.html
https://apidocs.bitrix24.com/api-reference/crm/universal/category/crm-category-list.html
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from b24app.errors import B24AppError
from b24app.rest.command import Command
from b24app.vocabulary import DEAL_TYPE_ID as DEAL_ENTITY_TYPE_ID

LEAD_STAGES = "STATUS"
PROCESS, SUCCESS, FAILURE = "P", "S", "F"
# `crm.status.list` gives SEMANTICS null/"S"/"F"; EXTRA.SEMANTICS spells them out.
_EXTRA_SEMANTICS = {"process": PROCESS, "success": SUCCESS, "failure": FAILURE}

LEAD_STAGES_KEY = "ls"
CATEGORIES_KEY = "cat"
DEAL_TYPES_KEY = "dt"
PRESETS_KEY = "rp"
# Facts a conversion can do without: when one cannot be read the run goes on without it (no deal
# TYPE_ID, no requisites from addresses) instead of failing.
OPTIONAL_KEYS = frozenset({DEAL_TYPES_KEY, PRESETS_KEY})
# The default requisite templates' XML_ID ends (EntityRequisite::getDefaultPresetId is not in
# REST; crm.requisite.preset.list shows #CRM_REQUISITE_PRESET_DEF_<COUNTRY>_COMPANY# / _PERSON#).
_PRESET_ENDS = {"company": ("_COMPANY#",), "contact": ("_PERSON#", "_INDIVIDUAL#")}


class FactsError(B24AppError):
    """The portal's stages or pipelines are missing or not in the documented shape."""


def deal_stage_entity(pipeline_id: int) -> str:
    """`ENTITY_ID` of a pipeline's stage directory: `DEAL_STAGE` for 0, `DEAL_STAGE_{id}` otherwise.

    https://apidocs.bitrix24.com/api-reference/crm/deals/crm-deal-list.html
    """
    return "DEAL_STAGE" if pipeline_id == 0 else f"DEAL_STAGE_{pipeline_id}"


def _deal_stages_key(pipeline_id: int) -> str:
    return f"ds{pipeline_id}"


def facts_commands(pipeline_ids: Iterable[int] = (0,)) -> tuple[Command, ...]:
    """Commands reading all facts in one batch: lead stages, pipelines, `pipeline_ids` stages."""
    commands = [
        Command(LEAD_STAGES_KEY, "crm.status.list", {"filter": {"ENTITY_ID": LEAD_STAGES}}),
        Command(CATEGORIES_KEY, "crm.category.list", {"entityTypeId": DEAL_ENTITY_TYPE_ID}),
        # the first deal type is every converted deal's TYPE_ID (leadconversionmapper.php:351-355)
        Command(DEAL_TYPES_KEY, "crm.status.list", {"filter": {"ENTITY_ID": "DEAL_TYPE"}}),
        Command(PRESETS_KEY, "crm.requisite.preset.list", {"order": {"SORT": "ASC", "ID": "ASC"}}),
    ]
    for pipeline_id in dict.fromkeys(pipeline_ids):
        commands.append(
            Command(
                _deal_stages_key(pipeline_id),
                "crm.status.list",
                {"filter": {"ENTITY_ID": deal_stage_entity(pipeline_id)}},
            )
        )
    return tuple(commands)


@dataclass(frozen=True)
class Stage:
    """One stage of a directory, with its semantics: "P" in progress, "S" success, "F" failure."""

    id: str
    name: str
    semantics: str
    sort: int = 0


@dataclass(frozen=True)
class Pipeline:
    """A deal pipeline (category); id 0 is the default one."""

    id: int
    name: str
    is_default: bool = False
    stages: tuple[Stage, ...] = ()


@dataclass(frozen=True)
class PortalFacts:
    """The facts about one portal that planning a conversion depends on."""

    lead_stages: tuple[Stage, ...] = ()
    pipelines: tuple[Pipeline, ...] = ()
    deal_type: str | None = None  # the first DEAL_TYPE
    presets: Mapping[str, int] = field(default_factory=dict)  # "company"|"contact" -> preset id

    @property
    def active_lead_stages(self) -> tuple[str, ...]:
        """Ids of the lead stages "in work" (semantics P), in portal order."""
        return tuple(stage.id for stage in self.lead_stages if stage.semantics == PROCESS)

    @property
    def success_stage(self) -> str:
        """The id of the lead stage with success semantics (a converted lead's stage)."""
        for stage in self.lead_stages:
            if stage.semantics == SUCCESS:
                return stage.id
        raise FactsError('the portal has no lead stage with success semantics (SEMANTICS "S")')

    @property
    def pipeline_ids(self) -> tuple[int, ...]:
        """Ids of the deal pipelines the user can see, default (0) first."""
        return tuple(pipeline.id for pipeline in self.pipelines)

    def pipeline(self, pipeline_id: int) -> Pipeline | None:
        """The pipeline with this id, or None."""
        return next((p for p in self.pipelines if p.id == pipeline_id), None)

    def lead_stage(self, stage_id: str) -> Stage | None:
        """The lead stage with this id, or None."""
        return next((s for s in self.lead_stages if s.id == stage_id), None)

    def is_active(self, lead: Mapping[str, Any]) -> bool:
        """Whether a lead (as read by `crm.lead.get/list`) is in work, i.e. may be converted.

        Decided by its `STATUS_ID`'s semantics; a stage this portal did not list falls back to the
        lead's own read-only `STATUS_SEMANTIC_ID`.
        """
        stage = self.lead_stage(str(lead.get("STATUS_ID") or ""))
        if stage is not None:
            return stage.semantics == PROCESS
        return str(lead.get("STATUS_SEMANTIC_ID") or "") == PROCESS

    @classmethod
    def from_results(
        cls, *, statuses: Any = (), categories: Any = None, deal_stages: Iterable[Any] = ()
    ) -> PortalFacts:
        """Build the facts from raw REST results (`result` values or whole response bodies).

        `statuses`: `crm.status.list` result for `ENTITY_ID=STATUS` (a combined, unfiltered list is
        fine too: items are grouped by `ENTITY_ID`); `categories`: `crm.category.list` result
        (`{"categories": [...]}`; None: only the default pipeline 0); `deal_stages`: more
        `crm.status.list` results for deal stages.
        """
        items = [*_status_items(statuses)]
        for raw in deal_stages:
            items.extend(_status_items(raw))
        by_entity: dict[str, list[Stage]] = {}
        for item in items:
            by_entity.setdefault(str(item.get("ENTITY_ID") or ""), []).append(_stage(item))
        pipelines = tuple(
            Pipeline(
                id=pid,
                name=name,
                is_default=default,
                stages=_sorted(by_entity.get(deal_stage_entity(pid), [])),
            )
            for pid, name, default in _categories(categories)
        )
        return cls(lead_stages=_sorted(by_entity.get(LEAD_STAGES, [])), pipelines=pipelines)

    @classmethod
    def from_batch(cls, results: Mapping[str, Any]) -> PortalFacts:
        """Build the facts from the results of a `facts_commands()` batch, keyed by command key."""
        if LEAD_STAGES_KEY not in results or CATEGORIES_KEY not in results:
            raise FactsError("the facts batch has no lead stages or no pipelines in its results")
        deal = [
            value for key, value in results.items() if key.startswith("ds") and key[2:].isdigit()
        ]
        facts = cls.from_results(
            statuses=results[LEAD_STAGES_KEY], categories=results[CATEGORIES_KEY], deal_stages=deal
        )
        return replace(
            facts,
            deal_type=_first_deal_type(results.get(DEAL_TYPES_KEY)),
            presets=default_presets(results.get(PRESETS_KEY)),
        )


def _first_deal_type(raw: Any) -> str | None:
    try:
        items = _status_items(raw) if raw is not None else []
    except FactsError:
        return None
    stages = _sorted([_stage(item) for item in items if item.get("STATUS_ID")])
    return stages[0].id if stages else None


def default_presets(raw: Any) -> dict[str, int]:
    """The default requisite template of companies and contacts (`crm.requisite.preset.list`):
    the one whose XML_ID marks it the country's default, else the first active one by SORT."""
    items = _unwrap(raw)
    if not isinstance(items, Sequence) or isinstance(items, str):
        return {}
    active = [
        item
        for item in items
        if isinstance(item, Mapping)
        and _int(item.get("ID"), None)
        and str(item.get("ACTIVE") or "Y") == "Y"
    ]
    active.sort(key=lambda item: (_int(item.get("SORT"), 0), _int(item.get("ID"), 0)))
    found: dict[str, int] = {}
    for client, ends in _PRESET_ENDS.items():
        marked = [i for i in active if str(i.get("XML_ID") or "").upper().endswith(ends)]
        chosen = marked or active[:1]
        if chosen:
            found[client] = int(chosen[0]["ID"])
    return found


def _unwrap(raw: Any) -> Any:
    if isinstance(raw, Mapping) and "result" in raw:
        return raw["result"]
    return raw


def _status_items(raw: Any) -> list[Mapping[str, Any]]:
    items = _unwrap(raw)
    if isinstance(items, Mapping):  # a PHP array with holes arrives as an object
        items = list(items.values())
    if (
        not isinstance(items, Sequence)
        or isinstance(items, str)
        or not all(isinstance(item, Mapping) for item in items)
    ):
        raise FactsError("crm.status.list result is not a list of stages")
    return list(items)


def _stage(item: Mapping[str, Any]) -> Stage:
    stage_id = item.get("STATUS_ID")
    if not stage_id:
        raise FactsError("a crm.status.list item has no STATUS_ID")
    semantics = item.get("SEMANTICS")
    if semantics not in (SUCCESS, FAILURE):
        extra = item.get("EXTRA") if isinstance(item.get("EXTRA"), Mapping) else {}
        semantics = _EXTRA_SEMANTICS.get(str(extra.get("SEMANTICS") or ""), PROCESS)
    return Stage(
        id=str(stage_id),
        name=str(item.get("NAME") or stage_id),
        semantics=semantics,
        sort=_int(item.get("SORT"), 0),
    )


def _sorted(stages: list[Stage]) -> tuple[Stage, ...]:
    return tuple(sorted(stages, key=lambda stage: stage.sort))


def _categories(raw: Any) -> list[tuple[int, str, bool]]:
    if raw is None:
        return [(0, "General", True)]
    body = _unwrap(raw)
    categories = body.get("categories") if isinstance(body, Mapping) else None
    if not isinstance(categories, Sequence) or isinstance(categories, str):
        raise FactsError("crm.category.list result has no `categories` list")
    found = []
    for item in categories:
        pid = _int(item.get("id"), None) if isinstance(item, Mapping) else None
        if pid is None:
            raise FactsError("a crm.category.list item has no numeric id")
        found.append((pid, str(item.get("name") or pid), str(item.get("isDefault")) == "Y"))
    return found


def _int(value: Any, default: int | None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
