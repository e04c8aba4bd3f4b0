"""The gettext catalogs: every text of the sources translated in every language, plural forms
right, help links per language, and the core's stored messages shown translated."""

from __future__ import annotations

import re

import pytest

from b24app import messages
from handlers import catalogs, i18n

LANGS = [lang for lang in i18n.LOCALES if lang != "en"]


@pytest.fixture(scope="module")
def template():
    return catalogs.extract()


def test_the_sources_have_texts_to_translate(template) -> None:
    ids = {m.id if isinstance(m.id, str) else m.id[0] for m in template if m.id}
    assert "Conversion policy" in ids  # a template text
    assert "already converted" in ids  # a core message
    assert "waiting" in ids  # a label marked in handlers/i18n.py
    assert len(ids) > 150


@pytest.mark.parametrize("locale", catalogs.locales())
def test_every_text_is_translated_in_every_catalog(template, locale: str) -> None:
    """Fails on a msgid missing from the catalog, left empty or fuzzy, with other placeholders,
    with the wrong number of plural forms, or kept after the sources dropped it."""
    assert catalogs.problems(locale, template) == []


def test_the_check_finds_a_missing_text(template, monkeypatch: pytest.MonkeyPatch) -> None:
    template.add("A text nobody translated yet")
    found = catalogs.problems("de", template)
    assert found == ["de: missing 'A text nobody translated yet'"]


def test_no_binary_catalog_is_kept_in_the_repository() -> None:
    assert list(i18n.TRANSLATIONS.rglob("*.mo")) == []


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("br", "br"),
        ("BR", "br"),
        ("pt", "br"),
        ("pt-BR", "br"),
        ("la", "la"),
        ("es", "la"),
        ("de", "de"),
        ("ru", "ru"),
        ("en", "en"),
        ("ua", "en"),
        ("pl", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_language_follows_bitrix24s_lang_codes(lang, expected) -> None:
    assert i18n.language(lang) == expected


@pytest.mark.parametrize(
    ("lang", "counts"),
    [
        ("en", {1: "1 lead was converted.", 2: "2 leads were converted."}),
        ("br", {0: "0 lead foi convertido.", 1: "1 lead foi convertido.", 2: "2 leads foram"}),
        ("la", {1: "Se convirtió 1 prospecto.", 3: "Se convirtieron 3 prospectos."}),
        ("de", {1: "1 Lead wurde konvertiert.", 4: "4 Leads wurden konvertiert."}),
        (
            "ru",
            {
                1: "Конвертирован 1 лид.",
                3: "Конвертировано 3 лида.",
                5: "Конвертировано 5 лидов.",
                11: "Конвертировано 11 лидов.",
                21: "Конвертирован 21 лид.",
            },
        ),
    ],
)
def test_plural_forms_follow_the_language(lang: str, counts: dict[int, str]) -> None:
    texts = i18n.texts(lang)
    for n, expected in counts.items():
        shown = texts.ngettext("{n} lead was converted.", "{n} leads were converted.", n)
        assert shown.startswith(expected), (n, shown)
        assert "(s)" not in shown


def test_help_links_go_to_the_helpdesk_of_the_language() -> None:
    hosts = {
        "en": "helpdesk.bitrix24.com",
        "br": "helpdesk.bitrix24.com.br",
        "la": "helpdesk.bitrix24.es",
        "de": "helpdesk.bitrix24.de",
        "ru": "helpdesk.bitrix24.ru",
    }
    for lang, host in hosts.items():
        for url in i18n.texts(lang).help:
            assert re.match(rf"https://{re.escape(host)}/", url), (lang, url)
    assert not any(".pl/" in url for urls in i18n.HELP.values() for url in urls)


@pytest.mark.parametrize(
    ("stored", "lang", "shown"),
    [
        (messages.SKIP_NOT_FOUND, "br", "lead não encontrado"),
        (messages.SKIP_CONVERTED_BY_JOB.format(job=4), "de", "bereits konvertiert von Vorgang 4"),
        (messages.SKIP_NOT_ACTIVE.format(stage="JUNK"), "la", "la etapa JUNK no es"),
        (
            messages.JOB_STOPPED_BY.format(cause="KeyboardInterrupt"),
            "br",
            "a execução foi interrompida (Ctrl-C)",
        ),
        (
            messages.FAIL_STEP.format(step="d", method="crm.deal.add", error="ACCESS_DENIED: no"),
            "ru",
            "шаг d (crm.deal.add) не выполнен: ACCESS_DENIED: no",
        ),
        (
            "; ".join(
                [
                    messages.SETTLED,
                    messages.SETTLED_KEPT.format(deal=9),
                    messages.SETTLED_REMOVED.format(entities="company 3, contact 4"),
                ]
            ),
            "br",
            "outra execução do b24app converteu este lead ao mesmo tempo; o negócio 9 (o menor "
            "ID) foi mantido; duplicatas removidas: empresa 3, contato 4",
        ),
        ("a portal's own words", "de", "a portal's own words"),
    ],
)
def test_stored_core_messages_are_shown_translated(stored: str, lang: str, shown: str) -> None:
    assert i18n.texts(lang).core(stored).startswith(shown)


def test_every_core_message_translates_in_every_language() -> None:
    for lang in LANGS:
        texts = i18n.texts(lang)
        for template in messages.ALL:
            filled = template.format(**{name: "7" for name in re.findall(r"\{(\w+)\}", template)})
            assert texts.core(filled) != filled, (lang, template)


def test_html_texts_escape_the_text_and_keep_the_values() -> None:
    shown = i18n.texts("br").html(
        "Waits for job {job} to finish: one job runs at a time on a portal.",
        job=i18n.Markup('<a href="/x">#3</a>'),
    )
    assert str(shown).startswith('Aguarda o término do trabalho <a href="/x">#3</a>')


def test_no_language_calls_a_job_and_a_deal_by_one_word() -> None:
    # German had "Auftrag" for both: "Auftrag #1" (a deal) on the page of "Auftrag 1" (a job).
    for lang in i18n.LOCALES:
        texts = i18n.Texts(lang)
        job = texts.gettext("Job").lower()
        assert job != texts.gettext("Deal").lower(), lang
        assert job != texts.gettext(i18n.ENTITIES["deal"]).lower(), lang
