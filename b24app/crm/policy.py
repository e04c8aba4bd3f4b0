"""Conversion policy: Bitrix24's own "switch to Simple mode" options, one to one, plus app extras.

Bitrix24's options (https://helpdesk.bitrix24.pl/open/17645664/): which clients the deal gets
(contact by default, or company, or both), which deal pipeline (default 0), and "do not close
activities after conversion" (off by default: open activities are completed). The app adds: which
leads to convert, client matching by phone/e-mail, and an auto-convert rule for the event path.

`Policy.from_dict/from_json` accept partial input (missing keys take the defaults) and report every
problem in one `PolicyError`; `Policy.problems(facts)` checks the values against the portal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from b24app import messages as msg
from b24app.crm.facts import PortalFacts
from b24app.errors import UsageError

E = TypeVar("E", bound=StrEnum)


class PolicyError(UsageError):
    """A policy that cannot be used; `.problems` lists every reason, the message joins them."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid conversion policy: " + "; ".join(self.problems))


class Client(StrEnum):
    """Which client entities a conversion creates next to the deal."""

    CONTACT = "contact"
    COMPANY = "company"
    BOTH = "both"

    @property
    def wants_contact(self) -> bool:
        """Whether this choice creates (or matches) a contact."""
        return self is not Client.COMPANY

    @property
    def wants_company(self) -> bool:
        """Whether this choice creates (or matches) a company."""
        return self is not Client.CONTACT


class Activities(StrEnum):
    """What happens to a lead's open activities.

    `move` is Bitrix24's "do not close activities after conversion": they end up bound to the
    deal, still open. `complete` (Bitrix24's default) marks them done.
    """

    MOVE = "move"
    COMPLETE = "complete"


class MatchBy(StrEnum):
    """Communication types used to find an existing client (`crm.duplicate.findbycomm`)."""

    PHONE = "phone"
    EMAIL = "email"


def _date_or_none(value: date | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class LeadSelection:
    """Which leads to convert: all active ones, narrowed by ids, stages, sources, creation date.

    Only active leads (stage semantics P) are ever converted, whatever is selected.
    `created_after`/`created_before` are exclusive calendar dates.
    """

    ids: tuple[int, ...] = ()
    stages: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    created_after: date | None = None
    created_before: date | None = None

    def selects(self, lead: Mapping[str, Any]) -> bool:
        """Whether a lead (as read) passes this selection; activity is checked separately."""
        if self.ids and _as_int(lead.get("ID")) not in self.ids:
            return False
        if self.stages and str(lead.get("STATUS_ID") or "") not in self.stages:
            return False
        if self.sources and str(lead.get("SOURCE_ID") or "") not in self.sources:
            return False
        if self.created_after or self.created_before:
            created = _created_date(lead)
            if created is None:
                return False
            if self.created_after and not created > self.created_after:
                return False
            if self.created_before and not created < self.created_before:
                return False
        return True

    def lead_filter(self, facts: PortalFacts) -> dict[str, Any]:
        """The `crm.lead.list` filter for the selected active leads.

        https://apidocs.bitrix24.com/api-reference/crm/leads/crm-lead-list.html
        """
        active = facts.active_lead_stages
        stages = [s for s in active if s in self.stages] if self.stages else list(active)
        result: dict[str, Any] = {"@STATUS_ID": stages}
        if self.ids:
            result["@ID"] = list(self.ids)
        if self.sources:
            result["@SOURCE_ID"] = list(self.sources)
        if self.created_after:
            result[">=DATE_CREATE"] = (self.created_after + timedelta(days=1)).isoformat()
        if self.created_before:
            result["<DATE_CREATE"] = self.created_before.isoformat()
        return result

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "ids": list(self.ids),
            "stages": list(self.stages),
            "sources": list(self.sources),
            "created_after": _date_or_none(self.created_after),
            "created_before": _date_or_none(self.created_before),
        }


