"""Custom fields on a sandbox portal: values arrive per type, refusals are clear and partial
writes never happen, missing fields are created once."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from b24app.crm import conversion
from b24app.crm.policy import Policy
from b24app.rest.response import BatchResult
from b24app.store.created_fields import DONE, REFUSED, CreatedFields
from b24app.store.journal import Journal
from sandbox.portal import CallContext
from tests.conversion.conftest import client_for

BOTH = {"client": "both"}


def call(sandbox: Any, method: str, params: dict[str, Any]) -> Any:
    return sandbox.portal.dispatch(method, params, CallContext()).result


def define(
    sandbox: Any, entity: str, label: str, kind: str, multiple: str = "N", **extra: Any
) -> str:
    fields = {
        "FIELD_NAME": f"{entity[:2]}{label.replace(' ', '')}".upper(),
        "USER_TYPE_ID": kind,
        "MULTIPLE": multiple,
        "EDIT_FORM_LABEL": {"en": label},
        **extra,
    }
    field_id = call(sandbox, f"crm.{entity}.userfield.add", {"fields": fields})
    return call(sandbox, f"crm.{entity}.userfield.get", {"id": field_id})["FIELD_NAME"]


def option_ids(sandbox: Any, entity: str, name: str) -> dict[str, str]:
    rows = call(sandbox, f"crm.{entity}.userfield.list", {"filter": {"FIELD_NAME": name}})
    return {o["VALUE"]: o["ID"] for o in rows[0]["LIST"]}


def lead(sandbox: Any, **values: Any) -> int:
    fields = {"TITLE": "Custom", "NAME": "Ada", "COMPANY_TITLE": "Acme", **values}
    return int(call(sandbox, "crm.lead.add", {"fields": fields}))


def run(
    sandbox: Any, database_url: str, policy: dict[str, Any] | None = None, client: Any = None
) -> Any:
    journal = Journal.open(database_url, portal="sandbox")
    return conversion.convert(
        client or client_for(sandbox), journal, Policy.from_dict(policy or BOTH)
    )


def get(sandbox: Any, entity: str, entity_id: int | None) -> dict[str, Any]:
    assert entity_id
    return call(sandbox, f"crm.{entity}.get", {"id": entity_id})


def file_of(sandbox: Any, value: dict[str, Any]) -> tuple[str, bytes] | None:
    return sandbox.portal.file(int(value["id"]))


def test_every_type_arrives_in_the_same_requests(make_sandbox: Any, database_url: str) -> None:
    sandbox = make_sandbox(seed_leads=0)
    kinds = {
        "Note": ("string", "N", "hello"),
        "Count": ("integer", "N", "42"),
        "Rate": ("double", "N", "2.5"),
        "Newsletter": ("boolean", "N", "0"),
        "Day": ("date", "N", "2024-05-01"),
        "Call at": ("datetime", "N", "2024-05-01T10:30:00+03:00"),
        "Budget": ("money", "N", "7600|USD"),
        "Site": ("url", "N", "https://example.com"),
        "Office": ("address", "N", "Main st 1|40.1;-89.6|17"),
        "Manager": ("employee", "N", "2"),
        "Related": ("crm", "N", "C_1"),
        "Industry": ("crm_status", "N", "IT"),
        "Item": ("iblock_element", "N", "150"),
        "Section": ("iblock_section", "N", "7"),
        "Tags": ("string", "Y", ["a", "b"]),
    }
    names: dict[str, tuple[str, str]] = {}
    for label, (kind, multiple, _) in kinds.items():
        names[label] = (
            define(sandbox, "lead", label, kind, multiple),
            define(sandbox, "deal", label, kind, multiple),
        )
    lead(sandbox, **{names[label][0]: value for label, (_, _, value) in kinds.items()})
    before = sandbox.stats()["http_requests"]
    report = run(sandbox, database_url, {"client": "contact"})
    requests = sandbox.stats()["http_requests"] - before
    (outcome,) = report.leads
    assert outcome.status == "converted" and outcome.error is None
    deal = get(sandbox, "deal", outcome.deal_id)
    expected = dict(kinds, Office=("address", "N", "Main st 1|40.1;-89.6"))  # no location id
    for label, (_, _, value) in expected.items():
        assert deal[names[label][1]] == value, label
    # the same requests as a lead without custom fields: definitions ride in the facts batch,
    # values in the add commands
    other = make_sandbox(seed_leads=0)
    lead(other)
    before = other.stats()["http_requests"]
    run(other, database_url.replace("app.db", "other.db"), {"client": "contact"})
    assert requests == other.stats()["http_requests"] - before


def test_a_missing_list_option_is_a_per_lead_warning(make_sandbox: Any, database_url: str) -> None:
    sandbox = make_sandbox(seed_leads=0)
    items = [{"VALUE": "Hardware"}, {"VALUE": "Software"}]
    source = define(sandbox, "lead", "Interest", "enumeration", LIST=items)
    on_deal = define(sandbox, "deal", "Interest", "enumeration", LIST=items[::-1])
    on_contact = define(sandbox, "contact", "Interest", "enumeration", LIST=items[1:])
    lead_id = lead(sandbox, **{source: option_ids(sandbox, "lead", source)["Hardware"]})
    (outcome,) = run(sandbox, database_url).leads
    assert outcome.lead_id == lead_id and outcome.status == "converted"
    assert outcome.error == "Interest: the contact field has no option 'Hardware'; not copied"
    assert (
        get(sandbox, "deal", outcome.deal_id)[on_deal]
        == option_ids(sandbox, "deal", on_deal)["Hardware"]
    )
    assert get(sandbox, "contact", outcome.contact_id)[on_contact] in (None, "", [])


def test_files_are_copied_and_an_unserved_one_is_a_warning(
    make_sandbox: Any, database_url: str
) -> None:
    sandbox = make_sandbox(seed_leads=0)
    source = define(sandbox, "lead", "Brief", "file", "Y")
    target = define(sandbox, "deal", "Brief", "file", "Y")
    body = base64.b64encode(b"the brief\n").decode()
    gone = base64.b64encode(b"lost\n").decode()
    files = [{"fileData": ["brief.txt", body]}, {"fileData": ["lost.txt", gone]}]
    lead_id = lead(sandbox, **{source: files})
    stored = call(sandbox, "crm.lead.get", {"id": lead_id})[source]
    with sandbox.portal.lock:  # the portal will not serve the second file
        sandbox.portal._crm.table("file").delete(int(stored[1]["id"]))
    (outcome,) = run(sandbox, database_url, {"client": "contact"}).leads
    assert outcome.status == "converted"
    assert outcome.error is not None
    assert outcome.error.startswith("Brief: a file could not be copied (NOT_FOUND")
    copied = get(sandbox, "deal", outcome.deal_id)[target]
    assert len(copied) == 1
    assert file_of(sandbox, copied[0]) == ("brief.txt", b"the brief\n")
    assert copied[0]["id"] != stored[0]["id"]  # a copy, not the lead's file


class _RefusingAdds:
    """The sandbox client, but every crm.*.userfield.add answers 'Access denied.'."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch(self, commands: Any, **kwargs: Any) -> BatchResult:
        from b24app.errors import AccessDenied

        kept = [c for c in commands if not c.method.endswith(".userfield.add")]
        result = self._client.batch(kept, **kwargs) if kept else BatchResult()
        errors = dict(result.errors)
        for command in commands:
            if command.method.endswith(".userfield.add"):
                errors[command.key] = AccessDenied("Access denied.", method=command.method)
        return replace(result, errors=errors)


