"""Custom fields: pairing, one value rule per type, the mapping report, created names."""

from __future__ import annotations

from typing import Any

import pytest

from b24app.crm import customfields
from b24app.crm.customfields import CREATE, NOT_COPIED, PAIRED, CustomFields, fill_files
from b24app.crm.policy import Policy


def row(name: str, label: str, kind: str, multiple: str = "N", **extra: Any) -> dict[str, Any]:
    return {
        "FIELD_NAME": name,
        "EDIT_FORM_LABEL": label,
        "LIST_COLUMN_LABEL": label,
        "USER_TYPE_ID": kind,
        "MULTIPLE": multiple,
        **extra,
    }


def options(*pairs: tuple[int, str]) -> list[dict[str, Any]]:
    return [{"ID": str(i), "VALUE": text, "SORT": str(10 * n)} for n, (i, text) in enumerate(pairs)]


def fields(lead: list[dict[str, Any]], deal: list[dict[str, Any]], **more: Any) -> CustomFields:
    results = {
        "uflead": lead,
        "ufdeal": deal,
        "ufcontact": more.get("contact", []),
        "ufcompany": [],
    }
    return CustomFields.from_results(results)


# (type, multiple, the lead's value, what the deal gets)
PLAIN = [
    ("string", "N", "note 1", "note 1"),
    ("integer", "N", "42", "42"),
    ("double", "N", "3.25", "3.25"),
    ("boolean", "N", "0", "0"),  # "0" is a value, not an empty one
    ("boolean", "N", "1", "1"),
    ("date", "N", "2024-05-01", "2024-05-01"),
    ("datetime", "N", "2024-05-01T10:30:00+03:00", "2024-05-01T10:30:00+03:00"),
    ("money", "N", "7600|USD", "7600|USD"),
    ("url", "N", "https://example.com", "https://example.com"),
    ("employee", "N", "2", "2"),
    ("crm", "N", "C_12", "C_12"),
    ("crm_status", "N", "IT", "IT"),
    ("iblock_element", "N", "150", "150"),
    ("iblock_section", "N", "7", "7"),
    ("string", "Y", ["a", "", "b"], ["a", "b"]),  # empty items are not sent
    ("integer", "Y", ["1", "2"], ["1", "2"]),
    ("address", "N", "Main st 1|40.1;-89.6|17", "Main st 1|40.1;-89.6"),  # no location id
    ("address", "Y", ["A|1;2|3", "B|4;5|6"], ["A|1;2", "B|4;5"]),
]


@pytest.mark.parametrize(("kind", "multiple", "value", "expected"), PLAIN)
def test_each_type_is_copied_by_its_rule(
    kind: str, multiple: str, value: Any, expected: Any
) -> None:
    found = fields(
        [row("UF_CRM_1", "Thing", kind, multiple)], [row("UF_CRM_9", "thing", kind, multiple)]
    )
    mapped = found.map_lead({"UF_CRM_1": value}, "deal")
    assert mapped.values == {"UF_CRM_9": expected}
    assert mapped.warnings == ()


@pytest.mark.parametrize("empty", [None, "", [], "   "])
def test_empty_values_are_not_sent(empty: Any) -> None:
    found = fields([row("UF_CRM_1", "Thing", "string")], [row("UF_CRM_9", "Thing", "string")])
    assert found.map_lead({"UF_CRM_1": empty}, "deal").values == {}


def test_resourcebooking_is_never_copied() -> None:
    found = fields(
        [row("UF_CRM_1", "Slot", "resourcebooking")], [row("UF_CRM_9", "Slot", "resourcebooking")]
    )
    assert found.map_lead({"UF_CRM_1": ["1|2024-01-01"]}, "deal").values == {}
    (line,) = found.report(["deal"])
    assert line.state == NOT_COPIED and "resourcebooking" in (line.reason or "")


def test_pairing_needs_label_type_and_multiple() -> None:
    found = fields(
        [
            row("UF_CRM_1", "Budget Note", "string"),
            row("UF_CRM_2", "Count", "integer"),
            row("UF_CRM_3", "Tags", "string", "Y"),
        ],
        [
            row("UF_CRM_7", "budgetnote", "string"),  # label compared lower-case, no spaces
            row("UF_CRM_8", "Count", "string"),  # another type
            row("UF_CRM_9", "Tags", "string", "N"),  # another multiple
        ],
    )
    assert found.pairs("deal") == {"UF_CRM_1": "UF_CRM_7"}
    assert [f.name for f in found.missing("deal")] == ["UF_CRM_2", "UF_CRM_3"]


def test_enumeration_goes_by_option_text_and_warns_for_a_missing_option() -> None:
    lead = row(
        "UF_CRM_1", "Interest", "enumeration", LIST=options((1, "Hardware"), (2, "Software"))
    )
    deal = row(
        "UF_CRM_9", "Interest", "enumeration", LIST=options((51, "Software"), (52, "Hardware"))
    )
    contact = row("UF_CRM_8", "Interest", "enumeration", LIST=options((61, "Software")))
    found = fields([lead], [deal], contact=[contact])
    assert found.map_lead({"UF_CRM_1": "1"}, "deal").values == {"UF_CRM_9": "52"}
    mapped = found.map_lead({"UF_CRM_1": "1"}, "contact")
    assert mapped.values == {}
    assert mapped.warnings == ("Interest: the contact field has no option 'Hardware'; not copied",)


