"""Bitrix24's own lead conversion, as crm/lib/conversion/* does it (the admin's Classic -> Simple
switch and `crm.lead.add` while Simple both run it). Written from the server code, rule by rule:

- phases COMPANY -> CONTACT -> DEAL -> FINALIZATION (leadconverter.php:234-262); a client that
  already carries LEAD_ID = this lead is reused, so at most one of each is made (:320-344);
- a repeat lead (it has CONTACT_ID/COMPANY_ID) gets a deal only, with all its contacts and its
  company (leadconversionscheme.php:63-66, leadconverter.php:695-709);
- the field maps of leadconversionmapper.php:78-213, with the company TITLE falling back to the
  lead's TITLE (:144), the contact's default NAME (:324-332, from the automation converter's
  `defaultName`, crm/lib/automation/converter/converter.php:55-62), every UTM field, the deal's
  TYPE_ID = the first deal type and OPPORTUNITY/TAX_VALUE from the copied rows (:340-359), and
  LEAD_ID on every created entity (:335-337); multifields as new values;
- custom fields: the automation converter synchronises first (creates the fields a target lacks,
  converter.php:93-113), then pairs by label/type/multiple (userfieldsynchronizer.php:514-566),
  enumerations by option text, files copied, address values without their id, resourcebooking
  skipped (entityconversionmapper.php:300-480);
- the deal is linked to its client's default requisite when one exists at deal time
  (leadconverter.php:754-797); finalization writes STATUS_ID=CONVERTED and CONTACT_ID/COMPANY_ID
  onto the lead (:814-860), then gives a new or linked client without a requisite one from its
  address (default preset, ADDRESS_ONLY, SORT 500; :862-965, addressrequisiteconverter.php:42-135);
- every lead activity, open and closed, is bound to every created entity, the lead binding stays
  (entityconverter.php:1131-1284); lead timeline entries are bound to the targets
  (timeline/entitycontroller.php:78-125); closing the lead then completes the activities still
  open unless "do not close activities" was chosen (crm_lead.php:2746-2781, factory.php:594-605).
"""

from __future__ import annotations

from typing import Any

from sandbox.crm import (
    activities,
    entities,
    multifields,
    productrows,
    requisites,
    statuses,
    timeline,
    userfields,
)
from sandbox.crm.context import ConversionOptions, Crm
from sandbox.crm.fields import COMPANY, CONTACT, DEAL, LEAD
from sandbox.store import Row

_ADDRESS = (
    "ADDRESS",
    "ADDRESS_2",
    "ADDRESS_CITY",
    "ADDRESS_POSTAL_CODE",
    "ADDRESS_REGION",
    "ADDRESS_PROVINCE",
    "ADDRESS_COUNTRY",
    "ADDRESS_COUNTRY_CODE",
)
_UTM = ("UTM_SOURCE", "UTM_MEDIUM", "UTM_CAMPAIGN", "UTM_CONTENT", "UTM_TERM")
_ORIGIN = ("ASSIGNED_BY_ID", "ORIGINATOR_ID", "ORIGIN_ID")
# leadconversionmapper.php:103-127 (contact), :140-160 (company), :172-193 (deal), :197-201 (UTM)
CONTACT_MAP = (
    "HONORIFIC",
    "NAME",
    "SECOND_NAME",
    "LAST_NAME",
    "BIRTHDATE",
    "POST",
    "COMMENTS",
    "OPENED",
    "SOURCE_ID",
    "SOURCE_DESCRIPTION",
    *_ADDRESS,
    *_ORIGIN,
    "FACE_ID",
    *_UTM,
)
COMPANY_MAP = ("COMMENTS", "OPENED", *_ADDRESS, *_ORIGIN, *_UTM)
DEAL_MAP = (
    "TITLE",
    "OPPORTUNITY",
    "CURRENCY_ID",
    "COMMENTS",
    "OPENED",
    "SOURCE_ID",
    "SOURCE_DESCRIPTION",
    *_ORIGIN,
    "WEBFORM_ID",
    *_UTM,
)
# The text of CRM_AUTOMATION_CONVERTER_DEFAULT_NAME is not in the mirror (no lang files): a knob.
DEFAULT_CONTACT_NAME = "Untitled"


