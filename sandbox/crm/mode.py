"""CRM mode: crm.settings.mode.get, crm.enum.settings.mode, and what the UI switch does.

There is no REST setter (crm.settings.mode.set does not exist). Switching to Simple mode converts
every lead in progress the way the UI converter does: company -> contact (with COMPANY_ID) -> deal
(contacts, company, product rows) -> lead CONVERTED, each new item carrying LEAD_ID; activities are
completed, or moved to the deal when "Do not close activities" is chosen. In Simple mode a lead
added through REST with NAME filled is converted at once and then reads with STATUS_ID CONVERTED.
https://apidocs.bitrix24.com/api-reference/crm/crm-settings-mode-get.html
https://apidocs.bitrix24.com/tutorials/crm/how-to-add-crm-objects/how-to-add-objects-with-crm-mode.html
https://helpdesk.bitrix24.com/open/17627868/
"""

from __future__ import annotations

from typing import Any

from sandbox.crm import activities, entities, multifields, productrows, statuses
from sandbox.crm.context import CLIENTS, OPEN, Caller, ConversionOptions, Crm, Method
from sandbox.crm.fields import DEAL, LEAD
from sandbox.store import Row

MODES = {"classic": 1, "simple": 2}
_CONTACT_FIELDS = (
    "HONORIFIC",
    "NAME",
    "SECOND_NAME",
    "LAST_NAME",
    "BIRTHDATE",
    "POST",
    "SOURCE_ID",
    "SOURCE_DESCRIPTION",
    "COMMENTS",
    "OPENED",
    "ADDRESS",
    "ADDRESS_2",
    "ADDRESS_CITY",
    "ADDRESS_POSTAL_CODE",
    "ADDRESS_REGION",
    "ADDRESS_PROVINCE",
    "ADDRESS_COUNTRY",
    "ADDRESS_COUNTRY_CODE",
    "UTM_SOURCE",
    "UTM_MEDIUM",
    "UTM_CAMPAIGN",
    "UTM_CONTENT",
    "UTM_TERM",
)
_DEAL_FIELDS = (
    "TITLE",
    "OPPORTUNITY",
    "CURRENCY_ID",
    "IS_MANUAL_OPPORTUNITY",
    "SOURCE_ID",
    "SOURCE_DESCRIPTION",
    "COMMENTS",
    "OPENED",
    "UTM_SOURCE",
    "UTM_MEDIUM",
    "UTM_CAMPAIGN",
    "UTM_CONTENT",
    "UTM_TERM",
)


def mode_get(crm: Crm, params: dict[str, Any], caller: Caller) -> int:
    """crm.settings.mode.get: 1 Classic, 2 Simple."""
    return MODES[crm.mode]


def mode_enum(crm: Crm, params: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
    """crm.enum.settings.mode."""
    return [
        {"ID": 1, "NAME": "Classic CRM", "SYMBOL_CODE": None, "SYMBOL_CODE_SHORT": None},
        {"ID": 2, "NAME": "Simple CRM", "SYMBOL_CODE": None, "SYMBOL_CODE_SHORT": None},
    ]


def switch(crm: Crm, mode: str, options: ConversionOptions, *, user_id: int = 1) -> dict:
    """The admin's UI switch; to Simple it converts every lead in progress."""
    if mode not in MODES:
        raise ValueError(f"unknown CRM mode {mode!r}; expected 'classic' or 'simple'")
    if options.client not in CLIENTS:
        raise ValueError(f"unknown client {options.client!r}; expected one of {CLIENTS}")
    if statuses.category(options.pipeline) is None:
        raise ValueError(f"unknown deal pipeline {options.pipeline}")
    crm.mode = mode
    converted = 0
    if mode == "simple":
        crm.conversion = options
        leads = crm.table("lead")
        active = [r["ID"] for r in leads.scan() if r["STATUS_SEMANTIC_ID"] == "P"]
        for lead_id in active:
            convert_lead(crm, lead_id, options, user_id=user_id)
            converted += 1
    return {"mode": mode, "converted": converted}


def convert_lead(crm: Crm, lead_id: int, options: ConversionOptions, *, user_id: int) -> dict:
    """Convert one lead like the UI converter; returns the IDs it created or reused."""
    lead = crm.table("lead").get(lead_id)
    if lead is None:
        raise KeyError(lead_id)
    new_ids = _mf_ids(crm)
    company_id = lead.get("COMPANY_ID")
    contact_id = lead.get("CONTACT_ID")
    names = any(lead.get(k) for k in ("NAME", "SECOND_NAME", "LAST_NAME"))
    made_contact = (
        options.makes_contact and not contact_id and (names or options.client == "contact")
    )
    if (
        options.makes_company
        and not company_id
        and (lead.get("COMPANY_TITLE") or options.client == "company")
    ):
        company_id = entities.create(
            crm,
            entities.COMPANY_TYPE,
            {
                "TITLE": lead.get("COMPANY_TITLE") or lead["TITLE"],
                "ASSIGNED_BY_ID": lead["ASSIGNED_BY_ID"],
                "LEAD_ID": lead_id,
                **_copy(lead, ("ADDRESS", "ADDRESS_CITY", "ADDRESS_COUNTRY", "COMMENTS")),
            },
            user_id=user_id,
            fm=None if made_contact else multifields.copy_all(lead.get("FM"), new_ids),
            via_rest=False,
        )
    if made_contact:
        contact_id = entities.create(
            crm,
            entities.CONTACT_TYPE,
            {
                **_copy(lead, _CONTACT_FIELDS),
                "ASSIGNED_BY_ID": lead["ASSIGNED_BY_ID"],
                "COMPANY_ID": company_id,
                "COMPANY_IDS": [company_id] if company_id else [],
                "LEAD_ID": lead_id,
            },
            user_id=user_id,
            fm=multifields.copy_all(lead.get("FM"), new_ids),
            via_rest=False,
        )
    pipeline = options.pipeline
    deal_id = entities.create(
        crm,
        entities.DEAL_TYPE,
        {
            **_copy(lead, _DEAL_FIELDS),
            "ASSIGNED_BY_ID": lead["ASSIGNED_BY_ID"],
            "CATEGORY_ID": pipeline,
            "STAGE_ID": statuses.deal_stages(pipeline)[0].status_id,
            "CONTACT_IDS": [contact_id] if contact_id else [],
            "COMPANY_ID": company_id,
            "LEAD_ID": lead_id,
        },
        user_id=user_id,
        via_rest=False,
    )
    productrows.copy(crm, (LEAD, lead_id), (DEAL, deal_id))
    if not options.complete_activities:
        activities.move_all(crm, (LEAD, lead_id), (DEAL, deal_id))
    entities.change(
        crm,
        entities.LEAD_TYPE,
        lead_id,
        {
            "STATUS_ID": "CONVERTED",
            "CONTACT_ID": contact_id,
            "CONTACT_IDS": [contact_id] if contact_id else [],
            "COMPANY_ID": company_id,
        },
        user_id=user_id,
        via_rest=False,
    )
    return {"lead": lead_id, "deal": deal_id, "contact": contact_id, "company": company_id}


def _copy(row: Row, names: tuple[str, ...]) -> Row:
    return {name: row.get(name) for name in names if row.get(name) not in (None, "")}


def _mf_ids(crm: Crm) -> Any:
    return lambda: crm.next_id("multifield")


METHODS = {
    "crm.settings.mode.get": Method(mode_get, OPEN),
    "crm.enum.settings.mode": Method(mode_enum, OPEN),
}
