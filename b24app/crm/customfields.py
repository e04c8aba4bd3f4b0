"""Custom fields (UF_CRM_*) of a lead, carried to the deal, contact and company it becomes.

Pure: definitions in, values and a mapping report out. The I/O is elsewhere - the definitions ride
in the facts batch (`b24app.crm.reader`), files are downloaded by the shell (`download_files`).

The rules are Bitrix24's own conversion (yuliai/bitrix-modules, `crm/lib/conversion/`):

* Pairing: `b24app.crm.fieldpairs` - label (EDIT_FORM_LABEL else LIST_COLUMN_LABEL, lower-case,
  no spaces), USER_TYPE_ID and MULTIPLE equal, each target field taken once
  (`userfieldsynchronizer.php:514-566,646-655`). Labels come in `LANGUAGE`.
* Values (`entityconversionmapper.php` `mapUserField`, :300-455): resourcebooking is not
  supported (`UserFieldSynchronizer::isUserFieldTypeSupported`), so never copied; enumerations
  are re-mapped by option text (`getEnumerationMap`, md5 of VALUE, :466-480) and an option the
  target lacks is left out - here with a per-lead warning instead of silently; files are copied
  as new files (`CCrmFileProxy::TryResolveFile`: through REST a download from the lead and an
  upload as `fileData` onto the target); address values lose their location id
  (`getAddressFields`, `unset($addressFields['id'])`); every other type (string, integer,
  double, boolean, date, datetime, money, url, employee, crm, crm_status, iblock_element,
  iblock_section) is copied as it is (the mapper's last line). Multiple fields map item by item.
* Empty values (None, "", [] and empty items of a multiple field) are never sent (b24app's rule
  for every field, `b24app.crm.mapping`).
* Missing target fields: listed per target (`report`), and created when the policy says so
  (`create_command`: same type, labels, settings and list options, as
  `UserFieldSynchronizer::synchronize` does, `userfieldsynchronizer.php:234-330`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from b24app import messages as msg
from b24app.crm import fieldpairs
from b24app.crm.mapping import is_empty
from b24app.rest.command import Command

ENTITIES = ("lead", "deal", "contact", "company")
TARGETS = ("deal", "contact", "company")
LANGUAGE = "en"
KEY_PREFIX = "uf"
# Not supported by the native conversion (userfieldsynchronizer.php isUserFieldTypeSupported).
UNSUPPORTED = frozenset({"resourcebooking"})
FILE = "file"
MAX_NAME = 50
# The definition keys `crm.*.userfield.add` takes from a lead field (synchronize():
# SORT, MULTIPLE, MANDATORY, SHOW_FILTER, SHOW_IN_LIST, SETTINGS, the three labels).
_COPIED = ("USER_TYPE_ID", "SORT", "MULTIPLE", "MANDATORY", "SHOW_FILTER", "SHOW_IN_LIST")
_LABELS = ("EDIT_FORM_LABEL", "LIST_COLUMN_LABEL", "LIST_FILTER_LABEL")

# Mapping report states.
PAIRED, CREATE, NOT_COPIED = "paired", "create", "not_copied"


def list_key(entity: str) -> str:
    """The batch key of `crm.<entity>.userfield.list`."""
    return f"{KEY_PREFIX}{entity}"


def list_commands(language: str = LANGUAGE) -> tuple[Command, ...]:
    """One `crm.<entity>.userfield.list` per entity (labels only with filter[LANG]:
    rest/lib/userfieldproxy.php:567-636)."""
    return tuple(
        Command(list_key(e), f"crm.{e}.userfield.list", {"filter": {"LANG": language}})
        for e in ENTITIES
    )


def _rows(raw: Any) -> tuple[Mapping[str, Any], ...]:
    if isinstance(raw, Mapping):
        raw = list(raw.values())
    if not isinstance(raw, list | tuple):
        return ()
    return tuple(r for r in raw if isinstance(r, Mapping) and r.get("FIELD_NAME"))


def _text(value: Any, language: str) -> str:
    if isinstance(value, Mapping):
        value = value.get(language) or next((v for v in value.values() if v), "")
    return str(value or "")


@dataclass(frozen=True)
class Line:
    """One lead field's fate for one target: paired with `field`, `create`d, or not copied."""

    lead_field: str
    label: str
    type: str
    target: str
    state: str
    field: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "lead_field": self.lead_field,
            "label": self.label,
            "type": self.type,
            "target": self.target,
            "state": self.state,
            "field": self.field,
            "reason": self.reason,
        }

    def text(self) -> str:
        """`Budget (UF_CRM_1) -> deal UF_CRM_7`, `... -> contact: will be created`,
        `... -> company: not copied (no matching field)`: short enough for an 80-column line."""
        head = f"{self.label or self.lead_field} ({self.lead_field}) -> {self.target}"
        if self.state == PAIRED:
            return f"{head} {self.field}"
        if self.state == CREATE:
            return f"{head}: will be created"
        return f"{head}: not copied ({self.short_reason})"

    @property
    def short_reason(self) -> str:
        """Why the values are not copied, in a few words (`reason` says it in full)."""
        if self.reason and self.reason.startswith(f"the {self.target} has no field"):
            return "no matching field"
        if self.reason and self.reason.endswith("(as in Bitrix24)"):
            return "as in Bitrix24"
        return self.reason or "not copied"


