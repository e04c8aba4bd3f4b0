"""Parity check: a lead b24app converted against its twin Bitrix24 converted itself.

A sandbox portal (knob `conversion_activities=code`: activities bound to every target as the
server code does, `entityconverter.php:1211-1227`) is filled through REST with pairs of identical
leads - names or none, company titles or none, addresses, UTM, OPENED, source descriptions,
product rows with tax, open and closed activities, timeline comments, repeat leads of existing
clients with and without a requisite. b24app converts one lead of every pair (`convert` with
the given options); then the admin switches the CRM to Simple with the same options, and the
sandbox's native conversion (written from `crm/lib/conversion/*`) converts every other lead.

Each lead's graph - the lead, its deal, contacts, companies, requisites with their addresses, the
deal's requisite link, activities with bindings, owner and state, the timeline comments'
bindings, product rows - is read from the sandbox core, ids replaced by roles (LEAD, DEAL,
CONTACT, COMPANY, the pre-existing client ids kept) and timestamps dropped, and the two twins'
graphs are compared field by field. Every difference is printed; those docs/parity.md explains
(`EXPLAINED`) are marked so, and the run fails when any other is left.

    python -m bench.parity                           # 24 pairs, client both, activities complete
    python -m bench.parity --client contact --activities move --pairs 10
    python -m bench.parity --custom-fields           # + every custom-field type (sandbox seed)
    python -m bench.parity --create-fields           # + both sides create the missing fields

With `--custom-fields` the portal gets the sandbox's realistic custom fields (every type, some
without a twin, a target list lacking an option) and most leads carry values in them; the native
side maps them into existing twins only (the user declined creating fields), as b24app does
with its policy's "create missing custom fields" off. File values are compared by name and
content (each conversion makes its own copies).
"""

from __future__ import annotations

import argparse
import base64
import random
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b24app.config import Settings
from b24app.crm.policy import Policy
from sandbox.errors import ApiError

# Differences docs/parity.md explains (the REST reason each cannot be closed), by field path.
EXPLAINED = {
    "deal.ORIGINATOR_ID": "b24app's idempotency key (docs/parity.md, 'Marks')",
    "deal.ORIGIN_ID": "b24app's idempotency key (docs/parity.md, 'Marks')",
    "contact.ORIGINATOR_ID": "b24app's idempotency key (docs/parity.md, 'Marks')",
    "contact.ORIGIN_ID": "b24app's idempotency key (docs/parity.md, 'Marks')",
    "contact.ORIGIN_VERSION": "the run's token on the clients it makes (docs/parity.md, 'Marks')",
    "company.ORIGINATOR_ID": "b24app's idempotency key (docs/parity.md, 'Marks')",
    "company.ORIGIN_ID": "b24app's idempotency key (docs/parity.md, 'Marks')",
    "company.ORIGIN_VERSION": "the run's token on the clients it makes (docs/parity.md, 'Marks')",
    "activity.bindings": "keep open: REST unbinds the lead (docs/parity.md, 'Activities')",
    "activity.OWNER": "keep open: REST unbinds the lead (docs/parity.md, 'Activities')",
    "deal.WEBFORM_ID": "not writable through REST (docs/parity.md, 'Fields')",
    "contact.FACE_ID": "not writable through REST (docs/parity.md, 'Fields')",
    "lead.IS_RETURN_CUSTOMER": "REST marks a lead given CONTACT_ID/COMPANY_ID a repeat lead "
    "(docs/parity.md, 'The lead')",
}
_DROP = {
    "ID",
    "DATE_CREATE",
    "DATE_MODIFY",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "MOVED_BY_ID",
    "MOVED_TIME",
    "BEGINDATE",
    "CLOSEDATE",
    "LAST_ACTIVITY_TIME",
    "LAST_ACTIVITY_BY",
    "DATE_CLOSED",
    "CREATED",
    "LAST_UPDATED",
    "START_TIME",
    "END_TIME",
    "DEADLINE",
    "LEAD_ID",  # compared as a role below
    "TITLE_ORIGINAL",
}
_FIRST = ("Ada", "Boris", "Chen", "Dana", "Emil", "Farah", "", "Gus")
_LAST = ("Novak", "Costa", "Ito", "Berg", "", "Lind")
_COMPANY = ("Acme Ltd", "Granite Trading", "", "Juniper Systems")


