"""What `b24app doctor` asks a portal and what the answers mean: commands and readings, no I/O.

Every request is a read. The first batch asks everything b24app relies on at once; the second,
keyed 0 and 1 on purpose, shows how the portal shapes batch sections and whether
`crm.item.productrow.list` takes a list of owners; a third, single call is sent only when the
token lacks some scope, to see which HTTP status `insufficient_scope` carries. Each reading
returns one `Check` (ok / warn / fail, what it means, what to do) or one `Variant` (which side
of a docs/code disagreement this portal is on).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from b24app import messages as msg
from b24app.crm import fieldpairs
from b24app.crm.facts import FactsError, PortalFacts, facts_commands
from b24app.crm.mode import MODE_HELP_URL, Mode, ModeError, mode_command, parse_mode
from b24app.errors import B24Error, OperationTimeLimit
from b24app.rest.command import Command
from b24app.rest.response import Time

OK, WARN, FAIL = "ok", "warn", "fail"
CODE, DOCS, UNKNOWN = "code", "docs", "unknown"

# Scopes b24app needs: CRM for everything; the Market app's page also asks `user.current`.
WEBHOOK_SCOPES = ("crm",)
APP_SCOPES = ("crm", "user")
# The per-method operating-time budget the docs give as the example (limits.md: 480 s in 10 min).
OPERATING_LIMIT = 480.0
# What a conversion calls (b24app/crm/reader.py, planner.py, scheduler.py).
CONVERSION_METHODS = (
    "crm.settings.mode.get",
    "crm.status.list",
    "crm.category.list",
    "crm.lead.list",
    "crm.lead.update",
    "crm.activity.list",
    "crm.activity.update",
    "crm.activity.binding.add",
    "crm.activity.binding.delete",
    "crm.item.productrow.list",
    "crm.duplicate.findbycomm",
    "crm.deal.add",
    "crm.deal.list",
    "crm.deal.productrows.set",
    "crm.contact.add",
    "crm.contact.list",
    "crm.company.add",
    "crm.company.list",
    "crm.timeline.comment.add",
)
FIELD_ENTITIES = ("lead", "deal", "contact", "company")
# A method per optional scope: called only when that scope is *not* granted, so the answer is
# `insufficient_scope` and shows its HTTP status (docs 403, server code 401).
STATUS_PROBES = (("department", "department.get"), ("user", "user.current"))

# Keys of the first batch.
SCOPE, APP, PROFILE, ADMIN, MODE, LEADS, EVENTS = (
    "scope",
    "app",
    "me",
    "admin",
    "mode",
    "leads",
    "ev",
)
# Keys of the second batch: 0..n-1 on purpose (see `batch_sections`).
SHAPE_KEY, ROWS_KEY = "0", "1"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: str
    summary: str
    fix: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        out: dict[str, Any] = {"check": self.name, "status": self.status, "summary": self.summary}
        if self.fix:
            out["fix"] = self.fix
        if self.data:
            out["data"] = dict(self.data)
        return out


@dataclass(frozen=True)
class Variant:
    """Which reading of a docs/code disagreement the portal shows: "code", "docs", "unknown"."""

    name: str
    value: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"variant": self.name, "value": self.value, "detail": self.detail}


@dataclass(frozen=True)
class Answers:
    """One batch's outcome, as the readings take it."""

    results: Mapping[str, Any] = field(default_factory=dict)
    errors: Mapping[str, B24Error] = field(default_factory=dict)
    times: Mapping[str, Time] = field(default_factory=dict)


def method_key(index: int) -> str:
    """The first batch's key of the `method.get` for CONVERSION_METHODS[index]."""
    return f"m{index}"


def fields_key(entity: str) -> str:
    """The first batch's key of `crm.<entity>.userfield.list`."""
    return f"uf_{entity}"


def first_commands(*, app: bool, language: str = "en") -> tuple[Command, ...]:
    """Everything the doctor reads, in one batch (about 30 commands: one request)."""
    commands = [
        Command(SCOPE, "scope"),
        Command(APP, "app.info"),
        Command(PROFILE, "profile"),
        Command(ADMIN, "user.admin"),
        mode_command(MODE),
        *facts_commands((0,)),
        Command(
            LEADS,
            "crm.lead.list",
            {"order": {"ID": "ASC"}, "select": ["ID"], "start": -1},
        ),
    ]
    commands += [
        Command(fields_key(entity), f"crm.{entity}.userfield.list", {"filter": {"LANG": language}})
        for entity in FIELD_ENTITIES
    ]
    commands += [
        Command(method_key(i), "method.get", {"name": name})
        for i, name in enumerate(CONVERSION_METHODS)
    ]
    if app:
        commands.append(Command(EVENTS, "event.get"))
    return tuple(commands)


