"""The sandbox portal's CRM: entities, stages, activities, product rows, duplicates, timeline,
the CRM mode and the universal item methods, as the Bitrix24 REST docs describe them."""

from __future__ import annotations

from sandbox.crm import (
    activities,
    duplicates,
    entities,
    items,
    mode,
    productrows,
    requisites,
    statuses,
    timeline,
    userfields,
)
from sandbox.crm.context import Crm, Method

_MODULES = (
    entities,
    productrows,
    activities,
    statuses,
    duplicates,
    timeline,
    mode,
    items,
    requisites,
    userfields,
)


def methods() -> dict[str, Method]:
    """Every REST method of the core, by lower-case name."""
    found: dict[str, Method] = {}
    for module in _MODULES:
        found.update({name.lower(): method for name, method in module.METHODS.items()})
    return found


def install(crm: Crm) -> None:
    """Create the indexes the CRM rules and list filters rely on."""
    for module in (
        entities,
        activities,
        productrows,
        duplicates,
        timeline,
        requisites,
        userfields,
    ):
        module.install(crm)