def convert(crm: Crm, lead_id: int, options: ConversionOptions, *, user_id: int) -> dict:
    """Convert one lead natively; the IDs it created or reused."""
    lead = crm.table("lead").get(lead_id)
    if lead is None:
        raise KeyError(lead_id)
    user_id = lead.get("ASSIGNED_BY_ID") or user_id  # run as the lead's responsible (factory:614)
    repeat = bool(lead.get("CONTACT_ID") or lead.get("COMPANY_ID"))
    targets = [DEAL]
    if not repeat:
        targets = [COMPANY] * options.makes_company + [CONTACT] * options.makes_contact + [DEAL]
    if options.sync_fields:
        for target in targets:
            synchronize(crm, _kind(target))
    created: dict[int, int] = {}
    company_id = contact_id = None
    if COMPANY in targets:
        company_id = _child(crm, "company", lead_id) or _create(
            crm, entities.COMPANY_TYPE, lead, COMPANY_MAP, user_id, created
        )
    if CONTACT in targets:
        contact_id = _child(crm, "contact", lead_id) or _create(
            crm,
            entities.CONTACT_TYPE,
            lead,
            CONTACT_MAP,
            user_id,
            created,
            extra={"COMPANY_ID": company_id, "COMPANY_IDS": [company_id] if company_id else []},
        )
    if repeat:
        contact_ids = list(lead.get("CONTACT_IDS") or [])
        company_id = lead.get("COMPANY_ID")
    else:
        contact_ids = [contact_id] if contact_id else []
    deal_id = _create(
        crm,
        entities.DEAL_TYPE,
        lead,
        DEAL_MAP,
        user_id,
        created,
        extra={
            "TYPE_ID": statuses.first_deal_type(),
            "CATEGORY_ID": options.pipeline,
            "STAGE_ID": statuses.deal_stages(options.pipeline)[0].status_id,
            "CONTACT_IDS": contact_ids,
            "COMPANY_ID": company_id,
        },
    )
    productrows.copy(crm, (LEAD, lead_id), (DEAL, deal_id))
    _link_requisite(crm, deal_id, company_id, contact_ids)
    _finalize(crm, lead, created, options, user_id, company_id, contact_id, repeat)
    return {"lead": lead_id, "deal": deal_id, "contact": contact_id, "company": company_id}


def _kind(type_id: int) -> str:
    return {DEAL: "deal", CONTACT: "contact", COMPANY: "company"}[type_id]


def _child(crm: Crm, kind: str, lead_id: int) -> int | None:
    """A client already made from this lead (reused: leadconverter.php:320-344)."""
    found = sorted(crm.table(kind).lookup("lead_id", lead_id))
    return found[0] if found else None


def _create(
    crm: Crm,
    etype: entities.EntityType,
    lead: Row,
    names: tuple[str, ...],
    user_id: int,
    created: dict[int, int],
    *,
    extra: Row | None = None,
) -> int:
    values: Row = {n: lead[n] for n in names if lead.get(n) not in (None, "")}
    if etype.type_id == COMPANY:
        values["TITLE"] = lead.get("COMPANY_TITLE") or lead.get("TITLE")
    if etype.type_id == CONTACT and not any(
        values.get(n) for n in ("NAME", "SECOND_NAME", "LAST_NAME")
    ):
        values["NAME"] = crm.knob("default_contact_name", DEFAULT_CONTACT_NAME)
    values.update(map_user_fields(crm, lead, etype.kind, user_id))
    values.update(extra or {})
    values["LEAD_ID"] = lead["ID"]
    fm = None
    if etype.schema.multifield_types:
        fm = multifields.copy_all(lead.get("FM"), lambda: crm.next_id("multifield"))
    new_id = entities.create(crm, etype, values, user_id=user_id, fm=fm, via_rest=False)
    created[etype.type_id] = new_id
    return new_id