def lead_ids(answers: Answers) -> list[int]:
    """Up to two lead ids from the first batch, for the product-row probe."""
    rows = answers.results.get(LEADS)
    if isinstance(rows, Mapping):
        rows = list(rows.values())
    found = []
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, Mapping) and str(row.get("ID", "")).isdigit():
            found.append(int(row["ID"]))
    return found[:2]


def second_commands(ids: Sequence[int]) -> tuple[Command, ...]:
    """The second batch: a read that always succeeds at key 0, the owner-list probe at key 1."""
    commands = [Command(SHAPE_KEY, "user.admin")]
    if ids:
        commands.append(
            Command(
                ROWS_KEY,
                "crm.item.productrow.list",
                {"filter": {"=ownerType": "L", "=ownerId": list(ids)}},
            )
        )
    return tuple(commands)


def status_probe(granted: Collection[str]) -> str | None:
    """A method of a scope the token lacks (its answer shows insufficient_scope's status)."""
    return next((method for scope, method in STATUS_PROBES if scope not in granted), None)


# -- blocking checks: later ones need these ----------------------------------------------------


def granted_scopes(answers: Answers) -> tuple[str, ...] | None:
    """The token's scopes from `scope` (or a webhook's `app.info` SCOPE); None if unknown."""
    for raw in (answers.results.get(SCOPE), _mapping(answers.results.get(APP)).get("SCOPE")):
        if isinstance(raw, Mapping):
            raw = list(raw.values())
        if isinstance(raw, list):
            return tuple(str(s).lower() for s in raw)
    return None


def credentials(answers: Answers, *, app: bool) -> Check:
    """The portal took the webhook / app token; whom b24app acts as."""
    me = _mapping(answers.results.get(PROFILE))
    who = " ".join(str(me.get(k) or "") for k in ("NAME", "LAST_NAME")).strip()
    user_id = str(me.get("ID") or "?")
    if who:
        template = msg.DOCTOR_TOKEN_USER_NAMED if app else msg.DOCTOR_WEBHOOK_USER_NAMED
    else:
        template = msg.DOCTOR_TOKEN_USER if app else msg.DOCTOR_WEBHOOK_USER
    return Check(
        "credentials",
        OK,
        template.format(user=user_id, name=who),
        data={"user_id": user_id, "auth": "app" if app else "webhook"},
    )


def scopes(answers: Answers, *, app: bool) -> Check:
    """Every scope b24app needs is granted."""
    needed = APP_SCOPES if app else WEBHOOK_SCOPES
    granted = granted_scopes(answers)
    if granted is None:
        denied = [k for k, e in answers.errors.items() if e.code.lower() == "insufficient_scope"]
        if MODE in denied:
            granted = ()
        else:
            return Check(
                "scopes",
                WARN,
                msg.DOCTOR_SCOPES_UNLISTED,
                data={"needed": list(needed)},
            )
    missing = [s for s in needed if s not in granted]
    if missing:
        where = (
            msg.DOCTOR_APP_SCOPES_FIX
            if app
            else msg.DOCTOR_WEBHOOK_SCOPES_FIX.format(
                scopes=", ".join(f"{s.upper()} ({s})" for s in missing)
            )
        )
        lacks = msg.DOCTOR_APP_LACKS if app else msg.DOCTOR_WEBHOOK_LACKS
        return Check(
            "scopes",
            FAIL,
            lacks.format(scopes=", ".join(missing)),
            fix=where,
            data={"granted": list(granted), "missing": missing},
        )
    return Check(
        "scopes",
        OK,
        msg.DOCTOR_GRANTED.format(scopes=", ".join(granted)),
        data={"granted": list(granted)},
    )


def admin(answers: Answers) -> Check:
    """The acting user is a portal administrator (user fields and the mode switch need one)."""
    raw = answers.results.get(ADMIN)
    if raw is True or str(raw).lower() in ("true", "1", "y"):
        return Check("admin", OK, msg.DOCTOR_ADMIN)
    return Check("admin", FAIL, msg.DOCTOR_NOT_ADMIN, fix=msg.DOCTOR_NOT_ADMIN_FIX)


