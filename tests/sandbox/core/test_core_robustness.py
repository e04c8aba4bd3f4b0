"""Odd input (form strings, wrong types, PHP-array dicts) gives an ApiError, never a traceback.

Bitrix24 answers bad input with HTTP 400 and a body of `error` + `error_description`
(https://apidocs.bitrix24.com/api-reference/common/system/error-codes.html); legacy methods leave
`error` empty or "100" and put the reason in the description. A refused write changes nothing.
"""

from __future__ import annotations

import pytest

from sandbox.errors import ApiError
from sandbox.portal import CallContext, MethodResult, Portal

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


def lead_count(portal: Portal) -> int:
    listed = portal.dispatch("crm.lead.list", {"select": ["ID"], "start": 0}, CallContext())
    assert listed.total is not None
    return listed.total


def assert_refused_as_bitrix24(error: ApiError) -> None:
    assert error.status == 400
    assert error.description.strip(), f"{error.code!r} has no description"
    assert error.body() == {"error": error.code, "error_description": error.description}


@pytest.mark.parametrize("key", KEYS)
def test_odd_parameters(seeded, key):
    answered, refused = [], []
    for method in sorted(m for m in dir_methods(seeded)):
        for value in ODD:
            params = {"id": 1, key: value}
            try:
                result = seeded.dispatch(method, params, CallContext())
            except ApiError as error:
                assert_refused_as_bitrix24(error)
                refused.append((method, value))
            else:
                assert isinstance(result, MethodResult)
                answered.append((method, value))
    # The read methods take `id` 1 whatever else comes with it; some odd values are refused.
    assert ("crm.settings.mode.get", None) in answered
    assert ("crm.lead.get", "x") in answered or key == "id"
    assert refused


@pytest.mark.parametrize("field", FIELDS)
def test_odd_field_values(seeded, field):
    for method in (
        "crm.lead.add",
        "crm.deal.update",
        "crm.activity.add",
        "crm.timeline.comment.add",
    ):
        for value in ODD:
            leads = lead_count(seeded)
            try:
                result = seeded.dispatch(
                    method, {"id": 1, "fields": {field: value, "TITLE": "t"}}, CallContext()
                )
            except ApiError as error:
                assert_refused_as_bitrix24(error)
                assert lead_count(seeded) == leads, f"a refused {method} changed the leads"
            else:
                assert isinstance(result, MethodResult)
                added = method == "crm.lead.add"
                assert lead_count(seeded) == leads + added
                if added:
                    assert isinstance(result.result, int) and result.result > 0


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