def _link_requisite(crm: Crm, deal_id: int, company_id: Any, contact_ids: list[int]) -> None:
    """The client's default requisite at deal time (company first; leadconverter.php:754-797)."""
    owners = [(COMPANY, company_id)] if company_id else []
    owners += [(CONTACT, contact_ids[0])] if contact_ids else []
    for owner in owners:
        found = requisites.of_owner(crm, *owner)
        if found:
            requisites.link(crm, deal_id, found[0]["ID"])
            return


def _finalize(
    crm: Crm,
    lead: Row,
    created: dict[int, int],
    options: ConversionOptions,
    user_id: int,
    company_id: Any,
    contact_id: Any,
    repeat: bool,
) -> None:
    lead_id = lead["ID"]
    if crm.knob("conversion_activities", "docs") == "code":
        for activity_id in activities.bound_to(crm, LEAD, lead_id):
            for type_id in (DEAL, CONTACT, COMPANY):
                if type_id in created:
                    activities.add_binding(crm, activity_id, (type_id, created[type_id]))
    elif not options.complete_activities:
        # The helpdesk's reading: "activities linked with leads will be moved to deals"
        # (helpdesk.bitrix24.com/open/17645664): owner the deal, the lead unbound.
        activities.move_all(crm, (LEAD, lead_id), (DEAL, created[DEAL]))
    for entry_id in timeline.bound_to(crm, LEAD, lead_id):
        for type_id in (DEAL, CONTACT, COMPANY):
            if type_id in created:
                timeline.bind(crm, entry_id, type_id, created[type_id])
    values: Row = {"STATUS_ID": "CONVERTED"}
    if not repeat:
        if contact_id:
            values.update(CONTACT_ID=contact_id, CONTACT_IDS=[contact_id])
        if company_id:
            values["COMPANY_ID"] = company_id
    entities.change(
        crm,
        entities.LEAD_TYPE,
        lead_id,
        values,
        user_id=user_id,
        via_rest=False,
        complete_activities=options.complete_activities,
    )
    for type_id, client_id in ((COMPANY, company_id), (CONTACT, contact_id)):
        if client_id and not requisites.of_owner(crm, type_id, client_id):
            _requisite_from_address(crm, type_id, client_id, user_id)


def _requisite_from_address(crm: Crm, type_id: int, client_id: int, user_id: int) -> None:
    """AddressRequisiteConverter::processEntity (addressrequisiteconverter.php:42-135)."""
    kind = "company" if type_id == COMPANY else "contact"
    client = crm.table(kind).get(client_id)
    address = requisites.own_address(client or {})
    if client is None or not address:
        return
    if type_id == COMPANY:
        name = client.get("TITLE") or ""
    else:
        name = " ".join(str(client[n]) for n in ("NAME", "LAST_NAME") if client.get(n))
    requisite_id = requisites.create(
        crm,
        {
            "ENTITY_TYPE_ID": type_id,
            "ENTITY_ID": client_id,
            "PRESET_ID": requisites.DEFAULT_PRESET[type_id],
            "NAME": name,
            "SORT": 500,
            "ACTIVE": "Y",
            "ADDRESS_ONLY": "Y",
        },
        user_id=user_id,
    )
    requisites.put_address(
        crm,
        requisites.PRIMARY_ADDRESS,
        (requisites.REQUISITE, requisite_id),
        {**address, "ANCHOR_TYPE_ID": type_id, "ANCHOR_ID": client_id},
    )


# --- custom fields ---------------------------------------------------------------------------