def mode(answers: Answers, license_name: str | None) -> Check:
    """Classic CRM (leads exist); Simple is a failure with the way back."""
    if MODE in answers.errors:
        error = answers.errors[MODE]
        return Check("mode", FAIL, msg.DOCTOR_MODE_FAILED.format(error=error.code or error))
    try:
        current = parse_mode(answers.results.get(MODE))
    except ModeError as exc:
        return Check("mode", FAIL, str(exc))
    if current is Mode.CLASSIC:
        classic = msg.DOCTOR_CLASSIC_PLAN if license_name else msg.DOCTOR_CLASSIC
        return Check("mode", OK, classic.format(plan=license_name), data={"mode": 1})
    # LeadSettings::isEnabled() is false when the plan lacks the `crm_leads` feature too
    # (crm/lib/settings/leadsettings.php, RestrictionManager::getLeadsRestriction): the same
    # answer 2 then means the plan does not allow Classic, which REST cannot tell apart.
    simple = msg.DOCTOR_SIMPLE_PLAN if license_name else msg.DOCTOR_SIMPLE
    return Check(
        "mode",
        FAIL,
        simple.format(plan=license_name),
        fix=msg.DOCTOR_SIMPLE_FIX.format(url=MODE_HELP_URL),
        data={"mode": 2},
    )


# -- the rest --------------------------------------------------------------------------------


def methods(answers: Answers) -> Check:
    """Every method a conversion calls exists and is available to this token (`method.get`)."""
    missing, unknown = [], []
    for i, name in enumerate(CONVERSION_METHODS):
        answer = _mapping(answers.results.get(method_key(i)))
        if not answer:
            unknown.append(name)
        elif not (_truthy(answer.get("isExisting")) and _truthy(answer.get("isAvailable"))):
            missing.append(name)
    if missing:
        return Check(
            "methods",
            FAIL,
            msg.DOCTOR_METHODS_MISSING.format(count=len(missing), methods=", ".join(missing)),
            fix=msg.DOCTOR_METHODS_FIX,
            data={"missing": missing},
        )
    if unknown and len(unknown) == len(CONVERSION_METHODS):
        return Check("methods", WARN, msg.DOCTOR_METHODS_UNKNOWN)
    return Check("methods", OK, msg.DOCTOR_METHODS_OK.format(count=len(CONVERSION_METHODS)))


def facts(answers: Answers) -> PortalFacts | None:
    """Lead stages and pipelines, or None when they could not be read."""
    try:
        return PortalFacts.from_batch(answers.results)
    except FactsError:
        return None


def stages(answers: Answers) -> Check:
    """Lead stages: one with success semantics (where converted leads go), some in work."""
    found = facts(answers)
    if found is None or not found.lead_stages:
        return Check("stages", FAIL, msg.DOCTOR_NO_STAGES)
    try:
        success = found.success_stage
    except FactsError as exc:
        return Check(
            "stages",
            FAIL,
            str(exc),
            fix=msg.DOCTOR_STAGES_FIX,
        )
    active = found.active_lead_stages
    return Check(
        "stages",
        OK if active else WARN,
        msg.DOCTOR_STAGES.format(count=len(found.lead_stages), active=len(active), stage=success),
        data={"success": success, "active": list(active)},
    )


def pipelines(answers: Answers) -> Check:
    """Deal pipelines the acting user can see (the default one, 0, at least)."""
    found = facts(answers)
    if found is None or not found.pipelines:
        return Check(
            "pipelines",
            FAIL,
            msg.DOCTOR_NO_PIPELINE,
            fix=msg.DOCTOR_NO_PIPELINE_FIX,
        )
    names = ", ".join(f"{p.id} {p.name}" for p in found.pipelines)
    return Check(
        "pipelines",
        OK,
        msg.DOCTOR_PIPELINES.format(count=len(found.pipelines), names=names),
        data={"ids": list(found.pipeline_ids)},
    )


