"""The in-process sandbox portal: CRM state and methods the wire layer dispatches to.

`Portal.dispatch` runs one REST method under `Portal.lock`, writes the changes through to the
SQLite file (when one is used), then hands queued events to `event_sink`. The wire layer owns
HTTP, auth, batch, limits and faults, and registers its own methods with `register`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox import crm
from sandbox import seed as seeding
from sandbox.crm import mode as crm_mode
from sandbox.crm.context import D7, OPEN, ConversionOptions, Crm, Method
from sandbox.errors import ApiError
from sandbox.query import Page, as_list
from sandbox.store import Store, bulk

MODES = ("classic", "simple")
# knob -> its allowed values (empty: free text); docs/sandbox.md says what each reading is.
KNOBS: dict[str, tuple[str, ...]] = {
    "simple_add": ("docs", "code"),
    "conversion_activities": ("docs", "code"),
    "default_contact_name": (),
    "webhook_auth_error": ("code", "docs"),
    # Readings `b24app doctor` tells apart (issue 20).
    "productrow_owner_arrays": ("code", "docs"),
    "batch_sections": ("code", "docs"),
    "error_statuses": ("code", "docs"),
    "app_info_webhook": ("docs", "code"),
}
_COUNTED = ("lead", "deal", "contact", "company", "activity", "productrow", "comment")


@dataclass(frozen=True)
class CallContext:
    """Who calls: user 1 is the admin; 2 and 3 are ordinary users (3 without CRM access)."""

    user_id: int = 1
    is_admin: bool = True
    crm_access: bool = True
    auth_kind: str = "webhook"


@dataclass
class MethodResult:
    """A method's answer; list methods add `total` (unless start=-1) and `next` (if more rows)."""

    result: Any
    total: int | None = None
    next: int | None = None


ServerMethod = Callable[[dict[str, Any], CallContext], MethodResult]