def _pair_key(row: Row) -> tuple[str, str, str]:
    """userfieldsynchronizer.php:514-566,646-655: label (lower-case, no spaces), type, multiple."""
    text = userfields.label(row).lower().replace(" ", "")
    return text, row["USER_TYPE_ID"], row["MULTIPLE"]


def pairs(crm: Crm, kind: str) -> dict[str, Row]:
    """Lead field name -> the target field it maps to (each target field used once)."""
    free: dict[tuple[str, str, str], list[Row]] = {}
    for row in userfields.of_kind(crm, kind):
        if _pair_key(row)[0]:  # no label: never paired (getFieldComplianceCode gives '')
            free.setdefault(_pair_key(row), []).append(row)
    found: dict[str, Row] = {}
    for row in userfields.of_kind(crm, "lead"):
        candidates = free.get(_pair_key(row)) if _pair_key(row)[0] else None
        if candidates:
            found[row["FIELD_NAME"]] = candidates.pop(0)
    return found


def synchronize(crm: Crm, kind: str) -> None:
    """Create in `kind` the lead fields it has no twin for (UserFieldSynchronizer::synchronize)."""
    paired = pairs(crm, kind)
    for row in userfields.of_kind(crm, "lead"):
        if row["FIELD_NAME"] in paired or row["USER_TYPE_ID"] == "resourcebooking":
            continue
        fields: dict[str, Any] = {
            "FIELD_NAME": f"{row['FIELD_NAME'][len('UF_CRM_') :]}_{kind[:2].upper()}",
            "USER_TYPE_ID": row["USER_TYPE_ID"],
            "MULTIPLE": row["MULTIPLE"],
            "SETTINGS": dict(row.get("SETTINGS") or {}),
            **{name: dict(row[name]) for name in userfields.LABELS},
        }
        if row["USER_TYPE_ID"] == "enumeration":
            fields["LIST"] = [
                {"VALUE": i["VALUE"], "SORT": i["SORT"], "DEF": i["DEF"]} for i in row["LIST"]
            ]
        userfields.define(crm, kind, fields)


def map_user_fields(crm: Crm, lead: Row, kind: str, user_id: int) -> Row:
    """The lead's custom-field values, as the target's fields (entityconversionmapper.php)."""
    out: Row = {}
    for name, target in pairs(crm, kind).items():
        value = lead.get(name)
        if value in (None, "", []):
            continue
        source = userfields.definition(crm, "lead", name) or {}
        user_type = source.get("USER_TYPE_ID")
        if user_type == "resourcebooking":
            continue
        if user_type == "enumeration":
            value = _enum_by_text(source, target, value)
        elif user_type == "file":
            ids = value if isinstance(value, list) else [value]
            copies = [userfields.copy_file(crm, int(i), user_id) for i in ids]
            value = [c for c in copies if c] if isinstance(value, list) else copies[0]
        elif user_type == "address":
            value = _without_address_id(value)
        if value not in (None, "", []):
            out[target["FIELD_NAME"]] = value
    return out


def _enum_by_text(source: Row, target: Row, value: Any) -> Any:
    """Option IDs re-mapped by option text; an option the target lacks is dropped (:300-369)."""
    texts = {str(i["ID"]): i["VALUE"] for i in source.get("LIST") or []}
    ids = {i["VALUE"]: str(i["ID"]) for i in target.get("LIST") or []}
    mapped = [
        ids.get(texts.get(str(v), "")) for v in (value if isinstance(value, list) else [value])
    ]
    kept = [m for m in mapped if m]
    return kept if isinstance(value, list) else (kept[0] if kept else None)


def _without_address_id(value: Any) -> Any:
    """An address value re-encoded without its location id (entityconversionmapper.php:430-455)."""
    items = value if isinstance(value, list) else [value]
    cleaned = ["|".join(str(v).split("|")[:2]) for v in items]
    return cleaned if isinstance(value, list) else cleaned[0]