def custom_fields(answers: Answers, language: str = "en") -> Check:
    """Which lead custom fields pair with a deal/contact/company field, and which lack a twin."""
    failed = [e for e in FIELD_ENTITIES if fields_key(e) in answers.errors]
    if failed:
        error = answers.errors[fields_key(failed[0])]
        return Check(
            "fields",
            WARN,
            msg.DOCTOR_FIELDS_UNREAD.format(entities=", ".join(failed), error=error.code or error),
        )
    defs = {
        e: fieldpairs.field_defs(answers.results.get(fields_key(e)), language)
        for e in FIELD_ENTITIES
    }
    lead = defs["lead"]
    if not lead:
        return Check("fields", OK, msg.DOCTOR_NO_FIELDS)
    data: dict[str, Any] = {"lead": [f.name for f in lead]}
    gaps: dict[str, tuple[fieldpairs.FieldDef, ...]] = {}
    for target in FIELD_ENTITIES[1:]:
        pairing = fieldpairs.pair_fields(lead, defs[target])
        data[target] = {
            "paired": dict(pairing.pairs),
            "missing": [f.name for f in pairing.missing],
        }
        if pairing.missing:
            gaps[target] = pairing.missing
    if not gaps:
        return Check("fields", OK, msg.DOCTOR_FIELDS_OK.format(count=len(lead)), data=data)
    counts = ", ".join(_GAPS[target].format(count=len(missing)) for target, missing in gaps.items())
    named = ", ".join(f.label or f.name for f in gaps.get("deal", ())[:5])
    summary = msg.DOCTOR_FIELDS_GAPS_NAMED if named else msg.DOCTOR_FIELDS_GAPS
    return Check(
        "fields",
        WARN,
        summary.format(count=len(lead), gaps=counts, fields=named),
        fix=msg.DOCTOR_FIELDS_FIX,
        data=data,
    )


_GAPS = {
    "deal": msg.DOCTOR_GAP_DEAL,
    "contact": msg.DOCTOR_GAP_CONTACT,
    "company": msg.DOCTOR_GAP_COMPANY,
}


def license_of(answers: Answers) -> str | None:
    """The plan's licence from `app.info` (LICENSE, e.g. "en_ent250"); None when not given."""
    raw = _mapping(answers.results.get(APP)).get("LICENSE")
    return str(raw) if raw else None


def plan_of(license_name: str | None) -> str:
    """ "enterprise", "standard" or "unknown" from a licence name (rest_provider.php licenseList:
    ent250 ... entholding10000 are the Enterprise family)."""
    if not license_name:
        return UNKNOWN
    code = license_name.rsplit("_", 1)[-1].lower()
    return "enterprise" if code.startswith("ent") else "standard"


def plan(answers: Answers, configured: str) -> Check:
    """The rate plan (from app.info's licence, never from a burst) against B24APP_PLAN."""
    license_name = license_of(answers)
    found = plan_of(license_name)
    data = {"license": license_name, "plan": found, "configured": configured}
    enterprise = found == "enterprise"
    if found == UNKNOWN:
        return Check(
            "plan",
            WARN,
            msg.DOCTOR_PLAN_UNKNOWN.format(configured=configured),
            fix=msg.DOCTOR_PLAN_UNKNOWN_FIX,
            data=data,
        )
    if configured == found:
        same = msg.DOCTOR_PLAN_ENTERPRISE if enterprise else msg.DOCTOR_PLAN_STANDARD
        return Check("plan", OK, same, data=data)
    if configured == "fast":
        summary = msg.DOCTOR_PLAN_FAST_ENTERPRISE if enterprise else msg.DOCTOR_PLAN_FAST_STANDARD
    else:
        summary = msg.DOCTOR_PLAN_SLOW if enterprise else msg.DOCTOR_PLAN_FAST
    return Check("plan", WARN, summary, fix=msg.DOCTOR_PLAN_FIX.format(plan=found), data=data)


def operating(batches: Sequence[tuple[Answers, Mapping[str, str]]]) -> Check:
    """Operating time used per method over the last 10 minutes (`time.operating`), from the
    answers themselves; a blocked method is a failure."""
    used: dict[str, float] = {}
    blocked: dict[str, float | None] = {}
    for answers, methods_by_key in batches:
        for key, time in answers.times.items():
            method = methods_by_key.get(key)
            if method and time.operating is not None:
                used[method] = max(used.get(method, 0.0), time.operating)
        for key, error in answers.errors.items():
            if isinstance(error, OperationTimeLimit) and key in methods_by_key:
                blocked[methods_by_key[key]] = error.reset_at
    data: dict[str, Any] = {"used": used, "limit": OPERATING_LIMIT, "blocked": list(blocked)}
    if blocked:
        return Check(
            "operating",
            FAIL,
            msg.DOCTOR_BLOCKED.format(methods=", ".join(blocked)),
            fix=msg.DOCTOR_BLOCKED_FIX,
            data=data,
        )
    if not used:
        return Check(
            "operating",
            OK,
            msg.DOCTOR_NO_OPERATING,
            data=data,
        )
    worst = max(used, key=lambda m: used[m])
    share = used[worst] / OPERATING_LIMIT
    values = {"method": worst, "used": f"{used[worst]:.1f}", "limit": f"{OPERATING_LIMIT:.0f}"}
    if share >= 0.5:
        return Check(
            "operating",
            WARN,
            msg.DOCTOR_OPERATING_HIGH.format(**values),
            fix=msg.DOCTOR_OPERATING_FIX,
            data=data,
        )
    return Check("operating", OK, msg.DOCTOR_OPERATING.format(**values), data=data)