def _fields(sandbox: Any, entity: str) -> list[str]:
    return [r["FIELD_NAME"] for r in call(sandbox, f"crm.{entity}.userfield.list", {})]


def test_no_permission_to_add_a_field_names_it(
    make_sandbox: Any, database_url: str, tmp_path: Path
) -> None:
    sandbox = make_sandbox(seed_leads=0)
    source = define(sandbox, "lead", "Budget note", "string")
    paired = define(sandbox, "lead", "Website", "url")
    on_deal = define(sandbox, "deal", "Website", "url")
    lead(sandbox, **{source: "big", paired: "https://a.example"})
    policy = {"client": "contact", "create_fields": True}
    report = run(sandbox, database_url, policy, client=_RefusingAdds(client_for(sandbox)))
    (outcome,) = report.leads
    assert outcome.status == "converted"
    assert report.error is not None
    assert (
        f"custom field 'Budget note' ({source}) could not be created on the deal: Access denied."
        in report.error
    )
    assert get(sandbox, "deal", outcome.deal_id)[on_deal] == "https://a.example"
    assert _fields(sandbox, "deal") == [on_deal]  # nothing half-made
    journal = Journal.open(database_url, portal="sandbox")
    rows = {(r.entity, r.lead_field): r for r in CreatedFields(journal.engine, "sandbox").all()}
    assert rows[("deal", source)].status == REFUSED
    # granted later: the next job creates it, and the next lead's value lands in it
    second = lead(sandbox, **{source: "bigger"})
    report = run(sandbox, database_url, policy)
    assert [o.lead_id for o in report.leads if o.status == "converted"] == [second]
    created = f"{source}_B24DE"
    assert created in _fields(sandbox, "deal")
    assert get(sandbox, "deal", report.leads[0].deal_id)[created] == "bigger"
    rows = {(r.entity, r.lead_field): r for r in CreatedFields(journal.engine, "sandbox").all()}
    assert rows[("deal", source)].status == DONE


