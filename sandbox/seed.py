"""Deterministic demo data: varied leads with the clients, product rows and activities around them.

The same `seed` always yields the same rows (the clock is fixed during seeding). Leads are people,
companies or both; some share a phone or e-mail (work for duplicate matching); some are repeat
leads of seeded contacts/companies; every stage occurs, most leads are in progress; converted
leads come with the contact/company/deal the converter made from them.
"""

from __future__ import annotations

import base64
import random
from typing import Any

from sandbox.crm import activities, entities, mode, productrows, userfields
from sandbox.crm.context import ConversionOptions, Crm
from sandbox.crm.fields import LEAD

_FIRST = (
    "Anna",
    "Boris",
    "Clara",
    "Dmitri",
    "Elena",
    "Felix",
    "Greta",
    "Hugo",
    "Irina",
    "Jonas",
    "Katya",
    "Lukas",
    "Maria",
    "Nikolai",
    "Olga",
    "Pavel",
    "Rosa",
    "Stefan",
    "Tanja",
    "Viktor",
)
_LAST = (
    "Andersen",
    "Bauer",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Hansen",
    "Ivanova",
    "Jensen",
    "Keller",
    "Lopez",
    "Meyer",
    "Novak",
    "Olsen",
    "Petrov",
    "Quinn",
    "Rossi",
    "Schmidt",
    "Weber",
)
_COMPANY_WORDS = (
    "Alpine",
    "Blue",
    "Cedar",
    "Delta",
    "Ember",
    "Falcon",
    "Granite",
    "Harbor",
    "Iris",
    "Juniper",
)
_COMPANY_KINDS = ("Logistics", "Foods", "Systems", "Studio", "Partners", "Trading", "Labs")
_SOURCES = ("CALL", "EMAIL", "WEB", "ADVERTISING", "PARTNER", "RECOMMENDATION", "WEBFORM")
_STAGES = (("NEW", 35), ("IN_PROCESS", 30), ("PROCESSED", 15), ("CONVERTED", 10), ("JUNK", 10))
_UTM = (
    ("google", "cpc", "spring_sale"),
    ("facebook", "cpm", "brand"),
    ("newsletter", "email", "q3"),
)
_PRODUCTS = (
    ("Consulting hour", 120.0),
    ("Licence seat", 480.0),
    ("Support plan", 990.0),
    ("Onboarding", 1500.0),
    ("Hardware kit", 2300.0),
)
_ACTIVITY_KINDS = (
    (activities.CALL, "Call back"),
    (activities.MEETING, "Meeting"),
    (activities.TASK, "Prepare offer"),
    (activities.EMAIL, "Send price list"),
)
_START = 1_704_092_400  # 2024-01-01T10:00:00+03:00: seeded dates do not depend on the clock
_SPAN = 365 * 24 * 3600