@dataclass(frozen=True)
class AutoConvert:
    """The Market app's event rule: convert a lead as soon as it matches (off by default)."""

    enabled: bool = False
    stages: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    def matches(self, lead: Mapping[str, Any], facts: PortalFacts) -> bool:
        """Whether an added/updated lead should be converted now under this rule."""
        if not self.enabled or not facts.is_active(lead):
            return False
        if self.stages and str(lead.get("STATUS_ID") or "") not in self.stages:
            return False
        return not (self.sources and str(lead.get("SOURCE_ID") or "") not in self.sources)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"enabled": self.enabled, "stages": list(self.stages), "sources": list(self.sources)}


@dataclass(frozen=True)
class Policy:
    """Everything a conversion run needs to know besides the portal and the leads."""

    client: Client = Client.CONTACT
    pipeline: int = 0
    activities: Activities = Activities.COMPLETE
    leads: LeadSelection = field(default_factory=LeadSelection)
    match_clients: tuple[MatchBy, ...] = ()
    auto: AutoConvert = field(default_factory=AutoConvert)
    # Create the custom fields a deal/contact/company lacks (Bitrix24 asks first: off by
    # default; b24app.crm.fieldsync).
    create_fields: bool = False

    def problems(self, facts: PortalFacts) -> list[str]:
        """Every reason this policy cannot run on the portal described by `facts` (empty: fine).

        The pipeline must be one `crm.category.list` returned; selected and auto-convert stages
        must be active lead stages (when the facts list lead stages).
        """
        found: list[str] = []
        if self.pipeline not in facts.pipeline_ids:
            known = ", ".join(str(i) for i in facts.pipeline_ids) or msg.NONE
            found.append(msg.POLICY_NO_PIPELINE.format(pipeline=self.pipeline, known=known))
        if facts.lead_stages:
            active = set(facts.active_lead_stages)
            for where, stages in (
                ("leads.stages", self.leads.stages),
                ("auto.stages", self.auto.stages),
            ):
                for stage in stages:
                    if facts.lead_stage(stage) is None:
                        found.append(msg.POLICY_NO_STAGE.format(where=where, stage=repr(stage)))
                    elif stage not in active:
                        found.append(msg.POLICY_CLOSED_STAGE.format(where=where, stage=repr(stage)))
        return found

    def check(self, facts: PortalFacts) -> Policy:
        """Return self if `problems(facts)` is empty, else raise a PolicyError listing them all."""
        found = self.problems(facts)
        if found:
            raise PolicyError(found)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `from_dict(to_dict())` gives an equal policy."""
        return {
            "client": self.client.value,
            "pipeline": self.pipeline,
            "activities": self.activities.value,
            "leads": self.leads.to_dict(),
            "match_clients": [m.value for m in self.match_clients],
            "auto": self.auto.to_dict(),
        } | ({"create_fields": True} if self.create_fields else {})

    def to_json(self) -> str:
        """The policy as a JSON object string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Policy:
        """Parse a JSON object; missing keys take defaults; PolicyError lists every problem."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise PolicyError([msg.POLICY_BAD_JSON.format(error=exc)]) from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> Policy:
        """Build a policy from a JSON-like dict; PolicyError lists every problem at once."""
        reader = _Reader()
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise PolicyError([msg.POLICY_NOT_OBJECT])
        reader.unknown_keys(
            "",
            data,
            {"client", "pipeline", "activities", "leads", "match_clients", "auto", "create_fields"},
        )
        leads = reader.section(
            "leads",
            data.get("leads"),
            {"ids", "stages", "sources", "created_after", "created_before"},
        )
        auto = reader.section("auto", data.get("auto"), {"enabled", "stages", "sources"})
        policy = cls(
            client=reader.choice("client", data.get("client"), Client, Client.CONTACT),
            pipeline=reader.integer("pipeline", data.get("pipeline"), 0),
            activities=reader.choice(
                "activities", data.get("activities"), Activities, Activities.COMPLETE
            ),
            leads=LeadSelection(
                ids=reader.items("leads.ids", leads.get("ids"), reader.positive),
                stages=reader.items("leads.stages", leads.get("stages"), reader.text),
                sources=reader.items("leads.sources", leads.get("sources"), reader.text),
                created_after=reader.day("leads.created_after", leads.get("created_after")),
                created_before=reader.day("leads.created_before", leads.get("created_before")),
            ),
            match_clients=tuple(
                dict.fromkeys(
                    reader.items(
                        "match_clients",
                        data.get("match_clients"),
                        lambda where, v: reader.choice(where, v, MatchBy, None),
                    )
                )
            ),
            auto=AutoConvert(
                enabled=reader.flag("auto.enabled", auto.get("enabled")),
                stages=reader.items("auto.stages", auto.get("stages"), reader.text),
                sources=reader.items("auto.sources", auto.get("sources"), reader.text),
            ),
            create_fields=reader.flag("create_fields", data.get("create_fields")),
        )
        after, before = policy.leads.created_after, policy.leads.created_before
        if after and before and after >= before:
            reader.problems.append(msg.POLICY_DATES_ORDER)
        if reader.problems:
            raise PolicyError(reader.problems)
        return policy


class _Reader:
    """Reads loosely typed JSON values, collecting a message per problem instead of raising."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def unknown_keys(self, where: str, data: Mapping[str, Any], known: set[str]) -> None:
        for key in data:
            if key not in known:
                name = f"{where}.{key}" if where else str(key)
                self.problems.append(msg.POLICY_UNKNOWN.format(name=repr(name)))

    def section(self, where: str, value: Any, known: set[str]) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problems.append(msg.POLICY_SECTION.format(where=where))
            return {}
        self.unknown_keys(where, value, known)
        return value

    def choice(self, where: str, value: Any, enum: type[E], default: E | None) -> Any:
        if value is None and default is not None:
            return default
        try:
            return enum(str(value).strip().lower())
        except ValueError:
            allowed = " | ".join(member.value for member in enum)
            self.problems.append(
                msg.POLICY_CHOICE.format(where=where, allowed=allowed, value=repr(value))
            )
            return default

    def integer(self, where: str, value: Any, default: int) -> int:
        if value is None:
            return default
        number = _as_int(value)
        if number is None or number < 0:
            self.problems.append(msg.POLICY_WHOLE.format(where=where, value=repr(value)))
            return default
        return number

    def positive(self, where: str, value: Any) -> int | None:
        number = _as_int(value)
        if number is None or number <= 0:
            self.problems.append(msg.POLICY_POSITIVE.format(where=where, value=repr(value)))
            return None
        return number

    def text(self, where: str, value: Any) -> str | None:
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
            self.problems.append(msg.POLICY_TEXTS.format(where=where, value=repr(value)))
            return None
        return str(value).strip()

    def flag(self, where: str, value: Any) -> bool:
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in ("y", "yes", "true", "1", "on"):
            return True
        if word in ("n", "no", "false", "0", "off"):
            return False
        self.problems.append(msg.POLICY_FLAG.format(where=where, value=repr(value)))
        return False

    def day(self, where: str, value: Any) -> date | None:
        if value is None or value == "":
            return None
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.problems.append(msg.POLICY_DAY.format(where=where, value=repr(value)))
            return None

    def items(self, where: str, value: Any, read: Callable[[str, Any], Any]) -> tuple[Any, ...]:
        if value is None:
            return ()
        if isinstance(value, str | int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, Sequence):
            self.problems.append(msg.POLICY_LIST.format(where=where))
            return ()
        read_items = (read(where, item) for item in value)
        return tuple(item for item in read_items if item is not None)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _created_date(lead: Mapping[str, Any]) -> date | None:
    raw = lead.get("DATE_CREATE")
    if not raw:
        return None
    try:
        return datetime.fromisoformat(str(raw)).date()
    except ValueError:
        return None