def test_missing_fields_are_created_once(make_sandbox: Any, tmp_path: Path) -> None:
    sandbox = make_sandbox(seed_leads=0)
    items = [{"VALUE": "Hardware"}, {"VALUE": "Software"}]
    source = define(sandbox, "lead", "Interest", "enumeration", LIST=items)
    text = define(sandbox, "lead", "Note", "string")
    policy = {"client": "both", "create_fields": True}
    counts = []
    for n, db in enumerate(("a.db", "a.db", "b.db")):  # a rerun, then a job with its own journal
        lead(sandbox, **{source: option_ids(sandbox, "lead", source)["Software"], text: f"n{n}"})
        report = run(sandbox, f"sqlite:///{tmp_path / db}", policy)
        assert report.failed == 0 and report.error is None
        counts.append({e: len(_fields(sandbox, e)) for e in ("deal", "contact", "company")})
        deal = get(sandbox, "deal", report.leads[-1].deal_id)
        assert deal[f"{text}_B24DE"] == f"n{n}"
        new = f"{source}_B24DE"
        assert deal[new] == option_ids(sandbox, "deal", new)["Software"]
    assert counts == [{"deal": 2, "contact": 2, "company": 2}] * 3


def test_unreadable_definitions_still_convert_and_say_so(
    make_sandbox: Any, database_url: str
) -> None:
    sandbox = make_sandbox(seed_leads=0)
    define(sandbox, "lead", "Note", "string")
    define(sandbox, "deal", "Note", "string")
    lead(sandbox)
    url = sandbox.add_webhook(user_id=2)  # not an admin: userfield.list answers Access denied.
    report = run(sandbox, database_url, client=client_for(sandbox, url=url))
    assert report.converted == 1
    assert (
        report.error is not None and "custom fields of the lead could not be read" in report.error
    )


@pytest.mark.parametrize("create", [False, True])
def test_parity_with_custom_fields(create: bool) -> None:
    from bench import parity

    differences, pairs = parity.run(
        parity.Options(pairs=6, custom_fields=True, create_fields=create)
    )
    assert pairs == 6
    assert [d for d in differences if not d.explained] == []
