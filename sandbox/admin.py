"""The admin endpoint: what a portal administrator (or a chaos test) does outside REST.

Every call needs the admin key printed at start, in the `X-Sandbox-Key` header (or `key=`).
Parameters come as JSON, a form or a query string. Answers are JSON.

    GET  /_sandbox/info                   addresses and credentials (as Sandbox.info())
    GET  /_sandbox/stats                  counters (as Sandbox.stats())
    POST /_sandbox/mode                   {"mode": "simple", "client": "contact", "pipeline": 0,
                                           "complete_activities": true} -> the core's summary
    POST /_sandbox/expire-tokens          -> {"expired": n}
    POST /_sandbox/faults                 {"spec": "500:0.05,drop_after:every=10"}
    POST /_sandbox/install                {"app_url", "page_url", "scope", "user_id",
                                           "event_handler_url", "finish"} -> tokens and
                                           application_token; page_url opens at /portal/app
    POST /_sandbox/finish-install         BX24.installFinish()
    POST /_sandbox/uninstall              {"clean": false}
    POST /_sandbox/portal-state           {"state": "active" | "unpaid" | "deleted"}
    POST /_sandbox/webhook                {"code", "user_id", "scope"} -> {"webhook_url"}
    POST /_sandbox/authorization-code     {"user_id"} -> {"code"}
    POST /_sandbox/move                   {"port": 0} -> {"base_url"} (old address answers 302)
    POST /_sandbox/plan-leads             {"allowed": false} -> crm.settings.mode.get answers 2
    POST /_sandbox/robot                  {"method", "params"} -> {"result"}: a robot's change,
                                           its events without tokens
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from sandbox.errors import ApiError
from sandbox.faults import FaultSpecError
from sandbox.wire import json_response, parse_request

if TYPE_CHECKING:
    from sandbox.server import Sandbox


def _flag(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.lower() not in ("0", "false", "n", "no")
    return bool(value)


def _int(value: Any, default: int) -> int:
    return default if value in (None, "") else int(value)


def _mode(sandbox: Sandbox, p: dict[str, Any]) -> Any:
    options = {}
    if "client" in p:
        options["client"] = str(p["client"])
    if "pipeline" in p:
        options["pipeline"] = _int(p["pipeline"], 0)
    if "complete_activities" in p:
        options["complete_activities"] = _flag(p["complete_activities"], True)
    return sandbox.set_mode(str(p.get("mode", "")), **options)


def _install(sandbox: Sandbox, p: dict[str, Any]) -> Any:
    return sandbox.install_app(
        p.get("app_url") or None,
        scope=str(p.get("scope") or "crm,user"),
        user_id=_int(p.get("user_id"), 1),
        event_handler_url=p.get("event_handler_url") or None,
        page_url=p.get("page_url") or None,
        finish=_flag(p.get("finish"), True),
    )


def _uninstall(sandbox: Sandbox, p: dict[str, Any]) -> Any:
    sandbox.uninstall_app(clean=_flag(p.get("clean"), False))
    return {"uninstalled": True}


def _faults(sandbox: Sandbox, p: dict[str, Any]) -> Any:
    sandbox.set_faults(str(p.get("spec") or ""))
    return {"faults": sandbox.faults.spec}


def _state(sandbox: Sandbox, p: dict[str, Any]) -> Any:
    sandbox.set_portal_state(str(p.get("state", "")))
    return {"portal_state": sandbox.authority.portal_state}


def _webhook(sandbox: Sandbox, p: dict[str, Any]) -> Any:
    url = sandbox.add_webhook(
        p.get("code") or None,
        user_id=_int(p.get("user_id"), 1),
        scope=str(p.get("scope") or "crm,user,department"),
    )
    return {"webhook_url": url}


def _finish(sandbox: Sandbox, p: dict[str, Any]) -> Any:
    sandbox.finish_install()
    return {"installed": sandbox.authority.installation.installed}


def _plan_leads(sandbox: Sandbox, p: dict[str, Any]) -> Any:
    allowed = _flag(p.get("allowed"), True)
    sandbox.set_plan_leads(allowed)
    return {"leads_allowed": allowed}


def _robot(sandbox: Sandbox, p: dict[str, Any]) -> Any:
    params = p.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError("params must be an object")
    try:
        return {"result": sandbox.run_as_robot(str(p.get("method") or ""), params)}
    except ApiError as exc:
        raise ValueError(f"{exc.code or 'error'}: {exc.description}") from None


ACTIONS: dict[tuple[str, str], Callable[[Sandbox, dict[str, Any]], Any]] = {
    ("GET", "info"): lambda s, p: s.info(),
    ("GET", "stats"): lambda s, p: s.stats(),
    ("POST", "mode"): _mode,
    ("POST", "expire-tokens"): lambda s, p: {"expired": s.expire_tokens()},
    ("POST", "faults"): _faults,
    ("POST", "install"): _install,
    ("POST", "finish-install"): _finish,
    ("POST", "uninstall"): _uninstall,
    ("POST", "portal-state"): _state,
    ("POST", "webhook"): _webhook,
    ("POST", "authorization-code"): lambda s, p: {
        "code": s.authorization_code(_int(p.get("user_id"), 1))
    },
    ("POST", "move"): lambda s, p: {"base_url": s.move_domain(_int(p.get("port"), 0))},
    ("POST", "plan-leads"): _plan_leads,
    ("POST", "robot"): _robot,
}


def _error(code: str, description: str, status: int) -> Response:
    return json_response({"error": code, "error_description": description}, status)


def handle(sandbox: Sandbox, request: Request, action: str) -> Response:
    """Serve one admin request."""
    params = parse_request(request)
    key = request.headers.get("X-Sandbox-Key") or str(params.pop("key", ""))
    if not hmac.compare_digest(key.encode(), sandbox.admin_key.encode()):
        return _error("ACCESS_DENIED", "Wrong or missing admin key", 403)
    fn = ACTIONS.get((request.method, action.strip("/")))
    if fn is None:
        return _error("NOT_FOUND", f"No admin action {request.method} {action!r}", 404)
    try:
        return json_response(fn(sandbox, params))
    except (ValueError, TypeError, FaultSpecError) as exc:
        return _error("INVALID_REQUEST", str(exc), 400)
