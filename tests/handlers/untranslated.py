"""Find English left on a translated page: words of the English texts (the msgids) that the
language's catalog never uses, in the page's visible text and its placeholder/label attributes.

Text the page marks `translate="no"` (the portal's own data: stage, pipeline and lead names) and
scripts are left out.
"""

from __future__ import annotations

import functools
import re
from html.parser import HTMLParser

from handlers import catalogs, i18n

_WORD = re.compile(r"[A-Za-z][A-Za-z']+")
_FIELD = re.compile(r"\{\w+\}")
_METHOD = re.compile(r"\b[a-z]+(?:\.[a-z]+)+\b")  # REST method names such as crm.deal.add
# Names and codes that stay as they are in every language.
KEEP = {"crm", "bitrix", "csv", "rest", "utc", "oauth", "ctrl", "api", "app"}
_ATTRIBUTES = ("placeholder", "aria-label", "title", "alt")
_VOID = {"br", "hr", "img", "input", "meta", "link", "source", "wbr", "col", "area", "base"}


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(_FIELD.sub(" ", _METHOD.sub(" ", text))) if len(w) > 2}


@functools.cache
def english_only(lang: str) -> frozenset[str]:
    """Words of the English texts that the catalog of `lang` never uses."""
    template = catalogs.extract()
    english: set[str] = set()
    for message in template:
        for msgid in message.id if isinstance(message.id, tuple) else (message.id,):
            english |= _words(msgid or "")
    locale = i18n.LOCALES[lang]
    used: set[str] = set()
    if locale is not None:
        for message in catalogs.load(locale):
            for text in message.string if isinstance(message.string, tuple) else (message.string,):
                used |= _words(text or "")
    return frozenset(english - used - KEEP)


class _Visible(HTMLParser):
    """Collects the text and labelling attributes a reader sees, outside translate="no"."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._stack: list[bool] = []  # per open element: is it excluded?

    def _excluded(self) -> bool:
        return any(self._stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        excluded = tag in ("script", "style", "title") or values.get("translate") == "no"
        if not (excluded or self._excluded()):
            self.texts += [values[a] or "" for a in _ATTRIBUTES if a in values]
        if tag not in _VOID:
            self._stack.append(excluded)

    def handle_endtag(self, tag: str) -> None:
        if tag not in _VOID and self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if data.strip() and not self._excluded():
            self.texts.append(data.strip())


def visible_texts(html: str) -> list[str]:
    """The texts of `html` a reader sees (see the module doc)."""
    parser = _Visible()
    parser.feed(html)
    return parser.texts


def english_left(texts: list[str], lang: str) -> list[str]:
    """The texts that hold a word only the English catalog uses ([] on an English page)."""
    if i18n.language(lang) == "en":
        return []
    only = english_only(i18n.language(lang))
    return [text for text in texts if _words(text) & only or "(s)" in text]
