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

from sandbox.crm import conversion, statuses
from sandbox.crm.context import CLIENTS, OPEN, Caller, ConversionOptions, Crm, Method

MODES = {"classic": 1, "simple": 2}


def mode_get(crm: Crm, params: dict[str, Any], caller: Caller) -> int:
    """crm.settings.mode.get: 1 Classic, 2 Simple; 2 also when the plan forbids leads, whatever
    the switch says (LeadSettings::isEnabled, crm/lib/settings/leadsettings.php:297-306)."""
    if crm.store.meta("plan.leads", "Y") == "N":
        return MODES["simple"]
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
    """Convert one lead the way Bitrix24's own converter does (sandbox.crm.conversion)."""
    return conversion.convert(crm, lead_id, options, user_id=user_id)


METHODS = {
    "crm.settings.mode.get": Method(mode_get, OPEN),
    "crm.enum.settings.mode": Method(mode_enum, OPEN),
}
