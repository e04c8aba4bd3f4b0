"""Directories (lead stages, deal pipelines and their stages, sources, types): crm.status.list and
crm.category.list.

Lead stages are directory STATUS; deal stages are DEAL_STAGE for pipeline 0 and DEAL_STAGE_{id}
for the others, whose STATUS_IDs carry the prefix "C{id}:". SEMANTICS is null (in progress),
"S" (the one success stage) or "F" (failure); EXTRA.SEMANTICS spells it out.
https://apidocs.bitrix24.com/api-reference/crm/status/crm-status-list.html
https://apidocs.bitrix24.com/tutorials/crm/how-to-get-lists/how-to-get-stages-with-semantics.html
https://apidocs.bitrix24.com/api-reference/crm/universal/category/crm-category-list.html
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox import query
from sandbox.crm.context import D7, Caller, Crm, Method, legacy_error, missing_parameter
from sandbox.errors import ApiError
from sandbox.query import Accessor, int_value

_EXTRA = {None: "process", "S": "success", "F": "failure"}


@dataclass(frozen=True)
class Stage:
    """One stage of a lead or deal pipeline."""

    status_id: str
    name: str
    sort: int
    color: str
    semantics: str | None = None
    system: bool = False

    @property
    def semantic_id(self) -> str:
        """The entity field value: P (in progress), S or F."""
        return self.semantics or "P"


@dataclass(frozen=True)
class Category:
    """A deal pipeline."""

    id: int
    name: str
    sort: int

    @property
    def entity_id(self) -> str:
        """The directory holding its stages."""
        return "DEAL_STAGE" if self.id == 0 else f"DEAL_STAGE_{self.id}"

    @property
    def prefix(self) -> str:
        """The STATUS_ID prefix of its stages."""
        return "" if self.id == 0 else f"C{self.id}:"


LEAD_STAGES = (
    Stage("NEW", "Not processed", 10, "#39A8EF", system=True),
    Stage("IN_PROCESS", "In progress", 20, "#2FC6F6"),
    Stage("PROCESSED", "Processed", 30, "#55D0E0"),
    Stage("CONVERTED", "Converted", 40, "#7BD500", "S", system=True),
    Stage("JUNK", "Low-quality lead", 50, "#FF5752", "F", system=True),
)

CATEGORIES = (
    Category(0, "General", 100),
    Category(7, "Contract renewal", 200),
    Category(9, "Partners", 300),
)

_DEFAULT_PIPELINE = (
    Stage("NEW", "New", 10, "#39A8EF", system=True),
    Stage("PREPARATION", "Document preparation", 20, "#2FC6F6"),
    Stage("PREPAYMENT_INVOICE", "Prepayment invoice", 30, "#55D0E0"),
    Stage("EXECUTING", "In progress", 40, "#47E4C2"),
    Stage("FINAL_INVOICE", "Final invoice", 50, "#FFA900"),
    Stage("WON", "Deal successful", 60, "#7BD500", "S", system=True),
    Stage("LOSE", "Deal failed", 70, "#FF5752", "F", system=True),
    Stage("APOLOGY", "Failure reason analysis", 80, "#FF5752", "F"),
)
_OTHER_PIPELINES = {
    7: (
        Stage("NEW", "New", 10, "#39A8EF", system=True),
        Stage("PREPARATION", "Offer sent", 20, "#2FC6F6"),
        Stage("EXECUTING", "Negotiation", 30, "#47E4C2"),
        Stage("WON", "Renewed", 40, "#7BD500", "S", system=True),
        Stage("LOSE", "Not renewed", 50, "#FF5752", "F", system=True),
    ),
    9: (
        Stage("NEW", "New", 10, "#39A8EF", system=True),
        Stage("EXECUTING", "Onboarding", 20, "#47E4C2"),
        Stage("WON", "Partner", 30, "#7BD500", "S", system=True),
        Stage("LOSE", "Declined", 40, "#FF5752", "F", system=True),
    ),
}

_PLAIN_DIRECTORIES = {
    "SOURCE": (
        ("CALL", "Call"),
        ("EMAIL", "E-mail"),
        ("WEB", "Website"),
        ("ADVERTISING", "Advertising"),
        ("PARTNER", "Existing client"),
        ("RECOMMENDATION", "By recommendation"),
        ("TRADE_SHOW", "Trade show"),
        ("WEBFORM", "CRM form"),
        ("CALLBACK", "Callback"),
        ("RC_GENERATOR", "Sales generator"),
        ("STORE", "Online store"),
        ("OTHER", "Other"),
    ),
    "DEAL_TYPE": (
        ("SALE", "Sales"),
        ("COMPLEX", "Integrated sale"),
        ("GOODS", "Sale of goods"),
        ("SERVICES", "Sale of services"),
        ("SERVICE", "After-sales service"),
    ),
    "CONTACT_TYPE": (
        ("CLIENT", "Clients"),
        ("SUPPLIER", "Suppliers"),
        ("PARTNER", "Partners"),
        ("OTHER", "Other"),
    ),
    "COMPANY_TYPE": (
        ("CUSTOMER", "Client"),
        ("SUPPLIER", "Supplier"),
        ("COMPETITOR", "Competitor"),
        ("PARTNER", "Partner"),
        ("OTHER", "Other"),
    ),
}


def first_deal_type() -> str:
    """The first DEAL_TYPE: what conversion gives the deal (leadconversionmapper.php:351-355)."""
    return _PLAIN_DIRECTORIES["DEAL_TYPE"][0][0]


def category(category_id: int) -> Category | None:
    """The pipeline with this ID, if it exists."""
    return next((c for c in CATEGORIES if c.id == category_id), None)


def deal_stages(category_id: int) -> tuple[Stage, ...]:
    """The stages of a pipeline, with their prefixed STATUS_IDs."""
    if category_id == 0:
        return _DEFAULT_PIPELINE
    found = category(category_id)
    if found is None:
        return ()
    return tuple(
        Stage(found.prefix + s.status_id, s.name, s.sort, s.color, s.semantics, s.system)
        for s in _OTHER_PIPELINES[category_id]
    )


def deal_stage(category_id: int, stage_id: str) -> Stage | None:
    """A stage of the given pipeline, or None if it belongs to no such pipeline."""
    return next((s for s in deal_stages(category_id) if s.status_id == stage_id), None)


def lead_stage(status_id: str) -> Stage | None:
    """A lead stage, or None when there is no such stage."""
    return next((s for s in LEAD_STAGES if s.status_id == status_id), None)


def active_lead_statuses() -> list[str]:
    """Lead stages in progress (semantics null): the leads the mode switch converts."""
    return [s.status_id for s in LEAD_STAGES if s.semantics is None]


def directory() -> list[dict[str, Any]]:
    """Every directory item as crm.status.list returns it."""
    rows: list[dict[str, Any]] = []

    def add(entity_id: str, stage: Stage, category_id: int | None, extra: bool) -> None:
        row: dict[str, Any] = {
            "ID": str(len(rows) + 1),
            "ENTITY_ID": entity_id,
            "STATUS_ID": stage.status_id,
            "NAME": stage.name,
            "NAME_INIT": stage.name if stage.system else "",
            "SORT": str(stage.sort),
            "SYSTEM": "Y" if stage.system else "N",
            "CATEGORY_ID": None if category_id is None else str(category_id),
            "COLOR": stage.color,
            "SEMANTICS": stage.semantics,
        }
        if extra:
            row["EXTRA"] = {"SEMANTICS": _EXTRA[stage.semantics], "COLOR": stage.color}
        rows.append(row)

    for stage in LEAD_STAGES:
        add("STATUS", stage, None, True)
    for pipeline in CATEGORIES:
        for stage in deal_stages(pipeline.id):
            add(pipeline.entity_id, stage, pipeline.id or None, True)
    for entity_id, items in _PLAIN_DIRECTORIES.items():
        for sort, (status_id, name) in enumerate(items, start=1):
            add(entity_id, Stage(status_id, name, sort * 10, "", system=True), None, False)
    return rows


_DIRECTORY = directory()
_STATUS_FIELDS = {
    "ID": Accessor(lambda r: int(r["ID"]), int_value),
    "SORT": Accessor(lambda r: int(r["SORT"]), int_value),
    **{
        name: Accessor(lambda r, n=name: r.get(n), lambda v: "" if v is None else str(v), True)
        for name in ("ENTITY_ID", "STATUS_ID", "NAME", "SYSTEM", "CATEGORY_ID", "SEMANTICS")
    },
}


def status_list(crm: Crm, params: dict[str, Any], caller: Caller) -> query.Page:
    """crm.status.list: directory items by filter, SORT ascending by default."""
    raw_filter, raw_order = params.get("filter"), params.get("order")
    if raw_filter not in (None, "") and not isinstance(raw_filter, (dict, list)):
        raise legacy_error("Invalid parameters.")
    if raw_order not in (None, "") and not isinstance(raw_order, (dict, list)):
        raise legacy_error("Invalid parameters.")
    where = query.compile_filter(raw_filter, _STATUS_FIELDS.get)
    orders = query.compile_order(raw_order, _STATUS_FIELDS.get, default="SORT")
    rows, total, following = query.find_in(
        _DIRECTORY, where, orders, query.parse_start(params.get("start"))
    )
    return query.Page([dict(r) for r in rows], total, following)


_CATEGORY_FIELDS = {
    "id": Accessor(lambda r: r["id"], int_value),
    "sort": Accessor(lambda r: r["sort"], int_value),
    "name": Accessor(lambda r: r["name"], str, True),
    "isDefault": Accessor(lambda r: r["isDefault"], str, True),
}


def category_list(crm: Crm, params: dict[str, Any], caller: Caller) -> query.Page:
    """crm.category.list: deal pipelines, the default one (id 0, isDefault "Y") included."""
    raw = params.get("entityTypeId")
    if raw in (None, ""):
        raise missing_parameter("entityTypeId")
    if int_value(raw) != 2:
        raise ApiError("NOT_SUPPORTED", "Entity type does not support categories", 400)
    rows = [
        {
            "id": c.id,
            "name": c.name,
            "sort": c.sort,
            "entityTypeId": 2,
            "isDefault": "Y" if c.id == 0 else "N",
        }
        for c in CATEGORIES
    ]
    try:
        where = query.compile_filter(params.get("filter"), _CATEGORY_FIELDS.get, unknown="error")
        orders = query.compile_order(
            params.get("order"), _CATEGORY_FIELDS.get, unknown="error", default="sort"
        )
    except query.QueryError as error:
        raise ApiError("INVALID_ARG_VALUE", str(error), 400) from error
    page, total, following = query.find_in(
        rows, where, orders, query.parse_start(params.get("start"))
    )
    return query.Page({"categories": page}, total, following)


METHODS = {
    "crm.status.list": Method(status_list),
    "crm.category.list": Method(category_list, D7),
}