@dataclass(frozen=True)
class Mapped:
    """The custom-field values of one lead for one target.

    `values`: ready to send (UF name -> value); `files`: file fields still to download
    (target field -> download URLs, with whether the field is multiple); `warnings`: values left
    out, said per lead.
    """

    values: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, tuple[tuple[str, ...], bool]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class CustomFields:
    """The custom-field definitions of lead, deal, contact and company, read once per job.

    `error`: why they could not be read (then nothing is mapped and the report says so);
    `created`: target -> {lead field -> the field b24app created for it} (policy "create").
    """

    rows: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    language: str = LANGUAGE
    error: str | None = None
    created: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def from_results(
        cls,
        results: Mapping[str, Any],
        errors: Mapping[str, Any] | None = None,
        *,
        language: str = LANGUAGE,
    ) -> CustomFields:
        """From a batch holding `list_commands()`; a failed read becomes `error`."""
        for entity in ENTITIES:
            failure = (errors or {}).get(list_key(entity))
            if failure is not None:
                code = getattr(failure, "code", "") or ""
                return cls(
                    language=language,
                    error=f"custom fields of the {entity} could not be read "
                    f"({code or failure}); custom fields are not copied",
                )
        return cls(rows={e: _rows(results.get(list_key(e))) for e in ENTITIES}, language=language)

    # -- definitions -----------------------------------------------------------------------

    def defs(self, entity: str) -> tuple[fieldpairs.FieldDef, ...]:
        """The FieldDefs of an entity, in list order."""
        return fieldpairs.field_defs(list(self.rows.get(entity, ())), self.language)

    def row(self, entity: str, name: str) -> Mapping[str, Any] | None:
        """One definition by field name."""
        return self._by_name.get((entity, name))

    @cached_property
    def _by_name(self) -> dict[tuple[str, str], Mapping[str, Any]]:
        return {(e, str(r["FIELD_NAME"])): r for e, rows in self.rows.items() for r in rows}

    @cached_property
    def _pairings(self) -> dict[str, fieldpairs.Pairing]:
        lead = self.defs("lead")
        return {t: fieldpairs.pair_fields(lead, self.defs(t)) for t in TARGETS}

    def pairs(self, target: str) -> dict[str, str]:
        """Lead field -> target field: the native pairs, plus the fields b24app created."""
        found = dict(self._pairings[target].pairs) if target in self._pairings else {}
        for lead_field, made in (self.created.get(target) or {}).items():
            found.setdefault(lead_field, made)
        return found

    def missing(self, target: str) -> tuple[fieldpairs.FieldDef, ...]:
        """Supported lead fields with no twin in `target` (and none created)."""
        if target not in self._pairings:
            return ()
        made = self.created.get(target) or {}
        return tuple(
            f
            for f in self._pairings[target].missing
            if f.type not in UNSUPPORTED and f.name not in made
        )

    @property
    def any(self) -> bool:
        """Whether the lead has any custom field."""
        return bool(self.rows.get("lead"))

    # -- the report --------------------------------------------------------------------------

    def report(self, targets: Iterable[str], *, create: bool = False) -> list[Line]:
        """Every lead field's fate for each of `targets` (the preview's mapping)."""
        lines = []
        for target in targets:
            pairs = self.pairs(target)
            for lead in self.defs("lead"):
                base = {"lead_field": lead.name, "label": lead.label, "type": lead.type}
                if lead.type in UNSUPPORTED:
                    lines.append(
                        Line(
                            **base,
                            target=target,
                            state=NOT_COPIED,
                            reason=f"{lead.type} fields are not converted (as in Bitrix24)",
                        )
                    )
                elif lead.name in pairs:
                    lines.append(Line(**base, target=target, state=PAIRED, field=pairs[lead.name]))
                elif create:
                    lines.append(Line(**base, target=target, state=CREATE))
                else:
                    lines.append(
                        Line(
                            **base,
                            target=target,
                            state=NOT_COPIED,
                            reason=f"the {target} has no field with this label, type and multiple",
                        )
                    )
        return lines

    # -- values ------------------------------------------------------------------------------

    def map_lead(self, lead: Mapping[str, Any], target: str) -> Mapped:
        """The lead's custom-field values as `target`'s fields (see the module doc)."""
        values: dict[str, Any] = {}
        files: dict[str, tuple[tuple[str, ...], bool]] = {}
        warnings: list[str] = []
        for source_name, target_name in self.pairs(target).items():
            raw = lead.get(source_name)
            source = self.row("lead", source_name) or {}
            user_type = str(source.get("USER_TYPE_ID") or "")
            if user_type in UNSUPPORTED or _blank(raw):
                continue
            multiple = str(source.get("MULTIPLE") or "N").upper() == "Y"
            items = [i for i in (raw if isinstance(raw, list | tuple) else [raw]) if not _blank(i)]
            if not multiple:
                items = items[:1]
            if user_type == FILE:
                urls = tuple(u for u in map(file_url, items) if u)
                if urls:
                    files[target_name] = (urls, multiple)
                continue
            if user_type == "enumeration":
                items = self._options(source, target, target_name, items, warnings)
            elif user_type == "address":
                items = [address_without_id(i) for i in items]
            items = [i for i in items if not _blank(i)]
            if items:
                values[target_name] = items if multiple else items[0]
        return Mapped(values, files, tuple(warnings))

    def _options(
        self,
        source: Mapping[str, Any],
        target: str,
        target_name: str,
        items: Sequence[Any],
        warnings: list[str],
    ) -> list[Any]:
        texts = {str(o.get("ID")): str(o.get("VALUE") or "") for o in _options(source)}
        # two options with one text: the last in list order wins, as array_flip keeps it
        ids = {
            str(o.get("VALUE") or ""): str(o.get("ID"))
            for o in _options(self.row(target, target_name) or {})
        }
        shown = fieldpairs.label_of(source, self.language) or source.get("FIELD_NAME")
        out = []
        for item in items:
            text = texts.get(str(item))
            if text is None:
                warnings.append(msg.FIELD_OPTION_UNKNOWN.format(field=shown, option=item))
            elif text in ids:
                out.append(ids[text])
            else:
                warnings.append(
                    msg.FIELD_OPTION_MISSING.format(field=shown, target=target, option=text)
                )
        return out

    # -- creating missing fields --------------------------------------------------------------

    def create_command(self, key: str, target: str, lead_field: str, name: str) -> Command:
        """`crm.<target>.userfield.add` for a copy of `lead_field` named `name`.

        synchronize() copies the type, SORT, MULTIPLE, MANDATORY, SHOW_FILTER, SHOW_IN_LIST,
        SETTINGS, the three labels and the list options without their ids.
        """
        row = self.row("lead", lead_field) or {}
        fields: dict[str, Any] = {"FIELD_NAME": name}
        fields |= {k: row[k] for k in _COPIED if row.get(k) not in (None, "")}
        if isinstance(row.get("SETTINGS"), Mapping):
            fields["SETTINGS"] = dict(row["SETTINGS"])
        for label in _LABELS:
            text = _text(row.get(label), self.language)
            if text:
                fields[label] = {self.language: text}
        if row.get("USER_TYPE_ID") == "enumeration":
            fields["LIST"] = [
                {k: o[k] for k in ("VALUE", "SORT", "DEF", "XML_ID") if o.get(k) not in (None, "")}
                for o in _options(row)
            ]
        return Command(key, f"crm.{target}.userfield.add", {"fields": fields})


