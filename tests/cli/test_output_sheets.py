"""Sheets on a terminal: what a person sees at 80 columns (b24app.output)."""

from __future__ import annotations

import io

from rich.console import Console

from b24app.output import Col, Sheet, show
from b24app.undo_output import undo_sheet


def _terminal(width: int) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=width, force_terminal=True, color_system=None), buffer


def _undo_like(notes: str) -> Sheet:
    leads = [
        {
            "lead_id": n,
            "status": "revert",
            "deletes": {"deal": n, "contact": n, "company": n},
            "stage": "IN_PROCESS",
            "notes": [notes] if notes else [],
        }
        for n in range(1000, 1003)
    ]
    return undo_sheet({"leads": leads}, title="Undo of job 1 (preview)")


def test_an_empty_free_text_column_gives_its_room_to_the_others() -> None:
    console, buffer = _terminal(80)
    show(_undo_like(""), console)
    lines = buffer.getvalue().splitlines()
    assert "why / notes" not in lines[1]
    assert "deal #1000, contact #1000, company #1000" in lines[2]  # one line, not folded
    assert len(lines) == 5


def test_a_free_text_column_with_text_stays() -> None:
    console, buffer = _terminal(120)
    show(_undo_like("edited after the conversion"), console)
    text = buffer.getvalue()
    assert "why / notes" in text and text.count("edited after the conversion") == 3


def test_piped_lines_keep_every_column() -> None:
    console = Console(file=io.StringIO(), width=80, force_terminal=False)
    show(_undo_like(""), console)
    assert "why / notes" in console.file.getvalue()  # type: ignore[attr-defined]


def test_a_narrow_table_keeps_its_title_on_one_line() -> None:
    console, buffer = _terminal(120)
    title = "Undo of job 1 (preview): custom fields it created"
    show(Sheet(title, (Col("field"), Col("on")), (("UF_CRM_1", "deal"),)), console)
    assert buffer.getvalue().splitlines()[0] == title
