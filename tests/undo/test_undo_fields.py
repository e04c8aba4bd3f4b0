"""The custom fields a conversion created ("create missing custom fields") and its undo: removed
only when no entity uses them, journaled so a kill deletes nothing twice, listed in the preview,
and forgotten by the ledger so a later conversion creates them again."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from b24app.crm import undo_fields
from b24app.crm.conversion import convert
from b24app.crm.fieldsync import DONE, CreatedField
from b24app.crm.policy import Policy
from b24app.errors import OutcomeUnknown
from b24app.store.journal import Journal
from b24app.undo import preview, undo
from bench.undo import compare, portal_snapshot
from sandbox import Sandbox
from tests.conversion.conftest import client_for
from tests.undo.dying import Died, DyingClient, owner_died

PORTAL = "sandbox"
POLICY = {"client": "both", "activities": "move", "create_fields": True}


def _field(entity: str = "deal", name: str = "UF_CRM_1_B24DE") -> CreatedField:
    return CreatedField(entity, "UF_CRM_1", name, DONE, None, 7)


def test_a_field_only_the_deleted_entities_hold_is_removed_one_held_elsewhere_kept() -> None:
    fields = [_field(), _field("contact", "UF_CRM_1_B24CO"), _field("company", "UF_CRM_1_B24CM")]
    results = {
        "F0d": [{"ID": "31", "FIELD_NAME": "UF_CRM_1_B24DE", "EDIT_FORM_LABEL": "Budget"}],
        "F0u": [{"ID": "5"}, {"ID": "6"}],
        "F1d": [{"ID": "32", "FIELD_NAME": "UF_CRM_1_B24CO"}],
        "F1u": [{"ID": "9"}, {"ID": "40"}],
        "F2d": [],
        "F2u": [],
    }
    planned = undo_fields.plan_fields(
        fields, results, {}, deleting={"deal": [5, 6], "contact": [9]}
    )
    assert [(p.verdict, p.field_id) for p in planned] == [
        (undo_fields.REMOVE, 31),
        (undo_fields.KEEP, 0),
        (undo_fields.GONE, 0),
    ]
    assert planned[1].why == "kept: used by contact 40"
    assert [p.label for p in planned] == ["Budget", "", ""]  # as the definition reads
    # after the undo's deletions anything found is a user; an error keeps the field
    after = undo_fields.plan_fields(fields[:1], results, {}, totals={"F0u": 120})
    assert after[0].verdict == undo_fields.KEEP and "(+118)" in after[0].why
    unchecked = undo_fields.plan_fields(fields[:1], {"F0d": []}, {"F0u": RuntimeError("boom")})
    assert unchecked[0].verdict == undo_fields.KEEP and "boom" in unchecked[0].why


def test_the_probe_asks_for_the_definition_and_the_entities_holding_a_value() -> None:
    (definition, users) = undo_fields.probe_commands([_field()])
    assert (definition.method, definition.params) == (
        "crm.deal.userfield.list",
        {"filter": {"FIELD_NAME": "UF_CRM_1_B24DE", "LANG": "en"}},
    )
    assert (users.method, users.params) == (
        "crm.deal.list",
        {"filter": {"!UF_CRM_1_B24DE": ""}, "select": ["ID"]},
    )


@pytest.fixture
def converted(tmp_path: Path) -> Iterator[tuple[Any, Journal, int, dict[str, Any]]]:
    """A sandbox snapshotted, then converted with "create missing custom fields" on."""
    with Sandbox(seed_leads=30, seed=3, plan="fast", custom_fields=True) as sandbox:
        before = portal_snapshot(sandbox)
        journal = Journal.open(f"sqlite:///{tmp_path / 'app.db'}", portal=PORTAL)
        report = convert(client_for(sandbox), journal, Policy.from_dict(POLICY))
        assert report.status == "done" and report.converted > 5
        yield sandbox, journal, report.job_id, before


def _created(journal: Journal, job_id: int) -> list[CreatedField]:
    return [r for r in journal.created_fields().all() if r.job_id == job_id]


def test_undo_keeps_a_field_another_entity_uses_and_removes_the_others(converted: Any) -> None:
    sandbox, journal, job_id, before = converted
    client = client_for(sandbox)
    created = _created(journal, job_id)
    deal_fields = [f for f in created if f.entity == "deal"]
    assert deal_fields and len(created) > len(deal_fields)
    used = deal_fields[0]
    other = client.call(
        "crm.deal.add", {"fields": {"TITLE": "made by hand", used.field_name: "kept"}}
    ).result

    planned = preview(client, journal, job_id)
    verdicts = {(f.entity, f.field_name): f for f in planned.fields}
    assert len(verdicts) == len(created)
    assert verdicts[("deal", used.field_name)].status == "keep"
    assert f"deal {other}" in verdicts[("deal", used.field_name)].why
    assert {f.status for k, f in verdicts.items() if k[1] != used.field_name} == {"remove"}
    assert planned.to_dict()["fields"][0].keys() == {
        "entity",
        "field",
        "label",
        "lead_field",
        "status",
        "why",
    }
    assert all(f.label for f in planned.fields)  # the probe brings each field's label

    report = undo(client, journal, job_id)
    assert report.status == "done"
    statuses = {(f.entity, f.field_name): f.status for f in report.fields}
    assert statuses.pop(("deal", used.field_name)) == "kept"
    assert set(statuses.values()) == {"removed"}
    assert [f.field_name for f in _created(journal, job_id)] == [used.field_name]
    definitions = client.call("crm.deal.userfield.list", {"filter": {}}).result
    assert used.field_name in {d["FIELD_NAME"] for d in definitions}
    assert undo(client, journal, job_id).status == "noop"

    client.call("crm.deal.delete", {"id": other})
    client.call("crm.deal.userfield.delete", {"id": _definition_id(client, used)})
    diff = compare(before, portal_snapshot(sandbox))
    assert diff.lines == []


def _definition_id(client: Any, field: CreatedField) -> int:
    found = client.call(
        f"crm.{field.entity}.userfield.list", {"filter": {"FIELD_NAME": field.field_name}}
    )
    return int(found.result[0]["ID"])


def _deletes(commands: Sequence[Any]) -> list[Any]:
    return [c.params["id"] for c in commands if c.method.endswith(".userfield.delete")]


def test_a_kill_after_the_fields_were_deleted_deletes_nothing_twice(converted: Any) -> None:
    sandbox, journal, job_id, before = converted
    created = _created(journal, job_id)
    first = DyingClient(client_for(sandbox), lambda commands: bool(_deletes(commands)))
    with pytest.raises(Died):
        undo(first, journal, job_id)  # type: ignore[arg-type]
    deleted = _deletes(first.sent)
    assert deleted  # sent and answered, the answers never recorded
    owner_died(journal.engine)

    rerun = DyingClient(client_for(sandbox), lambda commands: False)
    report = undo(rerun, journal, job_id)  # type: ignore[arg-type]

    assert report.status == "done"
    assert set(_deletes(rerun.sent)).isdisjoint(deleted)
    assert {f.status for f in report.fields} == {"removed"}
    assert len(report.fields) == len(created)
    assert _created(journal, job_id) == []
    assert compare(before, portal_snapshot(sandbox)).lines == []


def test_a_conversion_after_the_undo_creates_the_fields_again(converted: Any) -> None:
    sandbox, journal, job_id, _before = converted
    client = client_for(sandbox)
    names = {(f.entity, f.field_name) for f in _created(journal, job_id)}
    assert undo(client, journal, job_id).status == "done"
    assert journal.created_fields().all() == []

    again = convert(client, journal, Policy.from_dict(POLICY))

    assert again.status == "done" and again.converted > 5
    assert {(f.entity, f.field_name) for f in _created(journal, again.job_id)} == names
    for entity, name in names:
        found = client.call(f"crm.{entity}.userfield.list", {"filter": {"FIELD_NAME": name}})
        assert len(found.result) == 1


class _Batches:
    """A portal client recording each batch's methods."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.batches: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def batch(self, commands: Sequence[Any], **kwargs: Any) -> Any:
        """Record, then send."""
        self.batches.append([c.method for c in commands])
        return self.client.batch(commands, **kwargs)