def events(answers: Answers, handler: str, wanted: Sequence[str]) -> Check:
    """The app's event handlers are bound to its public URL (`event.get`)."""
    if EVENTS in answers.errors:
        error = answers.errors[EVENTS]
        return Check("events", FAIL, msg.DOCTOR_EVENTS_FAILED.format(error=error.code or error))
    rows = answers.results.get(EVENTS)
    rows = list(rows.values()) if isinstance(rows, Mapping) else rows
    rows = rows if isinstance(rows, list) else []
    bound = {
        str(r.get("event", "")).upper()
        for r in rows
        if isinstance(r, Mapping) and str(r.get("handler", "")) == handler
    }
    missing = [e for e in wanted if e not in bound]
    if missing:
        return Check(
            "events",
            FAIL,
            msg.DOCTOR_NOT_BOUND.format(handler=handler, events=", ".join(missing)),
            fix=msg.DOCTOR_NOT_BOUND_FIX,
            data={"bound": sorted(bound), "missing": missing},
        )
    return Check(
        "events",
        OK,
        msg.DOCTOR_BOUND.format(events=", ".join(wanted), handler=handler),
        data={"bound": sorted(bound)},
    )


# -- variants --------------------------------------------------------------------------------


def productrow_owner_arrays(second: Answers | None) -> Variant:
    """Does `crm.item.productrow.list` take `=ownerId: [ids]`? (productrow.php:281-309)."""
    name = "productrow_owner_arrays"
    if second is None or (ROWS_KEY not in second.results and ROWS_KEY not in second.errors):
        return Variant(name, UNKNOWN, "no lead to ask about")
    if ROWS_KEY in second.results:
        return Variant(name, CODE, "a list of owners works: product rows of 500 leads per page")
    error = second.errors[ROWS_KEY]
    return Variant(
        name,
        DOCS,
        f"a list of owners is refused ({error.code or 'error'}): product rows are read one "
        "lead per command",
    )


def batch_sections(raw: Any) -> Variant:
    """Are batch sections keyed 0..n-1 sent as JSON lists (PHP json_encode) or as objects?"""
    name = "batch_sections"
    section = _mapping(raw).get("result") if isinstance(raw, Mapping) else None
    if isinstance(section, list) and section:
        return Variant(name, CODE, "sections keyed 0..n-1 come as JSON lists (json_encode)")
    if isinstance(section, Mapping) and SHAPE_KEY in section:
        return Variant(name, DOCS, "sections come as objects keyed by command key")
    return Variant(name, UNKNOWN, "the probe batch answered nothing to compare")


def error_statuses(status: int | None, code: str, probed: str | None) -> Variant:
    """The HTTP status of `insufficient_scope`: 401 (server code) or 403 (docs)."""
    name = "error_statuses"
    if probed is None:
        return Variant(name, UNKNOWN, "every optional scope is granted: nothing to provoke")
    if code.lower() != "insufficient_scope":
        return Variant(name, UNKNOWN, f"{probed} answered {code or 'without error'}")
    if status == 401:
        return Variant(name, CODE, f"insufficient_scope is HTTP 401 ({probed})")
    if status == 403:
        return Variant(name, DOCS, f"insufficient_scope is HTTP 403 ({probed})")
    return Variant(name, UNKNOWN, f"insufficient_scope came with HTTP {status} ({probed})")


def app_info_webhook(answers: Answers) -> Variant:
    """Through a webhook, `app.info` gives SCOPE and LICENSE (code) or refuses (docs)."""
    name = "app_info_webhook"
    if APP in answers.results:
        return Variant(name, CODE, "app.info answers a webhook with its scopes and licence")
    error = answers.errors.get(APP)
    code = error.code if error is not None else "no answer"
    return Variant(name, DOCS, f"app.info refuses a webhook ({code})")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1", "y")
