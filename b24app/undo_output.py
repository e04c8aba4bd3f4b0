"""How `b24app jobs undo` shows an undo: a totals line, one row per lead, the notes, and what
becomes of the custom fields the conversion created."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from b24app.output import Col, Sheet

_ENTITIES = ("deal", "contact", "company")
_WORDS = {
    "revert": "will revert",
    "keep": "will keep",
    "fail": "cannot undo",
    "reverted": "reverted",
    "kept": "kept",
    "failed": "failed",
}


def undo_sheet(report: Mapping[str, Any], *, title: str) -> Sheet:
    """Every lead of an undo report: outcome, what is deleted, the stage it returns to, why."""
    columns = (
        Col("lead", right=True),
        Col("outcome"),
        Col("deletes", fold=True),
        Col("stage"),
        Col("why / notes", fold=True),
    )
    rows = []
    for lead in report.get("leads", ()):
        found = lead.get("deletes") or {}
        deletes = ", ".join(f"{name} #{found[name]}" for name in _ENTITIES if name in found)
        why = [*(lead.get("why") or ()), *(lead.get("notes") or ())]
        if lead.get("error"):
            why.insert(0, str(lead["error"]))
        keeps = lead.get("status") in ("keep", "kept", "fail", "failed")
        rows.append(
            (
                str(lead["lead_id"]),
                _WORDS.get(str(lead.get("status")), str(lead.get("status") or "")),
                "" if keeps else deletes,
                "" if keeps else str(lead.get("stage") or ""),
                "; ".join(why),
            )
        )
    return Sheet(title, columns, tuple(rows))


_FIELD_WORDS = {
    "remove": "will delete",
    "keep": "will keep",
    "gone": "already deleted",
    "removed": "deleted",
    "kept": "kept",
    "failed": "failed",
    "sent": "not finished",
}


def undo_fields_sheet(report: Mapping[str, Any], *, title: str) -> Sheet:
    """The custom fields the conversion created: deleted (or will be), kept and why."""
    columns = (Col("label"), Col("field"), Col("on"), Col("outcome"), Col("why", fold=True))
    rows = tuple(
        (
            str(item.get("label") or ""),
            str(item.get("field") or ""),
            str(item.get("entity") or ""),
            _FIELD_WORDS.get(str(item.get("status")), str(item.get("status") or "")),
            str(item.get("why") or ""),
        )
        for item in report.get("fields") or ()
    )
    return Sheet(title, columns, rows)


def undo_summary(report: Mapping[str, Any]) -> str:
    """One line: what the undo did (or would do), and the requests it took."""
    counts = report.get("counts") or {}
    if report.get("message"):
        return str(report["message"])
    verbs = (
        ("will revert", "will keep", "cannot undo")
        if report.get("dry_run")
        else ("reverted", "kept", "failed")
    )
    parts = [
        f"{counts.get(key, 0)} {verb}"
        for key, verb in zip(("reverted", "kept", "failed"), verbs, strict=True)
        if counts.get(key) or key == "reverted"
    ]
    head = f"undo of job {report.get('undo_of')}"
    if report.get("job_id"):
        head += f" (undo job {report['job_id']}, {report.get('status')})"
    line = f"{head}: " + ", ".join(parts) + f"; {report.get('requests', 0)} request(s)"
    if counts.get("kept") and not report.get("force"):
        line += "; --force reverts kept leads too (never a client used elsewhere)"
    return line
