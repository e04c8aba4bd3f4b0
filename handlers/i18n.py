"""The page's and the installer's language: gettext catalogs chosen by the LANG Bitrix24 sends.

Bitrix24 passes the portal user's interface language as `LANG` with the app page and installer
requests (https://apidocs.bitrix24.com/settings/oauth/simple-way.html), in its own codes: `br` is
Brazilian Portuguese and `la` Spanish (Bitrix24's JS SDK maps them to pt-BR and es-ES,
@bitrix24/b24jssdk core/language/list.ts). English is the source language (the msgids); the others
live in `handlers/translations/<locale>/LC_MESSAGES/messages.po` and are compiled in memory from
the .po at first use, so no binary catalog is kept in the repository. Any other language falls back
to English.

Texts of the core (`b24app.messages`: skip reasons, failures, why a job stopped) come stored in
English; `Texts.core` matches such a text back to its template and translates it with its values.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from gettext import NullTranslations
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from markupsafe import Markup, escape

from b24app import messages

DEFAULT = "en"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
DOMAIN = "messages"

# Bitrix24 LANG code -> gettext locale of the catalog (None: the English source texts).
LOCALES: dict[str, str | None] = {"en": None, "br": "pt_BR", "la": "es", "de": "de", "ru": "ru"}
# Other tags some callers use for the same languages.
_ALIASES = {"pt": "br", "pt-br": "br", "pt_br": "br", "es": "la", "es-es": "la", "en-us": "en"}
# The `lang` attribute of the page's <html> element.
HTML_LANG = {"en": "en", "br": "pt-BR", "la": "es", "de": "de", "ru": "ru"}

# The Bitrix24 helpdesk of each language: (CRM mode article, what the switch does to leads).
# EN: "CRM modes" 17627868 and 1478503 (bitrix24-platform.md). ES: "Seleccionar el modo de CRM"
# (24276156) explains both. DE: "CRM-Modus wählen" (24194172) and the older article that
# describes the lead conversion on the switch (17626398). For BR and RU no article id could be
# verified offline: the helpdesk home of that language.
HELP: dict[str, tuple[str, str]] = {
    "en": (
        "https://helpdesk.bitrix24.com/open/17627868/",
        "https://helpdesk.bitrix24.com/open/1478503/",
    ),
    "br": ("https://helpdesk.bitrix24.com.br/", "https://helpdesk.bitrix24.com.br/"),
    "la": (
        "https://helpdesk.bitrix24.es/open/24276156/",
        "https://helpdesk.bitrix24.es/open/24276156/",
    ),
    "de": (
        "https://helpdesk.bitrix24.de/open/24194172/",
        "https://helpdesk.bitrix24.de/open/17626398/",
    ),
    "ru": ("https://helpdesk.bitrix24.ru/", "https://helpdesk.bitrix24.ru/"),
}

_FIELD = re.compile(r"\{(\w+)\}")


def N_(text: str) -> str:
    """Mark `text` for the catalogs (the extractor's keyword); it is translated where shown."""
    return text


def language(lang: str | None) -> str:
    """The Bitrix24 code of the catalog for a LANG value ("br", "la", "de", "ru"), else "en"."""
    code = (lang or "").strip().lower()
    code = _ALIASES.get(code, code)
    return code if code in LOCALES else DEFAULT


def catalog_path(locale: str) -> Path:
    """Where the .po catalog of `locale` lives."""
    return TRANSLATIONS / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def _translations(lang: str) -> NullTranslations:
    """The compiled catalog of a language (from its .po, once per process)."""
    locale = LOCALES[lang]
    if locale is None:
        return NullTranslations()
    with catalog_path(locale).open("rb") as source:
        catalog = read_po(source, locale=locale, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(fp=compiled, domain=DOMAIN)


@functools.cache
def _templates() -> tuple[tuple[re.Pattern[str], str], ...]:
    """Each core template as a full-match pattern, the most literal first (fewest guesses)."""
    found = []
    for template in messages.ALL:
        parts = _FIELD.split(template)
        pattern = "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)" for i, part in enumerate(parts)
        )
        literal = sum(len(part) for part in parts[::2])
        found.append((literal, re.compile(pattern + r"\Z", re.DOTALL), template))
    found.sort(key=lambda item: -item[0])
    return tuple((pattern, template) for _, pattern, template in found)


@dataclass(frozen=True)
class Texts:
    """The texts of one language: gettext, plural forms and the core's stored messages."""

    lang: str

    @property
    def html_lang(self) -> str:
        """The page's <html lang>."""
        return HTML_LANG[self.lang]

    @property
    def help(self) -> tuple[str, str]:
        """(CRM mode article, switch article) in this language's Bitrix24 helpdesk."""
        return HELP[self.lang]

    def gettext(self, msgid: str, **values: Any) -> str:
        """`msgid` in this language, its `{names}` filled from `values`."""
        text = _translations(self.lang).gettext(msgid)
        return text.format(**values) if values else text

    def ngettext(self, singular: str, plural: str, n: int, **values: Any) -> str:
        """The plural form for `n` in this language; `{n}` and `values` filled in."""
        text = _translations(self.lang).ngettext(singular, plural, n)
        return text.format(n=n, **values)

    def html(self, msgid: str, **values: Any) -> Markup:
        """`msgid` in this language as HTML: the text escaped, `values` (HTML) put in."""
        return escape(_translations(self.lang).gettext(msgid)).format(**values)

    def core(self, text: str | None) -> str:
        """A stored core message (`b24app.messages`) in this language; other text unchanged."""
        if not text:
            return ""
        found = self._match(text)
        if found is not None:
            return found
        if "; " in text:
            return "; ".join(self.core(part) for part in text.split("; "))
        return text

    def _match(self, text: str) -> str | None:
        for pattern, template in _templates():
            matched = pattern.match(text)
            if matched is not None:
                values = {name: self._value(value) for name, value in matched.groupdict().items()}
                return self.gettext(template, **values) if values else self.gettext(template)
        return None

    def _value(self, value: str) -> str:
        """A value inside a core message: itself a core message, a list of them, or data."""
        found = self._match(value)
        if found is not None:
            return found
        if ", " in value:
            return ", ".join(self._value(part) for part in value.split(", "))
        if value in CAUSES:
            return self.gettext(CAUSES[value])
        if value in ENTITIES:
            return self.gettext(ENTITIES[value])
        words = value.split(" ", 1)
        if len(words) == 2 and words[0] in ENTITIES and words[1].isdigit():
            return f"{self.gettext(ENTITIES[words[0]])} {words[1]}"
        return value

    def core_html(self, text: str | None) -> Markup:
        """`core` as HTML, each value the template does not translate (the portal's data: names,
        ids, addresses, scopes) marked `translate="no"`, so no reader's tool translates it and
        the untranslated-text checks leave it out."""
        if not text:
            return Markup("")
        for pattern, template in _templates():
            matched = pattern.match(text)
            if matched is not None:
                values = {name: self._value_html(v) for name, v in matched.groupdict().items()}
                return self.html(template, **values)
        return escape(text)

    def _value_html(self, value: str) -> Markup:
        translated = self._value(value)
        if translated != value:
            return escape(translated)
        return Markup('<span translate="no">{}</span>').format(value)

    def labels(self, table: Mapping[str, str]) -> dict[str, str]:
        """A table of marked texts (e.g. STATUS) in this language."""
        return {key: self.gettext(text) for key, text in table.items()}


def texts(lang: str | None) -> Texts:
    """The Texts for a Bitrix24 LANG value."""
    return Texts(language(lang))


def languages() -> Iterator[str]:
    """Every language the page speaks, English first."""
    return iter(LOCALES)


# -- words the page shows for the core's identifiers ---------------------------------------------

MODES = {"classic": N_("Classic CRM"), "simple": N_("Simple CRM")}
MODES_LONG = {"classic": N_("Classic CRM (with leads)"), "simple": N_("Simple CRM (without leads)")}
JOB_STATUS = {
    "pending": N_("waiting"),
    "running": N_("running"),
    "done": N_("done"),
    "failed": N_("done with failures"),
    "interrupted": N_("interrupted"),
}
LEAD_STATUS = {
    "converted": N_("converted"),
    "failed": N_("failed"),
    "skipped": N_("skipped"),
    "pending": N_("not finished"),
    "creating": N_("not finished"),
}
# A lead in an undo: planned (revert, keep, fail) and done (the undo journal's statuses).
UNDO_STATUS = {
    "revert": N_("will be reverted"),
    "keep": N_("will be kept"),
    "fail": N_("cannot be undone"),
    "reverted": N_("reverted"),
    "kept": N_("kept"),
    "failed": N_("failed"),
    "pending": N_("not finished"),
    "reverting": N_("not finished"),
}
# What an undo does with each custom field its conversion created (b24app.undo_fieldwork).
UNDO_FIELD_STATUS = {
    "remove": N_("will be deleted"),
    "keep": N_("will be kept"),
    "gone": N_("already deleted"),
    "removed": N_("deleted"),
    "kept": N_("kept"),
    "failed": N_("failed"),
    "sent": N_("not finished"),
}
# Where a job came from (`jobs.kind`): the page, the guided switch, the CLI, an event, a sweep.
JOB_KINDS = {
    "app": N_("app page"),
    "switch": N_("mode switch"),
    "convert": N_("command line"),
    "event": N_("automatic (new or updated lead)"),
    "sweep": N_("automatic (periodic check)"),
    "auto": N_("automatic"),
    "undo": N_("undo of a conversion"),
}
OTHER_KIND = N_("other ({kind})")
# The "Check the portal" panel (b24app/doctor.py): each line's status and what it checks.
DOCTOR_STATUS = {"ok": N_("ok"), "warn": N_("warning"), "fail": N_("failed")}
DOCTOR_CHECKS = {
    "reach": N_("portal"),
    "credentials": N_("credentials"),
    "scopes": N_("permissions"),
    "admin": N_("administrator"),
    "mode": N_("CRM mode"),
    "methods": N_("methods"),
    "stages": N_("lead stages"),
    "pipelines": N_("pipelines"),
    "fields": N_("custom fields"),
    "plan": N_("plan"),
    "operating": N_("operating time"),
    "events": N_("events"),
    "public_url": N_("public address"),
}
ENTITIES = {
    "deal": N_("deal"),
    "contact": N_("contact"),
    "company": N_("company"),
    "lead": N_("lead"),
}
# What stopped a run, by the Python exception name the core records (JOB_STOPPED_BY's cause).
CAUSES = {"KeyboardInterrupt": N_("Ctrl-C"), "SystemExit": N_("the process was told to exit")}
