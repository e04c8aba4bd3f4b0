"""Where Bitrix24 method names may be spelled. The import rule itself (b24app never imports
handlers or sandbox, sandbox never imports b24app, the layers inside b24app) is checked by the
import-linter contracts in pyproject.toml (`make lint`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bitrix_method_names_live_only_in_rest_and_crm() -> None:
    """Bitrix method names appear as strings only in b24app/rest, b24app/crm and the vocabulary."""
    allowed = {ROOT / "b24app" / "rest", ROOT / "b24app" / "crm"}
    offenders = []
    for path in sorted((ROOT / "b24app").rglob("*.py")):
        if path == ROOT / "b24app" / "vocabulary.py" or any(p in allowed for p in path.parents):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith(("crm.", "event.", "user."))
                and " " not in node.value
            ):
                offenders.append(f"{path.relative_to(ROOT)}: {node.value}")
    assert offenders == []


def test_event_names_are_spelled_only_in_the_vocabulary() -> None:
    """Bitrix24's event names live in b24app/vocabulary.py alone; the rest import them."""
    from b24app import vocabulary

    spelled = {*vocabulary.BOUND_EVENTS, *vocabulary.LEAD_EVENTS, vocabulary.APP_INSTALL}
    offenders = []
    for path in sorted((ROOT / "b24app").rglob("*.py")):
        if path == ROOT / "b24app" / "vocabulary.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in spelled:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}")
    assert offenders == []
