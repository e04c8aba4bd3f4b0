"""Event handlers: `event.bind`/`get`/`unbind`, offline queues, and delivery of online events.

Online events are POSTed form-encoded, once, from a background thread, with no retry: a handler
that fails or times out loses the event (https://apidocs.bitrix24.com/api-reference/events/index.html).
Offline events keep only the latest state per object until the app fetches them
(https://apidocs.bitrix24.com/api-reference/events/offline-events.html).
"""

from __future__ import annotations

import contextlib
import json
import queue
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests

from sandbox.errors import ApiError
from sandbox.oauth import Authority, Installation, TokenPair
from sandbox.portal import CallContext, MethodResult
from sandbox.wire import iso_time

PAGE = 50
# Hops an event chain may make: a change a user makes starts one with 7; a REST call made with an
# event's token passes on one less; at 0 nothing more is delivered (rest/classes/general/
# rest_util.php:19 HANDLER_SESSION_TTL, rest/lib/event/session.php:19-39, sender.php:185-197).
HANDLER_SESSION_TTL = 7
# What event.offline.get shows of a queue record (event.offline.list adds PROCESS_ID and ERROR).
OFFLINE_GET_FIELDS = (
    "ID",
    "TIMESTAMP_X",
    "EVENT_NAME",
    "EVENT_DATA",
    "EVENT_ADDITIONAL",
    "MESSAGE_ID",
)
CRM_ENTITIES = ("LEAD", "DEAL", "CONTACT", "COMPANY", "ACTIVITY")
KNOWN_EVENTS = frozenset(
    [f"ONCRM{entity}{action}" for entity in CRM_ENTITIES for action in ("ADD", "UPDATE", "DELETE")]
    + ["ONAPPINSTALL", "ONAPPUNINSTALL", "ONAPPUPDATE", "ONAPPPAYMENT", "ONOFFLINEEVENT"]
)


def wrong_auth_type() -> ApiError:
    """What app-only methods answer to a webhook."""
    return ApiError("WRONG_AUTH_TYPE", "Current authorization type is denied for this method", 403)


