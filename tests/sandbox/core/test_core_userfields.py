"""crm.*.userfield.add/get/list, custom-field values and files, and the seeded custom fields;
each against rest/lib/userfieldproxy.php (yuliai/bitrix-modules)."""

from __future__ import annotations

import base64

from sandbox.portal import CallContext, Portal
from sandbox.seed import _CUSTOM
from tests.sandbox.core.conftest import Caller

USER = CallContext(user_id=2, is_admin=False, crm_access=True)


def test_userfield_add_prefixes_the_name_and_fills_every_language(call):
    """rest/lib/userfieldproxy.php:222-292 (name prefix, LABEL default) and :1106-1127 (labels)."""
    field_id = call(
        "crm.lead.userfield.add",
        fields={
            "FIELD_NAME": "REF",
            "USER_TYPE_ID": "string",
            "EDIT_FORM_LABEL": {"en": "Reference"},
            "LABEL": "Ref",
        },
    )
    got = call("crm.lead.userfield.get", id=field_id)

    assert got["FIELD_NAME"] == "UF_CRM_REF"
    assert got["EDIT_FORM_LABEL"] == {"en": "Reference", "de": "Ref"}
    assert got["LIST_COLUMN_LABEL"] == {"en": "Ref", "de": "Ref"}
    assert (got["MULTIPLE"], got["MANDATORY"], got["USER_TYPE_ID"]) == ("N", "N", "string")


def test_userfield_add_names_every_missing_required_field(call):
    """rest/lib/userfieldproxy.php:240-283: both errors, one per line, legacy error shape."""
    error = call.error("crm.deal.userfield.add", fields={"LABEL": "x"})

    assert error.code == ""
    assert error.description == (
        "The 'USER_TYPE_ID' field is not found.\nThe 'FIELD_NAME' field is not found."
    )


def test_userfield_list_gives_labels_only_for_filter_lang_and_enum_items(call):
    """rest/lib/userfieldproxy.php:567-636 (list, items with XML_ID), :506-565 (get)."""
    field_id = call(
        "crm.contact.userfield.add",
        fields={
            "FIELD_NAME": "KIND",
            "USER_TYPE_ID": "enumeration",
            "LABEL": "Kind",
            "LIST": [{"VALUE": "A"}, {"VALUE": "B", "DEF": "Y"}],
        },
    )
    (plain,) = call("crm.contact.userfield.list")
    (english,) = call("crm.contact.userfield.list", filter={"LANG": "en"})
    got = call("crm.contact.userfield.get", id=field_id)

    assert "EDIT_FORM_LABEL" not in plain
    assert english["EDIT_FORM_LABEL"] == "Kind"
    assert [(i["VALUE"], i["DEF"]) for i in english["LIST"]] == [("A", "N"), ("B", "Y")]
    assert set(english["LIST"][0]) == {"ID", "SORT", "VALUE", "DEF", "XML_ID"}
    assert set(got["LIST"][0]) == {"ID", "SORT", "VALUE", "DEF"}


def test_userfield_methods_are_for_admins_and_ids_belong_to_one_entity(portal, call):
    """rest/lib/userfieldproxy.php:128-140 (admin only), :532-538 (not found / other entity)."""
    field_id = call("crm.lead.userfield.add", fields={"FIELD_NAME": "X", "USER_TYPE_ID": "string"})
    user = Caller(portal, USER)

    assert user.error("crm.lead.userfield.list").description == "Access denied."
    assert call.error("crm.deal.userfield.get", id=field_id).description == "Access denied."
    assert call.error("crm.lead.userfield.get", id=999).description == (
        "The entity with ID '999' is not found."
    )


def test_values_of_defined_fields_only_and_every_defined_field_read_back(call):
    """The user-field manager stores values of defined fields only; get lists every field."""
    call("crm.lead.userfield.add", fields={"FIELD_NAME": "A", "USER_TYPE_ID": "string"})
    call(
        "crm.lead.userfield.add",
        fields={"FIELD_NAME": "TAGS", "USER_TYPE_ID": "string", "MULTIPLE": "Y"},
    )
    lead_id = call.lead(UF_CRM_A="kept", UF_CRM_NOPE="dropped")
    lead = call("crm.lead.get", id=lead_id)

    assert lead["UF_CRM_A"] == "kept" and lead["UF_CRM_TAGS"] == []
    assert "UF_CRM_NOPE" not in lead


def test_file_values_are_stored_and_read_with_a_download_url(portal, call):
    """File values: written as fileData [name, base64], read as {id, showUrl, downloadUrl}."""
    call("crm.lead.userfield.add", fields={"FIELD_NAME": "BRIEF", "USER_TYPE_ID": "file"})
    body = base64.b64encode(b"hello").decode()
    lead_id = call.lead(UF_CRM_BRIEF={"fileData": ["brief.txt", body]})
    value = call("crm.lead.get", id=lead_id)["UF_CRM_BRIEF"]

    assert set(value) == {"id", "showUrl", "downloadUrl"}
    assert f"fileId={value['id']}" in value["downloadUrl"]
    assert portal.file(value["id"]) == ("brief.txt", b"hello")