class Portal:
    """A local Bitrix24 portal's CRM, in memory or written through to a SQLite file."""

    def __init__(
        self,
        *,
        mode: str = "classic",
        seed_leads: int = 0,
        seed: int = 1,
        custom_fields: bool = False,
        knobs: dict[str, str] | None = None,
        db_path: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown CRM mode {mode!r}; expected 'classic' or 'simple'")
        self.lock = threading.RLock()
        self.event_sink: Callable[[str, dict], None] | None = None
        self._methods = crm.methods()
        self._server_methods: dict[str, ServerMethod] = {}
        with bulk():
            self._store = Store(db_path)
            self._crm = Crm(self._store, clock)
            crm.install(self._crm)
            if self._store.is_fresh:
                # A reopened file keeps its own mode and data; only a new portal takes these.
                self._crm.mode = mode
                if seed_leads or custom_fields:
                    seeding.populate(self._crm, seed_leads, seed, custom_fields=custom_fields)
                self._store.flush()
        self._crm.events.clear()
        for name, value in (knobs or {}).items():
            self.set_knob(name, value)

    @property
    def mode(self) -> str:
        """ "classic" or "simple"."""
        return self._crm.mode

    def dispatch(self, method: str, params: dict, ctx: CallContext) -> MethodResult:
        """Run one REST method; errors are ApiError with Bitrix24's code, text and status."""
        name = method.lower()
        with self.lock:
            server_method = self._server_methods.get(name)
            if server_method is not None:
                return server_method(params, ctx)
            entry = self._methods.get(name)
            if entry is None:
                raise ApiError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
            _check_access(entry, ctx)
            try:
                out = entry.handler(self._crm, _normalized(_either_case(params or {})), ctx)
            finally:
                self._commit()
        if isinstance(out, Page):
            return MethodResult(out.result, out.total, out.next)
        return MethodResult(out)

    def register(self, method: str, fn: ServerMethod) -> None:
        """Add a method served by the wire layer (event.*, user.*, app.info, ...)."""
        with self.lock:
            self._server_methods[method.lower()] = fn

    def has_method(self, method: str) -> bool:
        """Whether `method` exists on this portal."""
        name = method.lower()
        return name in self._methods or name in self._server_methods

    def set_mode(
        self,
        mode: str,
        *,
        client: str = "contact",
        pipeline: int = 0,
        complete_activities: bool = True,
        sync_fields: bool = True,
    ) -> dict:
        """The admin's UI switch (no REST setter exists); to "simple" converts active leads.

        `sync_fields=False`: the converter maps custom fields into existing twins only (what a
        Classic conversion does when the user declines creating the missing fields,
        leadconverter.php:553-561); True creates them first (converter.php:93-113)."""
        options = ConversionOptions(client, pipeline, complete_activities, sync_fields)
        with self.lock, bulk():
            try:
                return crm_mode.switch(self._crm, mode, options)
            finally:
                self._commit()

    def set_knob(self, name: str, value: str) -> None:
        """Choose a reading where the docs and the server code disagree (docs/sandbox.md)."""
        if name not in KNOBS:
            raise ValueError(f"unknown knob {name!r}; expected one of {', '.join(KNOBS)}")
        if KNOBS[name] and value not in KNOBS[name]:
            raise ValueError(f"knob {name} takes {', '.join(KNOBS[name])}, not {value!r}")
        with self.lock:
            self._store.set_meta(f"knob.{name}", value)
            self._store.flush()

    def knob(self, name: str, default: str | None = None) -> str:
        """The reading chosen for knob `name` (its first allowed value when never set)."""
        fallback = default if default is not None else (KNOBS[name][0] if KNOBS.get(name) else "")
        with self.lock:
            return self._crm.knob(name, fallback)

    def set_plan_leads(self, allowed: bool) -> None:
        """The portal's plan allows leads (True) or forbids them (crm.settings.mode.get then
        answers 2 whatever the mode: crm/lib/settings/leadsettings.php:297-306)."""
        with self.lock:
            self._store.set_meta("plan.leads", "Y" if allowed else "N")
            self._store.flush()

    def file(self, file_id: int) -> tuple[str, bytes] | None:
        """(name, bytes) of a stored custom-field file, for the download URL."""
        from sandbox.crm import userfields

        with self.lock:
            return userfields.file_content(self._crm, file_id)

    def counts(self) -> dict[str, int]:
        """How many rows of each kind the portal holds."""
        with self.lock:
            return {kind: len(self._store.table(kind)) for kind in _COUNTED}

    def close(self) -> None:
        """Flush and close the SQLite file, if any."""
        with self.lock:
            self._store.close()

    def _commit(self) -> None:
        self._store.flush()
        events, self._crm.events = self._crm.events, []
        sink = self.event_sink
        if sink is not None:
            for event, payload in events:
                sink(event, payload)


def _check_access(entry: Method, ctx: CallContext) -> None:
    if entry.style == OPEN or ctx.crm_access:
        return
    if entry.style == D7:
        raise ApiError("ACCESS_DENIED", "Access denied", 400)
    raise ApiError("", "Access denied.", 400)


def _either_case(params: dict) -> dict:
    """Top-level `ID`/`FIELDS`/`FILTER`... are read like `id`/`fields`/`filter`.

    Bitrix24's legacy CRM methods look a parameter up by its lower-case name, then upper-case
    (the docs' own examples send `ID` and `FIELDS`); the lower-case key wins when both are sent.
    """
    extra = {k.lower(): v for k, v in params.items() if k.isupper() and k.lower() not in params}
    return {**params, **extra} if extra else params


def _normalized(value: Any) -> Any:
    """Form-encoded PHP arrays: a non-empty dict with only digit keys is a list."""
    if isinstance(value, dict):
        if value:
            listed = as_list(value)
            if listed is not None:
                return [_normalized(v) for v in listed]
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value