def populate(crm: Crm, count: int, seed: int, *, custom_fields: bool = False) -> None:
    """Add `count` leads (and their surroundings) to an empty portal, without events.

    With `custom_fields`, lead/deal/contact/company get the realistic custom fields first and
    most leads carry values in them (the seeded conversions map them natively).
    """
    rng = random.Random(seed)
    real_clock = crm.clock
    moment = [_START]
    crm.clock = lambda: moment[0]
    try:
        values_for = _no_custom_values
        if custom_fields:
            values_for = _custom_values(crm, define_custom_fields(crm, seed)["lead"], seed)
        clients = _clients(crm, rng, max(2, count // 50))
        shared_phones = [_phone(rng) for _ in range(max(1, count // 20))]
        shared_emails = [f"team{n}@shared.example" for n in range(max(1, count // 25))]
        for number in range(count):
            moment[0] = _START + number * _SPAN // max(count, 1) + rng.randrange(60)
            _lead(crm, rng, number, clients, shared_phones, shared_emails, values_for)
    finally:
        crm.clock = real_clock
        crm.events.clear()


def _clients(crm: Crm, rng: random.Random, count: int) -> list[tuple[str, int]]:
    """Existing contacts and companies that repeat leads come back from."""
    found = []
    for n in range(count):
        assigned = rng.choice((1, 2))
        phone = [{"VALUE": _phone(rng), "VALUE_TYPE": "WORK"}]
        if n % 2:
            name = f"{rng.choice(_COMPANY_WORDS)} {rng.choice(_COMPANY_KINDS)}"
            company_id = entities.create(
                crm,
                entities.COMPANY_TYPE,
                {"TITLE": name, "ASSIGNED_BY_ID": assigned},
                user_id=assigned,
                multis={"PHONE": phone},
                via_rest=False,
            )
            found.append(("COMPANY_ID", company_id))
        else:
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            email = [{"VALUE": f"{first}.{last}{n}@client.example".lower(), "VALUE_TYPE": "WORK"}]
            contact_id = entities.create(
                crm,
                entities.CONTACT_TYPE,
                {"NAME": first, "LAST_NAME": last, "ASSIGNED_BY_ID": assigned},
                user_id=assigned,
                multis={"PHONE": phone, "EMAIL": email},
                via_rest=False,
            )
            found.append(("CONTACT_ID", contact_id))
    return found


def _lead(
    crm: Crm,
    rng: random.Random,
    number: int,
    clients: list[tuple[str, int]],
    shared_phones: list[str],
    shared_emails: list[str],
    values_for: Any,
) -> None:
    assigned = rng.choice((1, 2))
    stage = _weighted(rng, _STAGES)
    values, multis = _lead_values(rng, number, shared_phones, shared_emails)
    values.update(values_for(number))
    values["ASSIGNED_BY_ID"] = assigned
    if rng.random() < 0.05:
        field, client_id = rng.choice(clients)
        values[field] = client_id
        values["IS_RETURN_CUSTOMER"] = "Y"
    if stage == "JUNK":
        values["STATUS_ID"] = "JUNK"
    elif stage != "CONVERTED":
        values["STATUS_ID"] = stage
    lead_id = entities.create(
        crm, entities.LEAD_TYPE, values, user_id=assigned, multis=multis, via_rest=False
    )
    if rng.random() < 0.25:
        productrows.replace(crm, LEAD, lead_id, _product_rows(rng))
    closed = stage in ("CONVERTED", "JUNK")
    phone = multis.get("PHONE", [{}])[0].get("VALUE")
    for _ in range(rng.randint(0, 3)):
        _activity(crm, rng, lead_id, assigned, phone, done=closed or rng.random() < 0.4)
    if stage == "CONVERTED":
        client = (
            "both"
            if values.get("COMPANY_TITLE") and values.get("NAME")
            else ("company" if values.get("COMPANY_TITLE") else "contact")
        )
        # Converted in Classic mode by a user who declined creating missing custom fields.
        options = ConversionOptions(client, sync_fields=False)
        mode.convert_lead(crm, lead_id, options, user_id=assigned)


def _lead_values(
    rng: random.Random, number: int, shared_phones: list[str], shared_emails: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    shape = rng.random()
    values: dict[str, Any] = {}
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    company = f"{rng.choice(_COMPANY_WORDS)} {rng.choice(_COMPANY_KINDS)}"
    if shape < 0.6:
        values.update(NAME=first, LAST_NAME=last, TITLE=f"{first} {last}")
    elif shape < 0.8:
        values.update(COMPANY_TITLE=company, TITLE=f"Inquiry from {company}")
    else:
        values.update(
            NAME=first,
            LAST_NAME=last,
            COMPANY_TITLE=company,
            POST="Manager",
            TITLE=f"{first} {last} ({company})",
        )
    opportunity = 0 if rng.random() < 0.2 else rng.randrange(5, 500) * 100
    values.update(
        OPPORTUNITY=float(opportunity),
        CURRENCY_ID=_weighted(rng, (("USD", 7), ("EUR", 2), ("RUB", 1))),
        SOURCE_ID=rng.choice(_SOURCES),
        COMMENTS=f"Seeded lead {number + 1}",
    )
    if rng.random() < 0.3:
        source, medium, campaign = rng.choice(_UTM)
        values.update(UTM_SOURCE=source, UTM_MEDIUM=medium, UTM_CAMPAIGN=campaign)
    multis: dict[str, Any] = {}
    if rng.random() < 0.85:
        phone = rng.choice(shared_phones) if rng.random() < 0.1 else _phone(rng)
        multis["PHONE"] = [{"VALUE": phone, "VALUE_TYPE": rng.choice(("WORK", "MOBILE"))}]
    if rng.random() < 0.7:
        email = (
            rng.choice(shared_emails)
            if rng.random() < 0.1
            else f"{first}.{last}.{number}@mail.example".lower()
        )
        multis["EMAIL"] = [{"VALUE": email, "VALUE_TYPE": "WORK"}]
    return values, multis


def _product_rows(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {"PRODUCT_NAME": name, "PRICE": price, "QUANTITY": rng.randint(1, 5)}
        for name, price in rng.sample(_PRODUCTS, rng.randint(1, 3))
    ]


def _activity(
    crm: Crm, rng: random.Random, lead_id: int, user_id: int, phone: str | None, *, done: bool
) -> None:
    type_id, subject = rng.choice(_ACTIVITY_KINDS)
    communications = (
        [{"VALUE": phone, "ENTITY_ID": lead_id, "ENTITY_TYPE_ID": LEAD}] if phone else []
    )
    values = {
        "TYPE_ID": type_id,
        "SUBJECT": subject,
        "RESPONSIBLE_ID": user_id,
        "COMPLETED": "Y" if done else "N",
        "COMMUNICATIONS": communications,
        "DIRECTION": 2 if type_id in (activities.CALL, activities.EMAIL) else 0,
    }
    activities.create(crm, values, [(LEAD, lead_id)], user_id=user_id)


def _phone(rng: random.Random) -> str:
    return f"+1555{rng.randrange(10**7):07d}"


def _weighted(rng: random.Random, choices: tuple[tuple[str, int], ...]) -> str:
    point = rng.random() * sum(weight for _, weight in choices)
    for choice, weight in choices:
        point -= weight
        if point < 0:
            return choice
    return choices[-1][0]


# --- custom fields (`--custom-fields`) -----------------------------------------------------------

# (label, USER_TYPE_ID, MULTIPLE, settings or enumeration options, targets that have a twin)
# Labels pair fields across entities as the native synchroniser does; the targets' own option
# lists differ on purpose (ids always, one text sometimes), and some lead fields have no twin.
_D, _C, _CO = "deal", "contact", "company"
_CUSTOM = (
    ("Budget note", "string", "N", None, (_D, _C, _CO)),
    ("Employees count", "integer", "N", None, (_D, _CO)),
    ("Discount rate", "double", "N", {"PRECISION": 2}, (_D,)),
    ("Newsletter", "boolean", "N", None, (_D, _C)),
    ("First contact date", "date", "N", None, (_D, _C)),
    ("Callback at", "datetime", "N", None, (_D,)),
    ("Budget", "money", "N", None, (_D, _CO)),
    ("Website", "url", "N", None, (_D, _C, _CO)),
    ("Office address", "address", "N", None, (_CO,)),
    ("Interest", "enumeration", "N", ("Hardware", "Software", "Services"), (_D, _C)),
    ("Channels", "enumeration", "Y", ("Email", "Phone", "Chat"), (_D,)),
    ("Account manager", "employee", "N", None, (_D, _C, _CO)),
    ("Related company", "crm", "N", {"COMPANY": "Y"}, (_D,)),
    ("Industry", "crm_status", "N", {"ENTITY_TYPE": "INDUSTRY"}, (_D, _CO)),
    ("Catalog item", "iblock_element", "N", {"IBLOCK_ID": 14}, (_D,)),
    ("Catalog section", "iblock_section", "N", {"IBLOCK_ID": 14}, (_D,)),
    ("Brief", "file", "N", None, (_D, _C)),
    ("Attachments", "file", "Y", None, (_D,)),
    ("Tags", "string", "Y", None, (_D, _C)),
    ("Demo slot", "resourcebooking", "N", None, (_D,)),
    ("Lead only note", "string", "N", None, ()),
)
# A target's options: the contact's "Interest" lacks "Hardware" (a warning, not a silent drop).
_TARGET_OPTIONS = {("contact", "Interest"): ("Software", "Services")}


def define_custom_fields(crm: Crm, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Create realistic custom fields on lead, deal, contact and company; definitions by kind."""
    rng = random.Random(seed * 7919)
    made: dict[str, list[dict[str, Any]]] = {k: [] for k in ("lead", _D, _C, _CO)}
    stamp = 1_720_000_000_000
    for label, user_type, multiple, extra, targets in _CUSTOM:
        for kind in ("lead", *targets):
            stamp += rng.randrange(1, 9999)
            fields: dict[str, Any] = {
                "FIELD_NAME": str(stamp),
                "USER_TYPE_ID": user_type,
                "MULTIPLE": multiple,
                "EDIT_FORM_LABEL": {"en": label, "de": f"{label} (de)"},
                "LIST_COLUMN_LABEL": {"en": label, "de": f"{label} (de)"},
            }
            if user_type == "enumeration":
                options = _TARGET_OPTIONS.get((kind, label), extra)
                fields["LIST"] = [{"VALUE": v, "SORT": 10 * (n + 1)} for n, v in enumerate(options)]
            elif isinstance(extra, dict):
                fields["SETTINGS"] = extra
            field_id = userfields.define(crm, kind, fields)
            made[kind].append(crm.table("userfield").get(field_id) or {})
    return made


def _uf_value(rng: random.Random, crm: Crm, field: dict[str, Any], number: int) -> Any:
    kind = field["USER_TYPE_ID"]
    if kind == "enumeration":
        ids = [str(i["ID"]) for i in field["LIST"]]
        return (
            rng.sample(ids, rng.randint(1, len(ids)))
            if field["MULTIPLE"] == "Y"
            else rng.choice(ids)
        )
    if kind == "file":
        body = base64.b64encode(f"brief of lead {number + 1}\n".encode()).decode()
        one = {"fileData": [f"brief-{number + 1}.txt", body]}
        return [one, one] if field["MULTIPLE"] == "Y" else one
    value = {
        "string": f"note {number + 1}",
        "integer": str(rng.randrange(1, 500)),
        "double": f"{rng.randrange(0, 3000) / 100:.2f}",
        "boolean": rng.choice(("1", "0")),
        "date": f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 28):02d}T00:00:00+03:00",
        "datetime": f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 28):02d}T10:30:00+03:00",
        "money": f"{rng.randrange(1, 90) * 100}|USD",
        "url": f"https://site{number + 1}.example",
        "address": f"Main street {number + 1}, Springfield|40.1;-89.6|{number + 1}",
        "employee": str(rng.choice((1, 2))),
        "crm": str(rng.randrange(1, 3)),
        "crm_status": rng.choice(("IT", "MANUFACTURING", "BANKING")),
        "iblock_element": str(rng.randrange(100, 200)),
        "iblock_section": str(rng.randrange(1, 9)),
        "resourcebooking": [],
    }[kind]
    return [value, f"{value} (2)"] if field["MULTIPLE"] == "Y" and isinstance(value, str) else value


def _no_custom_values(number: int) -> dict[str, Any]:
    return {}


def _custom_values(crm: Crm, definitions: list[dict[str, Any]], seed: int) -> Any:
    """Values for about two thirds of the leads in most of their custom fields (own RNG, so the
    rest of the seeded data is the same with or without custom fields)."""
    rng = random.Random(seed * 104_729)

    def values_for(number: int) -> dict[str, Any]:
        if rng.random() > 0.66:
            return {}
        return {
            f["FIELD_NAME"]: _uf_value(rng, crm, f, number)
            for f in definitions
            if rng.random() < 0.8
        }

    return values_for
