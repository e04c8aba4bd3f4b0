"""The page's two catalogs: same keys, same placeholders, and every key the templates use."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from handlers import i18n

TEMPLATES = Path(i18n.__file__).resolve().parent / "templates"


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_catalogs_have_the_same_keys() -> None:
    assert set(i18n.EN) == set(i18n.BR)


@pytest.mark.parametrize("key", sorted(i18n.EN))
def test_translations_keep_the_placeholders(key: str) -> None:
    assert placeholders(i18n.EN[key]) == placeholders(i18n.BR[key])


def test_every_literal_key_in_the_templates_exists() -> None:
    used, prefixes = set(), set()
    for template in TEMPLATES.glob("page*.html"):
        source = template.read_text(encoding="utf-8")
        used |= set(re.findall(r"_\('([a-z_]+)'\s*[,)]", source))
        prefixes |= set(re.findall(r"_\('([a-z_]+_)'\s*~", source))
    assert used and prefixes, "no keys found in the page templates"
    assert used - set(i18n.EN) == set()
    assert {p for p in prefixes if not any(k.startswith(p) for k in i18n.EN)} == set()


@pytest.mark.parametrize(
    ("lang", "catalog"),
    [
        ("br", "br"),
        ("BR", "br"),
        ("pt", "br"),
        ("pt-BR", "br"),
        ("en", "en"),
        ("de", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_language_picks_brazilian_portuguese_for_br_else_english(lang, catalog) -> None:
    assert i18n.language(lang) == catalog


def test_translator_formats_and_falls_back_to_english() -> None:
    assert i18n.translator("br")("job_title", job=3) == "Trabalho de conversão 3"
    assert i18n.translator("xx")("job_title", job=3) == "Conversion job 3"
    assert i18n.translator("en")("no_such_key") == "no_such_key"