@dataclass(frozen=True)
class Options:
    """One parity run's settings."""

    pairs: int = 24
    client: str = "both"
    activities: str = "complete"
    seed: int = 1
    custom_fields: bool = False
    create_fields: bool = False

    def command(self) -> str:
        """The command that reproduces this run."""
        return (
            f"python -m bench.parity --pairs {self.pairs} --client {self.client} "
            f"--activities {self.activities} --seed {self.seed}"
            + (" --custom-fields" if self.custom_fields else "")
            + (" --create-fields" if self.create_fields else "")
        )


@dataclass(frozen=True)
class Difference:
    """One field that differs between the twins."""

    pair: tuple[int, int]  # (b24app's lead, Bitrix24's lead)
    path: str
    b24app: Any
    native: Any

    @property
    def explained(self) -> str | None:
        """docs/parity.md's reason for it, or None."""
        key = ".".join(part.split("[")[0] for part in self.path.split(".")[-2:])
        if key == "activity.bindings":  # only the lead's binding may be missing
            mine, native = set(self.b24app or ()), set(self.native or ())
            if not (mine <= native and native - mine == {"LEAD"}):
                return None
        if key == "activity.OWNER" and (self.b24app, self.native) != ("DEAL", "LEAD"):
            return None
        return EXPLAINED.get(key)


def _call(core: Any, method: str, params: Mapping[str, Any] | None = None) -> Any:
    from sandbox.portal import CallContext

    return core.dispatch(method, dict(params or {}), CallContext()).result


def _pairs(core: Any, options: Options) -> list[tuple[int, int]]:
    """Seed the pairs of identical leads; (lead for b24app, lead for Bitrix24) each."""
    rng = random.Random(options.seed)
    custom = _lead_custom_fields(core) if options.custom_fields else []
    pairs = []
    for n in range(options.pairs):
        fields, extras = _lead_shape(rng, n)
        fields |= _custom_values(rng, custom, n)
        twins = []
        for _ in range(2):
            # each twin its own existing clients: a requisite one conversion gives a shared
            # client would change what the other finds
            clients = _existing_clients(core) if n % 8 in (5, 6) else {}
            if n % 8 == 5:
                fields["COMPANY_ID"] = clients["company"][n % 16 // 8]
            if n % 8 == 6:
                fields["CONTACT_ID"] = clients["contact"][0]
            lead_id = int(_call(core, "crm.lead.add", {"fields": fields}))
            _fill(core, lead_id, extras)
            twins.append(lead_id)
        pairs.append((twins[0], twins[1]))
    return pairs


def _lead_custom_fields(core: Any) -> list[dict[str, Any]]:
    return list(_call(core, "crm.lead.userfield.list", {"filter": {"LANG": "en"}}) or [])


def _custom_values(
    rng: random.Random, definitions: Sequence[Mapping[str, Any]], n: int
) -> dict[str, Any]:
    """Values in every custom field of two leads out of three (each type, multiple ones with
    two items, enumerations any option - the contact's list lacks one)."""
    if n % 3 == 2:
        return {}
    values: dict[str, Any] = {}
    for field in definitions:
        kind, multiple = field["USER_TYPE_ID"], field["MULTIPLE"] == "Y"
        if kind == "enumeration":
            ids = [str(i["ID"]) for i in field.get("LIST") or []]
            value: Any = rng.sample(ids, 2) if multiple else rng.choice(ids)
        elif kind == "file":
            body = base64.b64encode(f"file of lead {n}\n".encode()).decode()
            value = {"fileData": [f"brief-{n}.txt", body]}
            value = [value, {"fileData": [f"extra-{n}.txt", body]}] if multiple else value
        else:
            value = {
                "string": f"note {n}",
                "integer": str(rng.randrange(1, 500)),
                "double": f"{rng.randrange(0, 3000) / 100:.2f}",
                "boolean": rng.choice(("1", "0")),
                "date": f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 28):02d}",
                "datetime": f"2024-{rng.randrange(1, 13):02d}-10T10:30:00+03:00",
                "money": f"{rng.randrange(1, 90) * 100}|USD",
                "url": f"https://site{n}.example",
                "address": f"Main street {n}, Springfield|40.1;-89.6|{n + 1}",
                "employee": "1",
                "crm": "C_1",
                "crm_status": rng.choice(("IT", "BANKING")),
                "iblock_element": str(rng.randrange(100, 200)),
                "iblock_section": str(rng.randrange(1, 9)),
                "resourcebooking": None,
            }.get(kind)
            if value is not None and multiple:
                value = [value, f"{value}-2"]
        if value is not None:
            values[field["FIELD_NAME"]] = value
    return values


