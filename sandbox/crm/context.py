"""What every CRM method works with: the store, the clock, the mode, pending events, errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sandbox.crm import dates
from sandbox.errors import ApiError
from sandbox.query import int_value
from sandbox.store import Store, Table

CLIENTS = ("contact", "company", "both", "none")


class Caller(Protocol):
    """The calling user, as the wire layer's CallContext describes them."""

    user_id: int
    crm_access: bool


# A REST method of the core: (crm, params, caller) -> result, or a query.Page for list methods.
Handler = Callable[["Crm", dict[str, Any], Caller], Any]

LEGACY = "legacy"  # legacy CRM proxy: errors are {"error": "", "error_description": "..."}
D7 = "d7"  # newer controllers: errors carry a code, e.g. ACCESS_DENIED
OPEN = "open"  # any user may call it, with or without CRM access


@dataclass(frozen=True)
class Method:
    """A registered core method and the style of its access check."""

    handler: Handler
    style: str = LEGACY


@dataclass(frozen=True)
class ConversionOptions:
    """The Simple-mode converter's settings (the CRM-mode dialog in the UI).

    https://helpdesk.bitrix24.com/open/17627868/
    """

    client: str = "contact"
    pipeline: int = 0
    complete_activities: bool = True
    # The automation converter creates the custom fields a target lacks before it maps
    # (crm/lib/automation/converter/converter.php:93-113); False maps only existing twins.
    sync_fields: bool = True

    @property
    def makes_contact(self) -> bool:
        """Whether a contact is created (or reused) for the client."""
        return self.client in ("contact", "both")

    @property
    def makes_company(self) -> bool:
        """Whether a company is created (or reused) for the client."""
        return self.client in ("company", "both")


class Crm:
    """The CRM state of one portal."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._now: tuple[int, str] = (-1, "")

    @property
    def mode(self) -> str:
        """ "classic" or "simple"."""
        return self.store.meta("mode", "classic") or "classic"

    @mode.setter
    def mode(self, value: str) -> None:
        self.store.set_meta("mode", value)

    @property
    def conversion(self) -> ConversionOptions:
        """The converter settings chosen at the last switch to Simple mode."""
        client = self.store.meta("conversion.client", "contact") or "contact"
        pipeline = int(self.store.meta("conversion.pipeline", "0") or 0)
        complete = self.store.meta("conversion.complete_activities", "Y") == "Y"
        return ConversionOptions(client, pipeline, complete)

    @conversion.setter
    def conversion(self, options: ConversionOptions) -> None:
        self.store.set_meta("conversion.client", options.client)
        self.store.set_meta("conversion.pipeline", str(options.pipeline))
        self.store.set_meta(
            "conversion.complete_activities", "Y" if options.complete_activities else "N"
        )

    def knob(self, name: str, default: str) -> str:
        """A reading chosen where the docs and the server code disagree (docs/sandbox.md)."""
        return self.store.meta(f"knob.{name}", default) or default

    def table(self, kind: str) -> Table:
        """The table of one kind of row."""
        return self.store.table(kind)

    def next_id(self, counter: str) -> int:
        """The next ID of a sequence."""
        return self.store.next_id(counter)

    def now(self) -> str:
        """The current time as stored and rendered."""
        second = int(self.clock())
        if self._now[0] != second:
            self._now = (second, dates.iso_from_timestamp(second))
        return self._now[1]

    def emit(self, event: str, entity_id: int) -> None:
        """Queue an event; the portal hands it to the sink after the change is stored."""
        self.events.append((event, {"FIELDS": {"ID": entity_id}}))


def legacy_error(description: str) -> ApiError:
    """An error of the legacy CRM methods: empty code, text only.

    https://apidocs.bitrix24.com/api-reference/crm/leads/crm-lead-get.html
    """
    return ApiError("", description, 400)


def missing_parameter(name: str) -> ApiError:
    """The error the newer controllers give for a missing required argument."""
    return ApiError("100", f"Could not find value for parameter {{{name}}}", 400)


def entity_id(params: dict[str, Any], *, message: str = "ID is not defined or invalid.") -> int:
    """The positive integer `id` of legacy get/update/delete calls."""
    raw = params.get("id")
    if isinstance(raw, bool) or raw is None:
        raise legacy_error(message)
    if isinstance(raw, str) and not raw.strip().isdigit():
        raise legacy_error(message)
    value = int_value(raw)
    if value <= 0:
        raise legacy_error(message)
    return value


def object_param(params: dict[str, Any], name: str, *, required: bool = True) -> Any:
    """An object parameter (`fields`, `filter`, ...); legacy methods reject anything else.

    A filter may arrive as a list (a form-encoded PHP array with numbered keys); it is returned
    as it is for the query compiler.
    """
    raw = params.get(name)
    if raw is None and not required:
        return {}
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, list) and (not raw or not required):
        return raw if raw else {}
    raise legacy_error(f"Parameter '{name}' must be array.")


def int_param(params: dict[str, Any], name: str) -> int:
    """A required integer argument of the newer controllers."""
    raw = params.get(name)
    if raw is None or raw == "":
        raise missing_parameter(name)
    return int_value(raw)
