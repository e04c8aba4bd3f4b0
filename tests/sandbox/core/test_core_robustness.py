"""Odd input (form strings, wrong types, PHP-array dicts) gives an ApiError, never a traceback."""

from __future__ import annotations

import pytest

from sandbox.errors import ApiError
from sandbox.portal import CallContext, Portal

ODD = [None, "", "x", 0, -1, 1.5, True, "5", [], {}, [1, 2], {"a": 1}, {"0": "a"}, [{"a": 1}]]
KEYS = [
    "id",
    "fields",
    "filter",
    "order",
    "select",
    "start",
    "rows",
    "activityId",
    "entityTypeId",
    "entityId",
    "type",
    "values",
    "entity_type",
]
FIELDS = [
    "PHONE",
    "TITLE",
    "OPPORTUNITY",
    "CONTACT_IDS",
    "STATUS_ID",
    "CATEGORY_ID",
    "BIRTHDATE",
    "COMMUNICATIONS",
    "OWNER_ID",
    "BINDINGS",
    "ENTITY_TYPE",
]


@pytest.fixture(scope="module")
def seeded() -> Portal:
    return Portal(seed_leads=20, seed=4)


@pytest.mark.parametrize("key", KEYS)
def test_odd_parameters(seeded, key):
    answered = 0
    for method in sorted(m for m in dir_methods(seeded)):
        for value in ODD:
            params = {"id": 1, key: value}
            try:
                seeded.dispatch(method, params, CallContext())
                answered += 1
            except ApiError as error:
                assert isinstance(error.description, str)
    assert answered > 0


@pytest.mark.parametrize("field", FIELDS)
def test_odd_field_values(seeded, field):
    for method in (
        "crm.lead.add",
        "crm.deal.update",
        "crm.activity.add",
        "crm.timeline.comment.add",
    ):
        for value in ODD:
            try:
                seeded.dispatch(
                    method, {"id": 1, "fields": {field: value, "TITLE": "t"}}, CallContext()
                )
            except ApiError as error:
                assert error.status in (400, 403, 404)


def dir_methods(portal: Portal) -> list[str]:
    names = [
        f"crm.{kind}.{verb}"
        for kind in ("lead", "deal", "contact", "company")
        for verb in ("add", "get", "list", "update", "fields")
    ]
    names += [
        "crm.lead.productrows.get",
        "crm.deal.productrows.set",
        "crm.item.productrow.list",
        "crm.activity.add",
        "crm.activity.list",
        "crm.activity.update",
        "crm.activity.binding.add",
        "crm.activity.binding.move",
        "crm.status.list",
        "crm.category.list",
        "crm.duplicate.findbycomm",
        "crm.timeline.comment.list",
        "crm.item.list",
        "crm.item.get",
        "crm.settings.mode.get",
    ]
    assert all(portal.has_method(n) for n in names)
    return names
