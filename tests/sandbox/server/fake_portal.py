"""A tiny stand-in for `sandbox.portal` honouring the core contract (leads only).

Used only while the real core module does not exist yet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.errors import ApiError


@dataclass(frozen=True)
class CallContext:
    user_id: int = 1
    is_admin: bool = True
    crm_access: bool = True
    auth_kind: str = "webhook"


@dataclass
class MethodResult:
    result: Any
    total: int | None = None
    next: int | None = None


class Portal:
    def __init__(
        self,
        *,
        mode: str = "classic",
        seed_leads: int = 0,
        seed: int = 1,
        db_path: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock = threading.RLock()
        self.event_sink: Callable[[str, dict[str, Any]], None] | None = None
        self._mode = mode
        self._leads: dict[int, dict[str, Any]] = {}
        self._next = 1
        self._methods: dict[str, Callable[[dict[str, Any], CallContext], MethodResult]] = {
            "crm.lead.add": self._add,
            "crm.lead.get": self._get,
            "crm.lead.list": self._list,
            "crm.lead.update": self._update,
            "crm.settings.mode.get": lambda p, c: MethodResult(1 if self._mode == "classic" else 2),
        }
        for i in range(seed_leads):
            self._store({"TITLE": f"Lead {i + 1}", "NAME": f"Name{i + 1}"})

    def _store(self, fields: dict[str, Any]) -> int:
        lead_id = self._next
        self._next += 1
        self._leads[lead_id] = {
            "ID": str(lead_id),
            "TITLE": "",
            **{k: v for k, v in fields.items() if k != "ID"},
        }
        return lead_id

    def _emit(self, event: str, lead_id: int) -> None:
        if self.event_sink:
            self.event_sink(event, {"FIELDS": {"ID": lead_id}})

    def _add(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        fields = params.get("fields")
        if not isinstance(fields, dict):
            raise ApiError("", "Invalid parameters.", 400)
        lead_id = self._store(fields)
        self._emit("ONCRMLEADADD", lead_id)
        return MethodResult(lead_id)

    def _get(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        try:
            lead = self._leads[int(params.get("id"))]
        except (TypeError, ValueError, KeyError):
            raise ApiError("", "Not found", 400) from None
        return MethodResult(dict(lead))

    def _update(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        lead = self._leads[int(params["id"])]
        lead.update(params.get("fields") or {})
        self._emit("ONCRMLEADUPDATE", int(lead["ID"]))
        return MethodResult(True)

    def _list(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        if not ctx.crm_access:
            raise ApiError("", "Access denied.", 403)
        rows = sorted(self._leads.values(), key=lambda r: int(r["ID"]))
        flt = params.get("filter") or {}
        if ">ID" in flt:
            rows = [r for r in rows if int(r["ID"]) > int(flt[">ID"])]
        start = int(params.get("start") or 0)
        if start == -1:
            return MethodResult(rows[:50])
        page = rows[start : start + 50]
        more = start + 50 < len(rows)
        return MethodResult(page, total=len(rows), next=start + 50 if more else None)

    def dispatch(self, method: str, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        fn = self._methods.get(method.lower())
        if fn is None:
            raise ApiError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
        with self.lock:
            return fn(params, ctx)

    def register(self, method: str, fn: Callable[..., MethodResult]) -> None:
        self._methods[method.lower()] = fn

    def has_method(self, method: str) -> bool:
        return method.lower() in self._methods

    def set_mode(
        self,
        mode: str,
        *,
        client: str = "contact",
        pipeline: int = 0,
        complete_activities: bool = True,
    ) -> dict[str, Any]:
        if mode not in ("classic", "simple"):
            raise ValueError(f"unknown mode {mode!r}")
        self._mode = mode
        return {"mode": mode, "converted": 0}

    @property
    def mode(self) -> str:
        return self._mode

    def counts(self) -> dict[str, int]:
        return {"lead": len(self._leads)}
