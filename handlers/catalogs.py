"""Keep the gettext catalogs in step with the sources: extract, update, check.

The msgids are the English texts of the page and installer templates, of `handlers/*.py` (marked
with `N_`, `_`, `gettext`, `ngettext`) and of the core's user-facing messages (`b24app.messages`).
`python -m handlers.catalogs update` merges new texts into every .po (new ones empty, changed ones
fuzzy, for a translator); `python -m handlers.catalogs check` lists what a translator still owes.
The tests run the same check, so a text without a translation in every language fails them.
"""

from __future__ import annotations

import string
import sys
from collections.abc import Iterable
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.pofile import read_po, write_po

from handlers import i18n

ROOT = Path(__file__).resolve().parents[1]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None, "_html": None}
CORE = ROOT / "b24app" / "messages.py"
METHODS = [
    ("**/templates/**.html", "jinja2.ext:babel_extract"),
    ("**.py", "python"),
]


def extract() -> Catalog:
    """Every translatable text of the sources, as a template catalog."""
    template = Catalog(domain=i18n.DOMAIN, project="b24app", msgid_bugs_address="")
    found = extract_from_dir(
        str(ROOT / "handlers"), METHODS, {}, keywords=KEYWORDS, strip_comment_tags=True
    )
    for filename, lineno, message, _comments, context in found:
        template.add(message, locations=[(f"handlers/{filename}", lineno)], context=context)
    for lineno, message, _comments, context in extract_from_file(
        "python", str(CORE), keywords=KEYWORDS
    ):
        template.add(message, locations=[("b24app/messages.py", lineno)], context=context)
    return template


def locales() -> list[str]:
    """The locales that have a catalog (every language but the English source)."""
    return [locale for locale in i18n.LOCALES.values() if locale is not None]


def load(locale: str) -> Catalog:
    """The .po catalog of `locale`."""
    with i18n.catalog_path(locale).open("rb") as source:
        return read_po(source, locale=locale, domain=i18n.DOMAIN)


def save(catalog: Catalog, locale: str) -> None:
    """Write `catalog` to the .po of `locale`."""
    path = i18n.catalog_path(locale)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as target:
        write_po(target, catalog, width=100, omit_header=False, sort_output=True)


def update() -> None:
    """Merge the extracted texts into every catalog (creating missing catalogs)."""
    template = extract()
    for locale in locales():
        if i18n.catalog_path(locale).exists():
            catalog = load(locale)
        else:
            catalog = Catalog(locale=locale, domain=i18n.DOMAIN, project="b24app")
        catalog.update(template, no_fuzzy_matching=False)
        catalog.obsolete.clear()
        save(catalog, locale)


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _ids(message_id: str | tuple[str, ...]) -> tuple[str, ...]:
    return message_id if isinstance(message_id, tuple) else (message_id,)


def problems(locale: str, template: Catalog | None = None) -> list[str]:
    """What the catalog of `locale` lacks against the sources (empty: complete)."""
    template = template or extract()
    catalog = load(locale)
    found: list[str] = []
    wanted = {message.id for message in template if message.id}
    for message in template:
        if not message.id:
            continue
        entry = catalog.get(message.id)
        key = _ids(message.id)[0]
        if entry is None:
            found.append(f"{locale}: missing {key!r}")
            continue
        strings = _ids(entry.string)
        if entry.fuzzy:
            found.append(f"{locale}: fuzzy {key!r}")
        if message.pluralizable != entry.pluralizable:
            found.append(f"{locale}: plural mismatch {key!r}")
            continue
        if message.pluralizable and len(strings) != catalog.num_plurals:
            found.append(f"{locale}: {len(strings)} plural forms for {key!r}")
        if not all(s.strip() for s in strings):
            found.append(f"{locale}: untranslated {key!r}")
            continue
        fields = set().union(*(_fields(i) for i in _ids(message.id)))
        for text in strings:
            if not _fields(text) <= fields or (
                not message.pluralizable and _fields(text) != fields
            ):
                found.append(f"{locale}: placeholders differ in {key!r}: {text!r}")
    for entry in catalog:
        if entry.id and entry.id not in wanted:
            found.append(f"{locale}: stale {_ids(entry.id)[0]!r} (no longer in the sources)")
    return found


def check(names: Iterable[str] | None = None) -> list[str]:
    """Problems of every catalog (or of `names`)."""
    template = extract()
    return [problem for locale in (names or locales()) for problem in problems(locale, template)]


def main(argv: list[str]) -> int:
    """`update` or `check`; exit 1 when `check` finds problems."""
    command = argv[0] if argv else "check"
    if command == "update":
        update()
        return 0
    if command == "check":
        found = check()
        for problem in found:
            print(problem)
        return 1 if found else 0
    print("usage: python -m handlers.catalogs update|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