def created_name(lead_field: str, target: str) -> str:
    """The full name b24app gives the copy of `lead_field` it creates on `target`.

    Deterministic, so two runs that both try to create it collide on the name (the portal keeps
    one field per name) instead of making two fields. `userfield.add` prefixes UF_CRM_
    (userfieldproxy.php:222-283); FIELD_NAME holds 50 characters at most (b_user_field), so a
    long stem is cut and made unique by a hash of the lead field's name.
    """
    stem = lead_field.removeprefix("UF_CRM_")
    tail = f"_B24{target[:2].upper()}"
    if len("UF_CRM_") + len(stem) + len(tail) > MAX_NAME:
        digest = hashlib.sha256(lead_field.encode()).hexdigest()[:8].upper()
        stem = stem[: MAX_NAME - len("UF_CRM_") - len(tail) - 9] + "_" + digest
    return f"UF_CRM_{stem}{tail}"


def _options(row: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = row.get("LIST")
    if isinstance(found, Mapping):
        found = list(found.values())
    return [o for o in found or () if isinstance(o, Mapping)]


def _blank(value: Any) -> bool:
    return is_empty(value)


def file_url(value: Any) -> str | None:
    """The download URL of a file value as read (`{id, showUrl, downloadUrl}`)."""
    if isinstance(value, Mapping):
        url = value.get("downloadUrl") or value.get("showUrl")
        return str(url) if url else None
    return None


def address_without_id(value: Any) -> Any:
    """An address value (`text|lat;lng|id`) without its location id, as getAddressFields
    drops `id` (entityconversionmapper.php:430-455)."""
    if not isinstance(value, str):
        return value
    return "|".join(value.split("|")[:2])


# -- files: markers in a plan, filled in by the shell -------------------------------------------

_MARKER = "b24app_files"


def file_marker(urls: Sequence[str], multiple: bool) -> dict[str, Any]:
    """What a plan holds for a file field until its files are downloaded."""
    return {_MARKER: list(urls), "multiple": bool(multiple)}


def pending_files(fields: Mapping[str, Any]) -> list[str]:
    """The download URLs a plan's entity fields still wait for, in order."""
    urls: list[str] = []
    for value in fields.values():
        if isinstance(value, Mapping) and _MARKER in value:
            urls.extend(str(u) for u in value[_MARKER])
    return urls


def fill_files(
    fields: Mapping[str, Any],
    downloaded: Mapping[str, tuple[str, bytes] | str],
    *,
    label: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Fields with each file marker replaced by `{"fileData": [name, base64]}` items (the REST
    upload format: https://apidocs.bitrix24.com/api-reference/data-types.html#file);
    `downloaded[url]` is (name, bytes), or the text of why the portal would not serve it - such
    a file is left out with a warning, the rest of the entity is written."""
    import base64

    out: dict[str, Any] = {}
    warnings: list[str] = []
    for name, value in fields.items():
        if not (isinstance(value, Mapping) and _MARKER in value):
            out[name] = value
            continue
        items = []
        for url in value[_MARKER]:
            got = downloaded.get(url)
            if isinstance(got, tuple):
                items.append({"fileData": [got[0], base64.b64encode(got[1]).decode("ascii")]})
            else:
                shown = (label or {}).get(name) or name
                error = got or msg.FIELD_FILE_NOT_DOWNLOADED
                warnings.append(msg.FIELD_FILE_FAILED.format(field=shown, error=error))
        if items:
            out[name] = items if value.get("multiple") else items[0]
    return out, warnings


# -- the job's mapping, for the preview ---------------------------------------------------------


@dataclass(frozen=True)
class FieldMapping:
    """Where each custom lead field goes in a job: `lines` per target, or `error` when the
    definitions could not be read (nothing is copied then)."""

    lines: tuple[Line, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: {"error", "fields": [...]}."""
        return {"error": self.error, "fields": [line.to_dict() for line in self.lines]}

    def text_lines(self) -> list[str]:
        """`custom fields:` and one line per lead field and target; [] when there are none."""
        if self.error:
            return [f"custom fields: {self.error}"]
        if not self.lines:
            return []
        lines = [
            "custom fields (lead field -> target):",
            *(f"  {line.text()}" for line in self.lines),
        ]
        missing = sum(1 for line in self.lines if line.short_reason == "no matching field")
        if missing:
            lines.append(
                f"  {missing} with no matching field (label, type, multiple): "
                "--create-fields makes them"
            )
        return lines

    def note(self) -> str | None:
        """One sentence for the job's end: which lead fields were not copied where."""
        if self.error:
            return self.error
        missing: dict[str, list[str]] = {}
        for line in self.lines:
            if line.state == NOT_COPIED and line.type not in UNSUPPORTED:
                missing.setdefault(line.target, []).append(line.label or line.lead_field)
        if not missing:
            return None
        return "custom fields not copied (no field with the same label, type and multiple): " + (
            "; ".join(f"{target}: {', '.join(names)}" for target, names in missing.items())
        )

    @property
    def unpaired(self) -> tuple[Line, ...]:
        """The lines whose values are not copied."""
        return tuple(line for line in self.lines if line.state == NOT_COPIED)


def field_mapping(found: CustomFields, policy: Any) -> FieldMapping:
    """The mapping a job under `policy` uses: the deal, and the clients the policy makes."""
    if found.error:
        return FieldMapping(error=found.error)
    client = getattr(policy, "client", None)
    targets = ["deal"]
    if client is None or client.wants_contact:
        targets.append("contact")
    if client is None or client.wants_company:
        targets.append("company")
    create = bool(getattr(policy, "create_fields", False))
    return FieldMapping(tuple(found.report(targets, create=create)))
