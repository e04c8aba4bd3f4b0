"""CRM mode: decoding crm.settings.mode.get and the guided switch text."""

from __future__ import annotations

import pytest

from b24app.crm.mode import MODE_HELP_URL, Mode, ModeError, guide_switch, mode_command, parse_mode

from .factories import doc


def test_the_docs_example_answer_is_classic() -> None:
    assert parse_mode(doc("crm.settings.mode.get")["result"]) is Mode.CLASSIC


@pytest.mark.parametrize(
    ("raw", "mode"),
    [(1, Mode.CLASSIC), (2, Mode.SIMPLE), ("2", Mode.SIMPLE), (" 1 ", Mode.CLASSIC)],
)
def test_parse_mode_accepts_ints_and_numeric_strings(raw: object, mode: Mode) -> None:
    assert parse_mode(raw) is mode


@pytest.mark.parametrize("raw", [0, 3, "3", "classic", "", None, True, 1.0, [1], {"mode": 1}])
def test_parse_mode_rejects_anything_else_with_a_clear_error(raw: object) -> None:
    with pytest.raises(ModeError, match=r"crm.settings.mode.get returned .*expected 1 \(Classic\)"):
        parse_mode(raw)


def test_mode_names_and_labels() -> None:
    assert [m.label for m in Mode] == ["classic", "simple"]
    assert Mode.SIMPLE.title == "Simple CRM"
    assert Mode.from_label("Simple") is Mode.SIMPLE
    assert Mode.from_label("1") is Mode.CLASSIC
    with pytest.raises(ModeError, match="expected 'classic' or 'simple'"):
        Mode.from_label("hybrid")


def test_mode_command_reads_the_mode_without_parameters() -> None:
    command = mode_command()
    assert (command.key, command.method, dict(command.params)) == (
        "mode",
        "crm.settings.mode.get",
        {},
    )


def test_to_simple_converts_first_then_says_where_the_toggle_is_and_that_rest_cannot() -> None:
    guide = guide_switch(Mode.CLASSIC, Mode.SIMPLE, active_leads=12)
    text = guide.text()
    assert guide.needed and guide.convert_first
    assert "the 12 active lead(s)" in guide.steps[0]
    assert "CRM > Leads (or CRM > Deals)" in text and "gear" in text and '"CRM mode"' in text
    assert '"Simple CRM"' in text
    assert "REST cannot change the CRM mode" in text and "cannot flip it" in text
    assert MODE_HELP_URL in text
    assert text.index("convert") < text.index("gear")


def test_to_classic_converts_nothing() -> None:
    guide = guide_switch(Mode.SIMPLE, Mode.CLASSIC)
    assert not guide.convert_first
    assert "converts nothing" in guide.text()
    assert '"Classic CRM"' in guide.text()


def test_no_switch_needed_when_already_there() -> None:
    guide = guide_switch(Mode.SIMPLE, Mode.SIMPLE)
    assert not guide.needed and guide.steps == ()
    assert guide.text() == "The portal already uses Simple CRM; nothing to switch."