def flatten_form(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts/lists as PHP form pairs: {"data": {"FIELDS": {"ID": 5}}} -> data[FIELDS][ID]."""
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        if data is None:
            text = ""
        elif isinstance(data, bool):
            text = "1" if data else "0"
        else:
            text = str(data)
        return [(prefix, text)]
    pairs: list[tuple[str, str]] = []
    for key, value in items:
        pairs.extend(flatten_form(value, f"{prefix}[{key}]" if prefix else str(key)))
    return pairs


@dataclass(frozen=True)
class Binding:
    """One `event.bind` registration."""

    id: int
    event: str
    handler: str
    auth_type: int = 0
    offline: bool = False
    auth_connector: str = ""
    min_timeout: float = 1.0  # ONOFFLINEEVENT: seconds between notifications

    def describe(self) -> dict[str, Any]:
        """The `event.get` item."""
        return {
            "event": self.event,
            "handler": self.handler,
            "auth_type": str(self.auth_type),
            "offline": 1 if self.offline else 0,
        }


@dataclass(frozen=True)
class Delivery:
    """One attempt to POST an event to a handler (there is never a second)."""

    event: str
    handler: str
    ok: bool
    status: int | None
    error: str = ""


@dataclass(frozen=True)
class _Pending:
    """An event waiting for the delivery thread (binding None: stop)."""

    binding: Binding | None
    data: list[tuple[str, str]] | dict[str, Any]
    hops: int = HANDLER_SESSION_TTL
    robot: bool = False


@dataclass(frozen=True)
class Endpoints:
    """The portal's addresses as an event payload states them."""

    domain: str
    client_endpoint: str
    server_endpoint: str
    member_id: str


def _flag(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return 1 if int(value) else 0
    except (TypeError, ValueError):
        return 1 if value in (True, "Y", "true") else 0


def _as_strings(value: Any) -> set[str]:
    if isinstance(value, dict):
        value = list(value.values())
    if value in (None, "", []):
        return set()
    return {str(v) for v in (value if isinstance(value, list) else [value])}


def _min_timeout(options: Any) -> float:
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError:
            return 1.0
    if not isinstance(options, dict):
        return 1.0
    try:
        return max(0.0, float(options.get("minTimeout", 1)))
    except (TypeError, ValueError):
        return 1.0


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("", "="):
        return left == right
    if op in ("!", "!="):
        return left != right
    ops: dict[str, Callable[[Any, Any], bool]] = {
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
    }
    return ops[op](left, right)


def _filter_rows(rows: list[dict[str, Any]], flt: Any) -> list[dict[str, Any]]:
    if not isinstance(flt, dict):
        return rows
    tests = []
    for raw_key, value in flt.items():
        key = str(raw_key)
        op = ""
        for candidate in (">=", "<=", "!=", "=", ">", "<", "!"):
            if key.startswith(candidate):
                op, key = candidate, key[len(candidate) :]
                break
        tests.append((op, key, value))

    def keep(row: dict[str, Any]) -> bool:
        for op, key, value in tests:
            if key not in row:
                continue
            left: Any = row[key]
            right: Any = value
            if key in ("ID", "ERROR"):
                try:
                    left, right = int(left), int(value)
                except (TypeError, ValueError):
                    return False
            else:
                left, right = str(left), str(value)
            if not _compare(op, left, right):
                return False
        return True

    return [row for row in rows if keep(row)]


def _order_rows(rows: list[dict[str, Any]], order: Any, default: str) -> list[dict[str, Any]]:
    field, direction = default, "ASC"
    if isinstance(order, dict) and order:
        field, direction = next(iter(order.items()))
        field, direction = str(field).upper(), str(direction).upper()

    def sort_key(row: dict[str, Any]) -> tuple[Any, int]:
        value = row.get(field, "")
        if field in ("ID", "ERROR"):
            value = int(value)
        return value, int(row["ID"])

    return sorted(rows, key=sort_key, reverse=direction == "DESC")


class EventHub:
    """Bindings, the offline queue and the delivery thread of one portal."""

    def __init__(
        self,
        *,
        authority: Authority,
        endpoints: Callable[[], Endpoints],
        clock: Callable[[], float],
        timeout: float = 5.0,
    ) -> None:
        self._authority = authority
        self._endpoints = endpoints
        self._clock = clock
        self._timeout = timeout
        self._lock = threading.Lock()
        self._bindings: list[Binding] = []
        self._next_binding = 700
        self._offline: dict[int, dict[str, Any]] = {}
        self._offline_index: dict[str, int] = {}
        self._next_offline = 1
        self._message_ids: dict[str, str] = {}
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._tokens: dict[tuple[int, int], TokenPair] = {}
        self._caller = threading.local()
        self._notified: dict[int, float] = {}
        self._session = requests.Session()
        self._thread: threading.Thread | None = None
        self.deliveries: deque[Delivery] = deque(maxlen=1000)
        self.delivered = 0
        self.failed = 0
        self.cut_chains = 0  # events not sent because their chain had no hops left

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the delivery thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sandbox-events", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the delivery thread after the events already queued."""
        if self._thread is not None:
            self._queue.put(_Pending(None, {}))
            self._thread.join(timeout=self._timeout + 5)
            self._thread = None
        self._session.close()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued event has been attempted; False on timeout."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    # -- REST methods -----------------------------------------------------------------------

    def methods(self) -> dict[str, Callable[[dict[str, Any], CallContext], MethodResult]]:
        """The `event.*` methods to register on the portal."""
        return {
            "event.bind": self.bind,
            "event.get": self.get,
            "event.unbind": self.unbind,
            "event.offline.get": self.offline_get,
            "event.offline.clear": self.offline_clear,
            "event.offline.error": self.offline_error,
            "event.offline.list": self.offline_list,
        }

    @staticmethod
    def _require_app(ctx: CallContext) -> None:
        if ctx.auth_kind != "oauth":
            raise wrong_auth_type()

    def bind(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        """`event.bind`: https://apidocs.bitrix24.com/api-reference/events/event-bind.html"""
        self._require_app(ctx)
        event = str(params.get("event", "")).upper()
        if event not in KNOWN_EVENTS:
            raise ApiError("ERROR_EVENT_NOT_FOUND", "Event not found", 400)
        offline = str(params.get("event_type", "online")).lower() == "offline"
        if offline and not ctx.is_admin:
            raise ApiError("ACCESS_DENIED", "Access denied! Admin permissions required", 403)
        handler = "" if offline else str(params.get("handler", "")).strip()
        if not offline and not handler:
            raise ApiError("ERROR_ARGUMENT", "Argument 'handler' is null or empty", 400)
        try:
            auth_type = int(params.get("auth_type") or 0)
        except (TypeError, ValueError):
            auth_type = 0
        if not ctx.is_admin and auth_type not in (0, ctx.user_id):
            raise ApiError("ACCESS_DENIED", "Access denied! Admin permissions required", 403)
        connector = str(params.get("auth_connector", "") or "")
        min_timeout = _min_timeout(params.get("options"))
        with self._lock:
            for existing in self._bindings:
                if (existing.event, existing.handler, existing.auth_type, existing.offline) == (
                    event,
                    handler,
                    auth_type,
                    offline,
                ):
                    raise ApiError("ERROR_HANDLER_ALREADY_EXIST", "Handler already exists!", 400)
            self._next_binding += 1
            self._bindings.append(
                Binding(
                    self._next_binding, event, handler, auth_type, offline, connector, min_timeout
                )
            )
        return MethodResult(result=True)

    def get(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        """`event.get`: https://apidocs.bitrix24.com/api-reference/events/event-get.html"""
        self._require_app(ctx)
        with self._lock:
            return MethodResult(result=[b.describe() for b in self._bindings])

    def unbind(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        """`event.unbind`: https://apidocs.bitrix24.com/api-reference/events/event-unbind.html"""
        self._require_app(ctx)
        if not ctx.is_admin:
            raise ApiError("ACCESS_DENIED", "Access denied! Admin permissions required", 403)
        event = str(params.get("event", "")).upper()
        handler = params.get("handler")
        offline = str(params.get("event_type", "online")).lower() == "offline"
        raw_auth = params.get("auth_type")
        with self._lock:
            keep, removed = [], 0
            for b in self._bindings:
                match = b.offline == offline and (not event or b.event == event)
                match = match and (handler in (None, "") or b.handler == str(handler))
                if raw_auth is not None:
                    wanted = int(raw_auth) if str(raw_auth).strip() not in ("", "0") else 0
                    match = match and b.auth_type == wanted
                if match:
                    removed += 1
                else:
                    keep.append(b)
            self._bindings = keep
        return MethodResult(result={"count": removed})

    @staticmethod
    def _public_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: row[k] for k in OFFLINE_GET_FIELDS} | {"ID": str(row["ID"])} for row in rows]

    def offline_get(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        """`event.offline.get`: https://apidocs.bitrix24.com/api-reference/events/event-offline-get.html"""
        self._require_app(ctx)
        clear = _flag(params.get("clear"), 1)
        want_errors = _flag(params.get("error"), 0)
        try:
            limit = max(1, int(params.get("limit") or PAGE))
        except (TypeError, ValueError):
            limit = PAGE
        process_id = str(params.get("process_id") or "")
        with self._lock:
            rows = [
                r
                for r in self._offline.values()
                if r["PROCESS_ID"] == "" and int(r["ERROR"]) == want_errors
            ]
            rows = _order_rows(
                _filter_rows(rows, params.get("filter")), params.get("order"), "TIMESTAMP_X"
            )[:limit]
            if clear:
                for row in rows:
                    self._drop_row(row["ID"])
                answer_pid: str | None = None
            else:
                answer_pid = process_id or secrets.token_hex(16)
                for row in rows:
                    row["PROCESS_ID"] = answer_pid
                    self._offline_index.pop(row["_key"], None)
            events = self._public_rows(rows)
        return MethodResult(result={"process_id": answer_pid, "events": events})

    def _drop_row(self, row_id: int) -> None:
        row = self._offline.pop(row_id, None)
        if row is not None and self._offline_index.get(row["_key"]) == row_id:
            del self._offline_index[row["_key"]]

    def _process_rows(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        process_id = str(params.get("process_id") or "")
        if not process_id:
            raise ApiError("ERROR_ARGUMENT", "Argument 'process_id' is null or empty", 400)
        rows = [r for r in self._offline.values() if r["PROCESS_ID"] == process_id]
        ids = _as_strings(params.get("id"))
        message_ids = _as_strings(params.get("message_id"))
        if ids:
            rows = [r for r in rows if str(r["ID"]) in ids]
        elif message_ids:
            rows = [r for r in rows if r["MESSAGE_ID"] in message_ids]
        return rows

    def offline_clear(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        """`event.offline.clear`: delete records reserved by `process_id` (optionally some)."""
        self._require_app(ctx)
        with self._lock:
            for row in self._process_rows(params):
                self._drop_row(row["ID"])
        return MethodResult(result=True)

    def offline_error(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        """`event.offline.error`: mark reserved records as failed (fetch them with `error=1`)."""
        self._require_app(ctx)
        with self._lock:
            for row in self._process_rows(params):
                row["ERROR"] = "1"
                row["PROCESS_ID"] = ""
        return MethodResult(result=True)

    def offline_list(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        """`event.offline.list`: read the queue without changing it, 50 per page."""
        self._require_app(ctx)
        try:
            start = max(0, int(params.get("start") or 0))
        except (TypeError, ValueError):
            start = 0
        with self._lock:
            rows = _order_rows(
                _filter_rows(list(self._offline.values()), params.get("filter")),
                params.get("order"),
                "ID",
            )
            page = [
                {k: v for k, v in row.items() if k != "_key"} | {"ID": str(row["ID"])}
                for row in rows[start : start + PAGE]
            ]
        more = start + PAGE < len(rows)
        return MethodResult(result=page, total=len(rows), next=start + PAGE if more else None)

    # -- emission ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def acting_as(
        self, connector: str = "", *, session: int | None = None, robot: bool = False
    ) -> Iterator[None]:
        """Mark changes made by this thread: through `auth_connector` (offline events), with an
        event's token that has `session` hops left, or by a robot/workflow (no tokens)."""
        self._caller.connector = connector
        self._caller.session = session
        self._caller.robot = robot
        try:
            yield
        finally:
            self._caller.connector = ""
            self._caller.session = None
            self._caller.robot = False

    def _hops(self) -> int:
        """The hops the events of the current change carry (Session::get, session.php:19-35)."""
        session = getattr(self._caller, "session", None)
        return HANDLER_SESSION_TTL if session is None else session - 1

    def sink(self, event: str, data: dict[str, Any]) -> None:
        """The portal's event_sink: queue offline records now, online deliveries for the thread."""
        event = event.upper()
        installation = self._authority.installation
        # Only handlers of an installed, active app are called: an app whose UI has not called
        # BX24.installFinish() gets nothing (rest/lib/event/callback.php:108-116;
        # docs settings/app-installation/installation-finish.md).
        if not (installation.active and installation.installed):
            return
        hops = self._hops()
        if hops <= 0:
            with self._lock:
                self.cut_chains += 1
            return
        robot = bool(getattr(self._caller, "robot", False))
        with self._lock:
            online = [(b, data) for b in self._bindings if b.event == event and not b.offline]
            connector = getattr(self._caller, "connector", "")
            # A change made with the binding's own auth_connector is not echoed back to it.
            offline = any(
                b.event == event and b.offline and not (connector and b.auth_connector == connector)
                for b in self._bindings
            )
            if offline:
                change = self._record_offline(event, data)
                online += self._offline_notices(event, change)
        for binding, payload in online:
            self._queue.put(_Pending(binding, payload, hops, robot))

    def _record_offline(self, event: str, data: dict[str, Any]) -> str:
        """Queue or refresh the record for this object; "add" or "update"."""
        key = event + json.dumps(data, sort_keys=True, default=str)
        now = iso_time(self._clock())
        row_id = self._offline_index.get(key)
        if row_id is not None:
            row = self._offline[row_id]
            row["TIMESTAMP_X"], row["EVENT_DATA"] = now, data
            return "update"
        message_id = self._message_ids.setdefault(key, str(len(self._message_ids) + 1))
        row_id = self._next_offline
        self._next_offline += 1
        self._offline[row_id] = {
            "ID": row_id,
            "TIMESTAMP_X": now,
            "EVENT_NAME": event,
            "EVENT_DATA": data,
            "EVENT_ADDITIONAL": False,
            "MESSAGE_ID": message_id,
            "PROCESS_ID": "",
            "ERROR": "0",
            "_key": key,
        }
        self._offline_index[key] = row_id
        return "add"

    def _offline_notices(self, event: str, change: str) -> list[tuple[Binding, dict[str, Any]]]:
        """ONOFFLINEEVENT deliveries due now (at most one per `minTimeout` per handler).

        https://apidocs.bitrix24.com/api-reference/events/on-offline-event.html
        """
        now = self._clock()
        due = []
        for b in self._bindings:
            if b.event != "ONOFFLINEEVENT" or b.offline:
                continue
            if now - self._notified.get(b.id, float("-inf")) < b.min_timeout:
                continue
            self._notified[b.id] = now
            notice = {"type": change, "event": event, "handler": b.handler}
            if b.min_timeout:
                notice["minTimeout"] = (
                    int(b.min_timeout) if b.min_timeout.is_integer() else b.min_timeout
                )
            due.append((b, notice))
        return due

    def app_installed(self, pair: TokenPair) -> None:
        """Queue ONAPPINSTALL for bound handlers and the installation's event handler URL."""
        inst = self._authority.installation
        ep = self._endpoints()
        payload = {
            "event": "ONAPPINSTALL",
            "data": {
                "VERSION": str(inst.version),
                "ACTIVE": "Y",
                "INSTALLED": "Y" if inst.installed else "N",
                "LANGUAGE_ID": inst.language_id,
            },
            "ts": str(int(self._clock())),
            "auth": {
                "domain": ep.domain,
                "scope": ",".join(pair.scope),
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "expires_in": str(pair.expires_in),
                "server_endpoint": ep.server_endpoint,
                "status": inst.status,
                "client_endpoint": ep.client_endpoint,
                "member_id": ep.member_id,
                "application_token": inst.application_token,
            },
        }
        self._queue_app_event("ONAPPINSTALL", inst, payload)

    def app_uninstalled(self, inst: Installation, *, clean: bool) -> None:
        """Queue ONAPPUNINSTALL (no tokens: API access is already revoked), drop every binding."""
        ep = self._endpoints()
        payload = {
            "event": "ONAPPUNINSTALL",
            "data": {"LANGUAGE_ID": inst.language_id, "CLEAN": 1 if clean else 0},
            "ts": str(int(self._clock())),
            "auth": {
                "domain": ep.domain,
                "server_endpoint": ep.server_endpoint,
                "client_endpoint": ep.client_endpoint,
                "member_id": ep.member_id,
                "application_token": inst.application_token,
            },
        }
        self._queue_app_event("ONAPPUNINSTALL", inst, payload)
        with self._lock:
            self._bindings = []
            self._tokens.clear()

    def forget_bindings(self) -> None:
        """Drop every binding: Bitrix24 removes them when the app is reinstalled or updated."""
        with self._lock:
            self._bindings = []
            self._tokens.clear()

    def _queue_app_event(self, event: str, inst: Installation, payload: dict[str, Any]) -> None:
        with self._lock:
            targets = [b for b in self._bindings if b.event == event and not b.offline]
        if inst.event_handler_url:
            targets.append(Binding(0, event, inst.event_handler_url))
        for binding in targets:
            body = dict(payload)
            if binding.id:
                body = {"event": payload["event"], "event_handler_id": str(binding.id)} | payload
            self._queue.put(_Pending(binding, flatten_form(body)))

    # -- delivery ---------------------------------------------------------------------------

    def _token_for(self, user_id: int, hops: int) -> TokenPair:
        pair = self._tokens.get((user_id, hops))
        if pair is not None:
            try:
                grant = self._authority.authenticate(pair.access_token)
                if grant.expires_at - self._clock() > 60:
                    return pair
            except ApiError:
                pass
        pair = self._authority.issue(user_id, session=hops)
        self._tokens[(user_id, hops)] = pair
        return pair

    def _crm_payload(self, pending: _Pending, data: dict[str, Any]) -> list[tuple[str, str]]:
        binding = pending.binding
        assert binding is not None
        inst = self._authority.installation
        ep = self._endpoints()
        auth: dict[str, Any] = {
            "domain": ep.domain,
            "server_endpoint": ep.server_endpoint,
            "status": inst.status,
            "client_endpoint": ep.client_endpoint,
            "member_id": ep.member_id,
            "application_token": inst.application_token,
        }
        # A change made by a robot, a workflow or an agent comes without tokens
        # (docs api-reference/events/index.md, "auth" of the payload).
        if not pending.robot:
            pair = self._token_for(binding.auth_type or inst.user_id, pending.hops)
            auth = {
                "access_token": pair.access_token,
                "expires_in": str(pair.expires_in),
                "scope": ",".join(pair.scope),
                **auth,
            }
            if binding.event == "ONOFFLINEEVENT":  # the one event that carries a refresh token
                auth["refresh_token"] = pair.refresh_token
        body = {
            "event": binding.event,
            "event_handler_id": str(binding.id),
            "data": data,
            "ts": str(int(self._clock())),
            "auth": auth,
        }
        return flatten_form(body)

    def _run(self) -> None:
        while True:
            pending = self._queue.get()
            try:
                binding, data = pending.binding, pending.data
                if binding is None:
                    return
                form = data if isinstance(data, list) else self._crm_payload(pending, data)
                self._deliver(binding, form)
            finally:
                self._queue.task_done()

    def _deliver(self, binding: Binding, form: list[tuple[str, str]]) -> None:
        try:
            response = self._session.post(
                binding.handler, data=form, timeout=self._timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            record = Delivery(binding.event, binding.handler, False, None, type(exc).__name__)
        else:
            ok = 200 <= response.status_code < 300
            record = Delivery(binding.event, binding.handler, ok, response.status_code)
        with self._lock:
            self.deliveries.append(record)
            if record.ok:
                self.delivered += 1
            else:
                self.failed += 1
