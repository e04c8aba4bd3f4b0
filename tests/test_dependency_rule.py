"""The dependency rule: b24app never imports handlers or sandbox; sandbox never imports b24app."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "b24app": {"handlers", "sandbox", "flask", "werkzeug"},
    "sandbox": {"b24app", "handlers"},
}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_the_dependency_rule(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no sources found under {package}/"
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_roots(path) & FORBIDDEN[package])
        for path in files
        if _imported_roots(path) & FORBIDDEN[package]
    }
    assert offenders == {}


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
