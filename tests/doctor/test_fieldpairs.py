"""The pairing rule of custom fields (userfieldsynchronizer.php:514-566,646-655)."""

from __future__ import annotations

from b24app.crm.fieldpairs import FieldDef, field_defs, label_of, normalized_label, pair_fields


def row(name: str, label: str = "", *, list_label: str = "", kind: str = "string", multiple="N"):
    return {
        "FIELD_NAME": name,
        "EDIT_FORM_LABEL": label,
        "LIST_COLUMN_LABEL": list_label,
        "USER_TYPE_ID": kind,
        "MULTIPLE": multiple,
    }


def test_label_is_the_edit_form_label_else_the_list_column_label() -> None:
    assert label_of(row("UF_CRM_1", "Budget", list_label="Money")) == "Budget"
    assert label_of(row("UF_CRM_1", "", list_label="Money")) == "Money"
    assert label_of({"EDIT_FORM_LABEL": {"en": "", "de": "Etat"}, "LIST_COLUMN_LABEL": "x"}) == (
        "Etat"
    )
    assert label_of({"EDIT_FORM_LABEL": {"en": "Budget", "de": "Etat"}}, "de") == "Etat"


def test_labels_compare_lower_cased_without_spaces() -> None:
    assert normalized_label("Office  Address ") == "officeaddress"
    lead = field_defs([row("UF_CRM_L1", "Office Address")])
    deal = field_defs([row("UF_CRM_D1", "officeaddress")])
    assert pair_fields(lead, deal).pairs == {"UF_CRM_L1": "UF_CRM_D1"}


def test_type_and_multiple_must_match() -> None:
    lead = field_defs(
        [row("UF_CRM_A", "Tags", multiple="Y"), row("UF_CRM_B", "Budget", kind="money")]
    )
    target = field_defs([row("UF_CRM_X", "Tags", multiple="N"), row("UF_CRM_Y", "Budget")])
    pairing = pair_fields(lead, target)
    assert pairing.pairs == {}
    assert [f.name for f in pairing.missing] == ["UF_CRM_A", "UF_CRM_B"]


def test_each_target_field_takes_one_lead_field() -> None:
    lead = field_defs([row("UF_CRM_A", "Note"), row("UF_CRM_B", "note")])
    target = field_defs([row("UF_CRM_X", "NOTE")])
    pairing = pair_fields(lead, target)
    assert pairing.pairs == {"UF_CRM_A": "UF_CRM_X"}
    assert pairing.missing == (FieldDef("UF_CRM_B", "note", "string", False),)


def test_field_defs_skip_rows_without_a_name_and_read_an_object_result() -> None:
    rows = {"0": row("UF_CRM_A", "A", multiple="Y"), "1": {"USER_TYPE_ID": "string"}}
    assert field_defs(rows) == (FieldDef("UF_CRM_A", "A", "string", True),)
    assert field_defs(None) == ()