def test_multiple_enumeration_keeps_the_options_the_target_has() -> None:
    lead = row("UF_CRM_1", "Channels", "enumeration", "Y", LIST=options((1, "Email"), (2, "Chat")))
    deal = row("UF_CRM_9", "Channels", "enumeration", "Y", LIST=options((71, "Email")))
    mapped = fields([lead], [deal]).map_lead({"UF_CRM_1": ["1", "2"]}, "deal")
    assert mapped.values == {"UF_CRM_9": ["71"]}
    assert mapped.warnings == ("Channels: the deal field has no option 'Chat'; not copied",)


def test_files_become_uploads_and_an_unserved_file_a_warning() -> None:
    found = fields([row("UF_CRM_1", "Brief", "file", "Y")], [row("UF_CRM_9", "Brief", "file", "Y")])
    value = [{"id": 1, "downloadUrl": "/a"}, {"id": 2, "downloadUrl": "/b"}]
    mapped = found.map_lead({"UF_CRM_1": value}, "deal")
    assert mapped.values == {} and mapped.files == {"UF_CRM_9": (("/a", "/b"), True)}
    marker = {"UF_CRM_9": customfields.file_marker(["/a", "/b"], True), "TITLE": "x"}
    assert customfields.pending_files(marker) == ["/a", "/b"]
    filled, warnings = fill_files(
        marker, {"/a": ("a.txt", b"hi"), "/b": "NOT_FOUND: File not found"}
    )
    assert filled == {"UF_CRM_9": [{"fileData": ["a.txt", "aGk="]}], "TITLE": "x"}
    assert warnings == ["UF_CRM_9: a file could not be copied (NOT_FOUND: File not found)"]


def test_report_says_where_each_field_goes() -> None:
    found = fields(
        [row("UF_CRM_1", "Budget", "money"), row("UF_CRM_2", "Only lead", "string")],
        [row("UF_CRM_9", "Budget", "money")],
    )
    lines = found.report(["deal"])
    assert [(line.lead_field, line.state, line.field) for line in lines] == [
        ("UF_CRM_1", PAIRED, "UF_CRM_9"),
        ("UF_CRM_2", NOT_COPIED, None),
    ]
    assert lines[0].text() == "Budget (UF_CRM_1) -> deal UF_CRM_9"
    assert [line.state for line in found.report(["deal"], create=True)] == [PAIRED, CREATE]
    mapping = customfields.field_mapping(found, Policy.from_dict({"client": "contact"}))
    assert {line.target for line in mapping.lines} == {"deal", "contact"}
    assert mapping.note() == (
        "custom fields not copied (no field with the same label, type and multiple): "
        "deal: Only lead; contact: Budget, Only lead"
    )


def test_unreadable_definitions_copy_nothing_and_say_so() -> None:
    class Denied(Exception):
        code = "ACCESS_DENIED"

    found = CustomFields.from_results({}, {"uflead": Denied("Access denied.")})
    assert found.error is not None and "could not be read" in found.error
    assert customfields.field_mapping(found, Policy()).note() == found.error


def test_create_command_copies_type_labels_settings_and_options() -> None:
    lead = row(
        "UF_CRM_1",
        "Interest",
        "enumeration",
        SORT="200",
        SETTINGS={"DISPLAY": "LIST"},
        LIST=options((1, "Hardware"), (2, "Software")),
    )
    command = fields([lead], []).create_command("f0", "deal", "UF_CRM_1", "1_B24DE")
    assert command.method == "crm.deal.userfield.add"
    sent = command.params["fields"]
    assert sent["FIELD_NAME"] == "1_B24DE" and sent["USER_TYPE_ID"] == "enumeration"
    assert sent["EDIT_FORM_LABEL"] == {"en": "Interest"} and sent["SORT"] == "200"
    assert sent["SETTINGS"] == {"DISPLAY": "LIST"}
    assert [o["VALUE"] for o in sent["LIST"]] == ["Hardware", "Software"]
    assert all("ID" not in o for o in sent["LIST"])


def test_created_names_are_fixed_and_fit_the_column() -> None:
    assert customfields.created_name("UF_CRM_1720000008100", "deal") == "UF_CRM_1720000008100_B24DE"
    long = "UF_CRM_" + "X" * 60
    name = customfields.created_name(long, "company")
    assert len(name) <= 50 and name == customfields.created_name(long, "company")
    assert name != customfields.created_name(long + "Y", "company")


def test_a_field_without_a_label_never_pairs() -> None:
    found = fields([row("UF_CRM_1", "", "string")], [row("UF_CRM_9", "", "string")])
    assert found.pairs("deal") == {}
    assert found.map_lead({"UF_CRM_1": "x"}, "deal").values == {}