def test_every_write_batch_keeps_its_last_slot_for_the_mode_check(converted: Any) -> None:
    sandbox, journal, job_id, _before = converted
    recording = _Batches(client_for(sandbox))

    assert undo(recording, journal, job_id).status == "done"  # type: ignore[arg-type]

    writes = [b for b in recording.batches if any(not m.endswith(".list") for m in b[:-1])]
    assert writes and max(len(b) for b in writes) == 50  # full batches: 49 steps + the check
    assert all(b[-1] == "crm.settings.mode.get" for b in writes)
    assert all(b.count("crm.settings.mode.get") == 1 for b in writes)


class _LosesFieldAnswers(_Batches):
    """Sends every batch; the answer to the first one holding field deletions is lost."""

    lost = False

    def batch(self, commands: Sequence[Any], **kwargs: Any) -> Any:
        """Send; lose the answer of the first batch with userfield deletions."""
        result = super().batch(commands, **kwargs)
        if not self.lost and _deletes(commands):
            self.lost = True
            raise OutcomeUnknown("the answer was lost")
        return result


def test_a_lost_answer_to_the_field_deletions_is_settled_by_a_probe_not_a_resend(
    converted: Any,
) -> None:
    sandbox, journal, job_id, before = converted
    created = _created(journal, job_id)
    losing = _LosesFieldAnswers(client_for(sandbox))

    report = undo(losing, journal, job_id)  # type: ignore[arg-type]

    assert losing.lost and report.status == "done"
    deletions = [m for b in losing.batches for m in b if m.endswith(".userfield.delete")]
    assert len(deletions) == len(created)  # each sent once; the probe found them gone
    assert {f.status for f in report.fields} == {"removed"}
    assert _created(journal, job_id) == []
    assert compare(before, portal_snapshot(sandbox)).lines == []