def test_deleting_an_entity_deletes_the_files_of_its_file_fields(portal, call):
    """CCrmDeal::Delete calls USER_FIELD_MANAGER->Delete: the entity's files go with it."""
    call("crm.deal.userfield.add", fields={"FIELD_NAME": "SCAN", "USER_TYPE_ID": "file"})
    body = base64.b64encode(b"signed").decode()
    deal_id = call(
        "crm.deal.add", fields={"TITLE": "D", "UF_CRM_SCAN": {"fileData": ["s.pdf", body]}}
    )
    file_id = call("crm.deal.get", id=deal_id)["UF_CRM_SCAN"]["id"]
    assert portal.file(file_id) == ("s.pdf", b"signed")

    assert call("crm.deal.delete", id=deal_id) is True
    assert portal.file(file_id) is None


def test_seeded_custom_fields_cover_every_type_and_pair_by_label():
    """Issue 15's types; labels per language; targets with twins by label, one lead-only field."""
    portal = Portal(seed_leads=30, custom_fields=True)
    call = Caller(portal, CallContext())
    lead_fields = call("crm.lead.userfield.list", filter={"LANG": "en"})
    deal_labels = {
        f["EDIT_FORM_LABEL"] for f in call("crm.deal.userfield.list", filter={"LANG": "en"})
    }
    types = {f["USER_TYPE_ID"] for f in lead_fields}
    leads = call("crm.lead.list", select=["ID", "UF_*"])

    assert types == {t for _, t, *_ in _CUSTOM}
    assert "Lead only note" not in deal_labels and "Budget note" in deal_labels
    assert call("crm.lead.userfield.list", filter={"LANG": "de"})[0]["EDIT_FORM_LABEL"].endswith(
        "(de)"
    )
    assert any(v not in (None, [], "") for lead in leads for k, v in lead.items() if k != "ID")


def test_a_not_empty_filter_on_a_custom_field_finds_only_the_entities_holding_a_value(call):
    """main CSQLWhere (CAllSQLWhere::GetQuery): "!" with an empty value is _NotEmpty for strings
    (IS NOT NULL AND LENGTH > 0) and IS NOT NULL AND <> 0 for int/enum/file fields (addIntFilter,
    case "N"); a multiple field with no value has no row to match. The undo's probe of the
    custom fields a conversion created relies on it (b24app/crm/undo_fields.py)."""
    call("crm.deal.userfield.add", fields={"FIELD_NAME": "NOTE", "USER_TYPE_ID": "string"})
    call(
        "crm.deal.userfield.add",
        fields={"FIELD_NAME": "TAGS", "USER_TYPE_ID": "string", "MULTIPLE": "Y"},
    )
    call(
        "crm.deal.userfield.add",
        fields={"FIELD_NAME": "KIND", "USER_TYPE_ID": "enumeration", "LIST": [{"VALUE": "A"}]},
    )
    (kind,) = call("crm.deal.userfield.list", filter={"FIELD_NAME": "UF_CRM_KIND"})
    item = int(kind["LIST"][0]["ID"])
    empty = call("crm.deal.add", fields={"TITLE": "empty"})
    noted = call("crm.deal.add", fields={"TITLE": "noted", "UF_CRM_NOTE": "x"})
    tagged = call("crm.deal.add", fields={"TITLE": "tagged", "UF_CRM_TAGS": ["a"]})
    kinded = call("crm.deal.add", fields={"TITLE": "kinded", "UF_CRM_KIND": item})

    def holders(name: str) -> list[int]:
        rows = call("crm.deal.list", filter={f"!{name}": ""}, select=["ID"])
        return sorted(int(row["ID"]) for row in rows)

    assert holders("UF_CRM_NOTE") == [noted]
    assert holders("UF_CRM_TAGS") == [tagged]
    assert holders("UF_CRM_KIND") == [kinded]
    assert empty not in holders("UF_CRM_NOTE") + holders("UF_CRM_TAGS") + holders("UF_CRM_KIND")


def test_userfield_delete_removes_the_definition_and_a_second_delete_is_not_found(call):
    """rest/lib/userfieldproxy.php (UserFieldProxy::delete): the ID must name a field of this
    entity; unknown -> "The entity with ID 'N' is not found." (the undo counts it as done)."""
    field_id = call(
        "crm.deal.userfield.add", fields={"FIELD_NAME": "GONE", "USER_TYPE_ID": "string"}
    )

    assert call("crm.deal.userfield.delete", id=field_id) is True
    assert call("crm.deal.userfield.list", filter={"FIELD_NAME": "UF_CRM_GONE"}) == []
    again = call.error("crm.deal.userfield.delete", id=field_id)
    assert again.description == f"The entity with ID '{field_id}' is not found."