def _existing_clients(core: Any) -> dict[str, list[int]]:
    """Clients repeat leads come back from; one company has a requisite already."""
    company = int(_call(core, "crm.company.add", {"fields": {"TITLE": "Old Client Inc"}}))
    bare = int(
        _call(
            core,
            "crm.company.add",
            {"fields": {"TITLE": "Bare Co", "ADDRESS": "1 Main St", "ADDRESS_CITY": "Oslo"}},
        )
    )
    contact = int(_call(core, "crm.contact.add", {"fields": {"NAME": "Old", "LAST_NAME": "Buyer"}}))
    requisite = _call(
        core,
        "crm.requisite.add",
        {"fields": {"ENTITY_TYPE_ID": 4, "ENTITY_ID": company, "PRESET_ID": 1, "NAME": "Old"}},
    )
    assert requisite
    return {"company": [company, bare], "contact": [contact]}


def _lead_shape(rng: random.Random, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    first, last, company = rng.choice(_FIRST), rng.choice(_LAST), rng.choice(_COMPANY)
    fields: dict[str, Any] = {
        "TITLE": f"Parity lead {n}" if n % 7 else "",
        "NAME": first,
        "LAST_NAME": last,
        "COMPANY_TITLE": company,
        "SOURCE_ID": rng.choice(("CALL", "WEB", "EMAIL")),
        "SOURCE_DESCRIPTION": "from the fair" if n % 3 == 0 else "",
        "COMMENTS": f"lead {n}" if n % 2 else "",
        "OPENED": rng.choice(("Y", "N")),
        "CURRENCY_ID": "USD",
        "OPPORTUNITY": float(rng.randrange(0, 50) * 100),
        "ASSIGNED_BY_ID": 1,
        "POST": "Manager" if n % 4 == 0 else "",
    }
    if n % 3 == 1:
        fields |= {"UTM_SOURCE": "google", "UTM_MEDIUM": "cpc", "UTM_CAMPAIGN": f"c{n}"}
    if n % 2 == 0:
        fields |= {"ADDRESS": f"{n} Harbour Rd", "ADDRESS_CITY": "Lisbon", "ADDRESS_COUNTRY": "PT"}
    if n % 3 != 2:
        fields["PHONE"] = [{"VALUE": f"+1555000{n:04d}", "VALUE_TYPE": "WORK"}]
    if n % 2:
        fields["EMAIL"] = [{"VALUE": f"lead{n}@parity.example", "VALUE_TYPE": "WORK"}]
    extras = {
        "rows": [
            {"PRODUCT_NAME": "Widget", "PRICE": 100.0, "QUANTITY": 2, "TAX_RATE": 20},
            {"PRODUCT_NAME": "Service", "PRICE": 55.5, "QUANTITY": 1},
        ][: n % 3],
        "activities": [(n + k) % 2 == 0 for k in range(n % 4)],  # completed or not
        "comments": [f"note {k} on lead {n}" for k in range(n % 3)],
    }
    return fields, extras


def _fill(core: Any, lead_id: int, extras: Mapping[str, Any]) -> None:
    if extras["rows"]:
        _call(core, "crm.lead.productrows.set", {"id": lead_id, "rows": extras["rows"]})
    for k, done in enumerate(extras["activities"]):
        _call(
            core,
            "crm.activity.add",
            {
                "fields": {
                    "OWNER_TYPE_ID": 1,
                    "OWNER_ID": lead_id,
                    "TYPE_ID": 3,  # a task: no communications needed
                    "SUBJECT": f"Task {k}",
                    "RESPONSIBLE_ID": 1,
                    "COMPLETED": "Y" if done else "N",
                }
            },
        )
    for text in extras["comments"]:
        _call(
            core,
            "crm.timeline.comment.add",
            {"fields": {"ENTITY_ID": lead_id, "ENTITY_TYPE": "lead", "COMMENT": text}},
        )


def _rows(core: Any, method: str, flt: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(
        _call(core, method, {"filter": dict(flt), "order": {"ID": "ASC"}, "select": ["*"]}) or []
    )


def graph(core: Any, lead_id: int) -> dict[str, Any]:
    """A lead's conversion as data: ids replaced by roles, timestamps dropped."""
    lead = _call(core, "crm.lead.get", {"id": lead_id})
    deals = _rows(core, "crm.deal.list", {"LEAD_ID": lead_id})
    contacts = _rows(core, "crm.contact.list", {"LEAD_ID": lead_id})
    companies = _rows(core, "crm.company.list", {"LEAD_ID": lead_id})
    roles: dict[tuple[str, int], str] = {("lead", lead_id): "LEAD"}
    for kind, found in (("deal", deals), ("contact", contacts), ("company", companies)):
        for k, row in enumerate(found):
            roles[(kind, int(row["ID"]))] = kind.upper() + (f"#{k}" if k else "")

    for kind in ("contact", "company"):  # a repeat lead's own clients (each twin has its own)
        linked = int(lead.get(f"{kind.upper()}_ID") or 0)
        if linked and (kind, linked) not in roles:
            roles[(kind, linked)] = f"{kind.upper()}(linked)"

    def role(kind: str, value: Any) -> Any:
        try:
            number = int(value or 0)
        except (TypeError, ValueError):
            return value
        return roles.get((kind, number), number or None)

    def plain(row: Mapping[str, Any]) -> dict[str, Any]:
        # texts naming the lead (a default title "Lead #12") name its role
        return {
            k: v.replace(f"#{lead_id}", "#LEAD") if isinstance(v, str) else v
            for k, v in _plain(row, role, core).items()
        }

    out: dict[str, Any] = {"lead": plain(lead)}
    for kind, found in (("deal", deals), ("contact", contacts), ("company", companies)):
        for k, row in enumerate(found):
            full = _call(core, f"crm.{kind}.get", {"id": row["ID"]})
            name = f"{kind}[{k}]"
            out[name] = plain(full)
            out[name]["LEAD"] = role("lead", full.get("LEAD_ID"))
            if kind in ("contact", "company"):
                out[f"{name}.requisites"] = _requisites(core, 3 if kind == "contact" else 4, row)
    client_ids = {
        ("company", lead.get("COMPANY_ID")),
        ("contact", lead.get("CONTACT_ID")),
    }
    for kind, client in sorted(client_ids, key=str):
        if client and int(client) and (kind, int(client)) not in roles:
            row = {"ID": client}
            out[f"{kind}(linked).requisites"] = _requisites(
                core, 3 if kind == "contact" else 4, row
            )
    for k, deal in enumerate(deals):
        out[f"deal[{k}].products"] = [
            {n: r.get(n) for n in ("PRODUCT_NAME", "PRICE", "QUANTITY", "TAX_RATE", "TAX_INCLUDED")}
            for r in _call(core, "crm.deal.productrows.get", {"id": deal["ID"]}) or []
        ]
        out[f"deal[{k}].contacts"] = [
            role("contact", i["CONTACT_ID"])
            for i in _call(core, "crm.deal.contact.items.get", {"id": deal["ID"]}) or []
        ]
        try:
            link = _call(
                core, "crm.requisite.link.get", {"entityTypeId": 2, "entityId": deal["ID"]}
            )
            out[f"deal[{k}].requisite_link"] = "linked" if link else None
        except ApiError:  # "Not found" when the deal has none
            out[f"deal[{k}].requisite_link"] = None
    activities = _call(
        core,
        "crm.activity.list",
        {
            "filter": {
                "BINDINGS": [{"OWNER_TYPE_ID": 1, "OWNER_ID": lead_id}]
                + [{"OWNER_TYPE_ID": 2, "OWNER_ID": int(d["ID"])} for d in deals]
            },
            "order": {"ID": "ASC"},
            "select": ["ID", "OWNER_TYPE_ID", "OWNER_ID", "COMPLETED", "SUBJECT"],
        },
    )
    kinds = {1: "lead", 2: "deal", 3: "contact", 4: "company"}
    for k, act in enumerate(activities or []):
        bound = _call(core, "crm.activity.binding.list", {"activityId": act["ID"]}) or []
        out[f"activity[{k}]"] = {
            "SUBJECT": act["SUBJECT"],
            "COMPLETED": act["COMPLETED"],
            "OWNER": role(kinds[int(act["OWNER_TYPE_ID"])], act["OWNER_ID"]),
            "bindings": sorted(str(role(kinds[b["entityTypeId"]], b["entityId"])) for b in bound),
        }
    comments = _call(
        core,
        "crm.timeline.comment.list",
        {"filter": {"ENTITY_ID": lead_id, "ENTITY_TYPE": "lead"}, "order": {"ID": "ASC"}},
    )
    for k, comment in enumerate(comments or []):
        bound = _call(core, "crm.timeline.bindings.list", {"filter": {"OWNER_ID": comment["ID"]}})
        out[f"comment[{k}]"] = {
            "COMMENT": comment["COMMENT"],
            "bindings": sorted(str(role(b["ENTITY_TYPE"], b["ENTITY_ID"])) for b in bound or []),
        }
    return out


def _requisites(core: Any, type_id: int, row: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = []
    for requisite in _rows(
        core, "crm.requisite.list", {"ENTITY_TYPE_ID": type_id, "ENTITY_ID": row["ID"]}
    ):
        item = {
            n: requisite.get(n) for n in ("PRESET_ID", "NAME", "ACTIVE", "ADDRESS_ONLY", "SORT")
        }
        addresses = _rows(
            core, "crm.address.list", {"ENTITY_TYPE_ID": 8, "ENTITY_ID": requisite["ID"]}
        )
        item["addresses"] = [
            {
                n: a.get(n)
                for n in ("TYPE_ID", "ADDRESS_1", "ADDRESS_2", "CITY", "POSTAL_CODE", "COUNTRY")
            }
            | {"ANCHOR": a.get("ANCHOR_TYPE_ID")}
            for a in addresses
        ]
        found.append(item)
    return found


def _file(core: Any, value: Any) -> Any:
    """A file value as its name and content (each conversion makes its own copy)."""
    if isinstance(value, list):
        return [_file(core, v) for v in value]
    if isinstance(value, Mapping) and "downloadUrl" in value:
        found = core.file(int(value["id"]))
        return ("file", *found) if found else ("file", None)
    return value


def _plain(row: Mapping[str, Any], role: Any, core: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in sorted(row.items()):
        if name in _DROP:
            continue
        if name.startswith("UF_CRM_") and core is not None:
            value = _file(core, value)
        if name in ("PHONE", "EMAIL", "WEB", "IM", "LINK") and isinstance(value, list):
            value = sorted((v.get("VALUE_TYPE"), v.get("VALUE")) for v in value)
        elif name in ("CONTACT_ID", "COMPANY_ID"):
            value = role(name.split("_")[0].lower(), value)
        elif name in ("CONTACT_IDS", "COMPANY_IDS") and isinstance(value, list):
            value = [role(name.split("_")[0].lower(), v) for v in value]
        out[name] = value
    return out


def compare(
    a: Mapping[str, Any], b: Mapping[str, Any], pair: tuple[int, int]
) -> Iterator[Difference]:
    """Every field that differs between two graphs (keys of either)."""
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key), b.get(key)
        if isinstance(left, Mapping) and isinstance(right, Mapping):
            for name in sorted(set(left) | set(right)):
                if _norm(left.get(name)) != _norm(right.get(name)):
                    yield Difference(pair, f"{key}.{name}", left.get(name), right.get(name))
        elif _norm(left) != _norm(right):
            yield Difference(pair, key, left, right)


def _norm(value: Any) -> Any:
    if value in ("", None, [], {}, "0", 0):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return str(int(number)) if number.is_integer() else str(number)
    return value


def run(options: Options) -> tuple[list[Difference], int]:
    """Seed, convert both halves, compare; (differences, pairs compared)."""
    from b24app.crm import conversion
    from b24app.portals import open_portal
    from b24app.store.journal import Journal
    from sandbox import Sandbox

    knobs = {"conversion_activities": "code"}
    with Sandbox(
        seed_leads=0, plan="fast", knobs=knobs, custom_fields=options.custom_fields
    ) as sandbox:
        core = sandbox.portal
        pairs = _pairs(core, options)
        policy = Policy.from_dict(
            {
                "client": options.client,
                "activities": options.activities,
                "pipeline": 0,
                "create_fields": options.create_fields,
            }
        )
        with tempfile.TemporaryDirectory(prefix="b24app-parity-") as tmp:
            settings = Settings.from_env(
                {
                    "B24_WEBHOOK_URL": sandbox.webhook_url,
                    "B24APP_PLAN": "fast",
                    "B24APP_DATABASE_URL": f"sqlite:///{Path(tmp) / 'j.db'}",
                }
            )
            target = open_portal(settings)
            journal = Journal.open(settings.database_url, portal=target.key)
            report = conversion.convert(
                target.client, journal, policy, lead_ids=[a for a, _ in pairs]
            )
        failed = [f"lead {x.lead_id}: {x.error}" for x in report.leads if x.status == "failed"]
        if failed:
            raise RuntimeError("b24app failed leads: " + "; ".join(failed[:3]))
        sandbox.set_mode(
            "simple",
            client=options.client,
            complete_activities=options.activities == "complete",
            sync_fields=options.create_fields or not options.custom_fields,
        )
        found = []
        for mine, native in pairs:
            found.extend(compare(graph(core, mine), graph(core, native), (mine, native)))
    return found, len(pairs)


def report_lines(differences: Sequence[Difference], pairs: int, options: Options) -> list[str]:
    """The printed report: every difference, explained ones marked, and a summary."""
    lines = []
    for diff in differences:
        mark = f"explained: {diff.explained}" if diff.explained else "UNEXPLAINED"
        lines.append(
            f"leads {diff.pair[0]}/{diff.pair[1]} {diff.path}: b24app={diff.b24app!r} "
            f"native={diff.native!r} [{mark}]"
        )
    open_ = sum(1 for d in differences if not d.explained)
    lines.append(
        f"{pairs} pairs (client {options.client}, activities {options.activities}): "
        f"{len(differences)} differences, {open_} not explained by docs/parity.md"
    )
    lines.append(f"reproduce: {options.command()}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the parity check; exit 1 when a difference is not explained."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.parity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--client", choices=("contact", "company", "both"), default="both")
    parser.add_argument("--activities", choices=("complete", "move"), default="complete")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--custom-fields",
        action="store_true",
        help="seed custom fields of every type and compare their values too",
    )
    parser.add_argument(
        "--create-fields",
        action="store_true",
        help="b24app creates the fields a target lacks, and so does the native side",
    )
    args = parser.parse_args(argv)
    options = Options(
        args.pairs,
        args.client,
        args.activities,
        args.seed,
        args.custom_fields or args.create_fields,
        args.create_fields,
    )
    differences, pairs = run(options)
    for line in report_lines(differences, pairs, options):
        print(line)
    return 1 if any(not d.explained for d in differences) else 0


if __name__ == "__main__":
    sys.exit(main())
