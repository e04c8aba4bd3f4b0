"""Bitrix24's vocabulary: the platform's constants, each defined once, with where it comes from.

Entity type ids, the REST methods of each CRM entity, event names, the batch/page/id-list limits,
the CRM mode values and the error codes that mean "already done". Every other module imports
these names; none spells the values again. This module imports nothing from b24app: it sits on
the floor beside errors and config (docs/architecture.md, "The picture").
"""

from __future__ import annotations

from types import MappingProxyType

# --- Entity type ids --------------------------------------------------------------------------
# https://apidocs.bitrix24.com/api-reference/crm/data-types.html#object_type
LEAD_TYPE_ID, DEAL_TYPE_ID, CONTACT_TYPE_ID, COMPANY_TYPE_ID = 1, 2, 3, 4
# A requisite's owner type (crm/lib/requisite/addressrequisiteconverter.php:42-135).
REQUISITE_TYPE_ID = 8
# A requisite's primary address type (crm.address.fields TYPE_ID; the same converter).
PRIMARY_ADDRESS = 1

# --- The entities a conversion creates, and their REST methods ----------------------------------
# https://apidocs.bitrix24.com/api-reference/crm/deals/index.html (and contacts/, companies/)
COMPANY, CONTACT, DEAL = "company", "contact", "deal"
ENTITIES = (COMPANY, CONTACT, DEAL)
CLIENTS = (COMPANY, CONTACT)
TYPE_ID = MappingProxyType({DEAL: DEAL_TYPE_ID, CONTACT: CONTACT_TYPE_ID, COMPANY: COMPANY_TYPE_ID})
ADD_METHOD = MappingProxyType({e: f"crm.{e}.add" for e in ENTITIES})
UPDATE_METHOD = MappingProxyType({e: f"crm.{e}.update" for e in CLIENTS})
LIST_METHOD = MappingProxyType({e: f"crm.{e}.list" for e in ENTITIES})
DELETE_METHOD = MappingProxyType({e: f"crm.{e}.delete" for e in ENTITIES})

# --- Event names --------------------------------------------------------------------------------
# https://apidocs.bitrix24.com/api-reference/events/index.html
LEAD_ADD = "ONCRMLEADADD"
LEAD_UPDATE = "ONCRMLEADUPDATE"
APP_INSTALL = "ONAPPINSTALL"
APP_UNINSTALL = "ONAPPUNINSTALL"
LEAD_EVENTS = (LEAD_ADD, LEAD_UPDATE)
# The events the app binds at install (https://apidocs.bitrix24.com/api-reference/events/event-bind.html).
BOUND_EVENTS = (LEAD_ADD, LEAD_UPDATE, APP_UNINSTALL)

# --- Limits -------------------------------------------------------------------------------------
# A batch runs at most 50 commands
# (https://apidocs.bitrix24.com/settings/how-to-call-rest-api/batch.html).
MAX_BATCH = 50
# A list method answers at most 50 rows per page
# (https://apidocs.bitrix24.com/api-reference/crm/leads/crm-lead-list.html).
PAGE_SIZE = 50
# Keyset pages chained in one batch: one per command, so the batch limit again
# (https://apidocs.bitrix24.com/settings/performance/huge-data.html).
PAGES_PER_REQUEST = MAX_BATCH
# Values per `@FIELD` id-list filter: each value is one query variable, kept well under PHP's
# max_input_vars (1000 by default on Bitrix24 hosting).
IDS_PER_FILTER = 500

# --- CRM mode -----------------------------------------------------------------------------------
# https://apidocs.bitrix24.com/api-reference/crm/auxiliary/enum/crm-enum-settings-mode.html
MODE_METHOD = "crm.settings.mode.get"
MODE_CLASSIC, MODE_SIMPLE = 1, 2

# --- Error codes --------------------------------------------------------------------------------
NOT_FOUND = "NOT_FOUND"
ACTIVITY_IS_ALREADY_BOUND = "ACTIVITY_IS_ALREADY_BOUND"
BINDING_NOT_FOUND = "BINDING_NOT_FOUND"
# Sub-call errors meaning "rejected before running": safe to send again.
# https://apidocs.bitrix24.com/settings/how-to-call-rest-api/limits.html
NOT_EXECUTED = frozenset({"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT"})
# Sub-call errors after which the call may or may not have taken effect.
AMBIGUOUS = frozenset({"INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER"})
# Answers meaning the change is already there, by method.
# https://apidocs.bitrix24.com/api-reference/crm/timeline/activities/binding/crm-activity-binding-add.html
ALREADY_DONE = MappingProxyType(
    {
        "crm.activity.binding.add": frozenset({ACTIVITY_IS_ALREADY_BOUND}),
        "crm.activity.binding.delete": frozenset({BINDING_NOT_FOUND}),
    }
)
# Every "already there / already gone" code: a batch failing only with these is no portal fault.
HARMLESS = frozenset({NOT_FOUND, ACTIVITY_IS_ALREADY_BOUND, BINDING_NOT_FOUND})
# Legacy methods answer a missing entity with no code, only this text (crm.activity.update:
# "Not found").
NOT_FOUND_TEXT = "not found"


def is_not_found(code: str | None, description: str) -> bool:
    """Whether an error says the entity is gone: `NOT_FOUND`, or a legacy "Not found" text."""
    return code == NOT_FOUND or (not code and NOT_FOUND_TEXT in description.lower())
