"""The sandbox portal's HTTP side: a threaded WSGI server speaking Bitrix24's REST wire format.

Routes (per listener): `/rest/<method>[.json]` (OAuth, `auth=<token>`),
`/rest/<user>/<code>/<method>[.json]` (incoming webhook), `/oauth/token/` (the OAuth server) and
`/_sandbox/...` (the admin endpoint, see `sandbox.admin`).

Every REST request goes through, in order: the per-portal leaky bucket (503), injected faults,
portal state (PORTAL_DELETED), authentication (401), method lookup (404), scope (403), the
method's operating-time budget (429), then the core's `dispatch`.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from sandbox import admin, users
from sandbox.batch import SubResult, run_batch
from sandbox.errors import ApiError
from sandbox.events import Endpoints, EventHub
from sandbox.faults import FaultInjector
from sandbox.launcher import launcher_page
from sandbox.limits import (
    LeakyBucket,
    MeterKey,
    OperatingTime,
    Plan,
    RequestMeter,
    plan_named,
    query_limit_error,
    simulated_cost,
)
from sandbox.oauth import ALWAYS_ALLOWED_SCOPE, Authority, TokenPair
from sandbox.portal import KNOBS, CallContext, MethodResult, Portal
from sandbox.wire import error_response, json_response, parse_request, time_object

LOOPBACK = "127.0.0.1"
log = logging.getLogger(__name__)
DEFAULT_APP_SCOPE = "crm,user"
DEFAULT_WEBHOOK_SCOPE = "crm,user,department"
# Methods of scope `basic`: always allowed (https://apidocs.bitrix24.com/api-reference/scopes/permissions.html)
BASIC_METHODS = frozenset(
    {
        "batch",
        "app.info",
        "user.admin",
        "user.access",
        "profile",
        "scope",
        "methods",
        "method.get",
        "server.time",
        "feature.get",
    }
)
USER_SCOPES = frozenset({"user", "user_brief", "user_basic"})
# Methods a batch command may not call (rest/classes/general/rest_provider.php:304-307).
NOT_IN_BATCH = frozenset({"batch", "download", "upload"})


@dataclass(frozen=True)
class Caller:
    """Who the operating-time limit charges, and the event chain a token carries."""

    auth_type: str  # "oauth" | "webhook"
    entity: str  # the app's client id, or the webhook's user/code
    session: int | None = None  # an event token's hops left (sandbox.events)

    def key(self, method: str) -> MeterKey:
        """The limiter's key for `method` (rest/lib/engine/access/loadlimiter.php:197-203)."""
        return (self.auth_type, self.entity, method)


class PortalCore(Protocol):
    """What the server needs from the core portal (`sandbox.portal.Portal`)."""

    lock: Any
    event_sink: Callable[[str, dict[str, Any]], None] | None

    def dispatch(self, method: str, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        """Run one REST method."""

    def register(
        self, method: str, fn: Callable[[dict[str, Any], CallContext], MethodResult]
    ) -> None:
        """Add a method."""

    def has_method(self, method: str) -> bool:
        """Whether a method exists."""

    def set_mode(self, mode: str, **options: Any) -> dict[str, Any]:
        """Flip the CRM mode like the admin UI does."""

    @property
    def mode(self) -> str:
        """classic | simple."""

    def counts(self) -> dict[str, int]:
        """Entities per type."""


class _QuietHandler(WSGIRequestHandler):
    """No access log: request lines carry webhook codes and tokens."""

    def log(self, type: str, message: str, *args: Any) -> None:
        return


@dataclass
class Listener:
    """One bound address; after a domain change the old one answers 302 to the new one."""

    server: BaseWSGIServer
    thread: threading.Thread
    base_url: str
    moved_to: str | None = None

    @property
    def domain(self) -> str:
        """host:port, as Bitrix24's `DOMAIN`/`auth[domain]`."""
        return self.base_url.split("://", 1)[1]


class Stats:
    """Thread-safe counters for the admin stats endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self.sub_calls: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        """Increase a named counter."""
        with self._lock:
            self.counters[name] += amount

    def call(self, method: str) -> None:
        """Count one executed (sub-)call of `method`."""
        with self._lock:
            self.sub_calls[method] += 1

    def fault(self, kinds: Iterable[str]) -> None:
        """Count injected faults."""
        with self._lock:
            self.faults.update(kinds)

    def status(self, code: int) -> None:
        """Count one REST answer by HTTP status."""
        with self._lock:
            self.statuses[str(code)] += 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        with self._lock:
            return {
                "http_requests": self.counters["http_requests"],
                "oauth_requests": self.counters["oauth_requests"],
                "query_limit_exceeded": self.counters["query_limit_exceeded"],
                "operation_time_limit": self.counters["operation_time_limit"],
                "tokens_expired": self.counters["tokens_expired"],
                "statuses": dict(self.statuses),
                "sub_calls": dict(self.sub_calls),
                "faults": dict(self.faults),
            }


def required_scope(method: str) -> str | None:
    """The scope a method needs (None = basic), from its prefix as Bitrix24 groups them."""
    if method in BASIC_METHODS or method.startswith("event."):
        return None
    return method.split(".", 1)[0]


def has_scope(method: str, scope: tuple[str, ...]) -> bool:
    """Whether a token/webhook granted `scope` may call `method`."""
    needed = required_scope(method)
    return (
        needed is None or needed in scope or (needed == "user" and bool(USER_SCOPES & set(scope)))
    )


def check_scope(
    method: str,
    scope: tuple[str, ...],
    auth_kind: str = "oauth",
    *,
    in_batch: bool = False,
    status: int = 401,
) -> None:
    """insufficient_scope when the token/webhook lacks the method's scope: HTTP 401 as the server
    code answers (knob `error_statuses=code`, the default), 403 as the docs' error table says
    (`error_statuses=docs`).

    A token: rest/lib/oauth/auth.php:133-141; a webhook: rest/lib/apauth/auth.php:196-202; both
    raise OAuthException, whose status is 401 (rest/lib/oauthexception.php:14-24). A batch command
    gets the code with an empty text (rest/classes/general/rest.php:970-976).
    """
    if has_scope(method, scope):
        return
    if in_batch:
        description = ""
    elif auth_kind == "webhook":
        description = "The request requires higher privileges than provided by the webhook token"
    else:
        description = "The request requires higher privileges than provided by the access token"
    raise ApiError("insufficient_scope", description, status)


def invalid_credentials() -> ApiError:
    """A webhook URL whose user or code is wrong: rest/lib/apauth/auth.php:131-135 (401 through
    OAuthException). The docs name NO_AUTH_FOUND for it (knob `webhook_auth_error`)."""
    return ApiError("INVALID_CREDENTIALS", "Invalid request credentials", 401)


def _drop_connection(request: Request) -> Response:
    """Close the client's socket without an answer (the client sees a dropped connection)."""
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    return Response(b"", status=500)  # written to a dead socket: werkzeug drops it quietly


class Sandbox:
    """A running local Bitrix24 portal: `with Sandbox(...) as portal:` (see the package doc)."""

    def __init__(
        self,
        *,
        mode: str = "classic",
        seed_leads: int = 0,
        seed: int = 1,
        custom_fields: bool = False,
        knobs: dict[str, str] | None = None,
        plan: str | Plan = "fast",
        faults: str | None = None,
        db: str | None = None,
        webhook_code: str | None = None,
        token_ttl: int = 3600,
        port: int = 0,
        admin_key: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        clock: Callable[[], float] = time.time,
        portal: PortalCore | None = None,
        event_timeout: float = 5.0,
        cost: Callable[[str, object], float] = simulated_cost,
    ) -> None:
        self.plan = plan if isinstance(plan, Plan) else plan_named(plan)
        self.clock = clock
        self.cost = cost  # seconds a call "takes" for the operating-time limit
        self.port = port
        self.admin_key = admin_key or secrets.token_urlsafe(18)
        self.portal: PortalCore = portal or Portal(
            mode=mode,
            seed_leads=seed_leads,
            seed=seed,
            custom_fields=custom_fields,
            knobs=knobs,
            db_path=db,
            clock=clock,
        )
        self.authority = Authority(
            seed=seed,
            token_ttl=token_ttl,
            clock=clock,
            client_id=client_id,
            client_secret=client_secret,
        )
        self.webhook_code = webhook_code or secrets.token_hex(8)
        self.authority.add_webhook(
            self.webhook_code, user_id=users.ADMIN_ID, scope=DEFAULT_WEBHOOK_SCOPE
        )
        self.faults = FaultInjector(faults, seed=seed)
        self.bucket = LeakyBucket(self.plan, clock)
        self.operating = OperatingTime(self.plan, clock)
        self.counters = Stats()
        self.hub = EventHub(
            authority=self.authority, endpoints=self._endpoints, clock=clock, timeout=event_timeout
        )
        self._listeners: list[Listener] = []
        self._oauth_base = ""
        self.page_url: str | None = None
        self._register_methods()

    # -- lifecycle --------------------------------------------------------------------------

    def _listen(self, port: int) -> Listener:
        holder: dict[str, Listener] = {}

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            response = self._handle(Request(environ), holder["listener"])
            return response(environ, start_response)

        # Bind here: werkzeug would print and sys.exit() on a busy port.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((LOOPBACK, port))
            sock.listen(128)
            server = make_server(
                LOOPBACK,
                port,
                app,
                threaded=True,
                request_handler=_QuietHandler,
                fd=sock.fileno(),
            )
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sandbox-http",
            daemon=True,
        )
        listener = Listener(server, thread, f"http://{LOOPBACK}:{server.socket.getsockname()[1]}")
        holder["listener"] = listener
        thread.start()
        return listener

    def start(self) -> Sandbox:
        """Bind the port and start serving in background threads."""
        if not self._listeners:
            listener = self._listen(self.port)  # first: a busy port leaves nothing running
            self._listeners.append(listener)
            self._oauth_base = listener.base_url
            self.portal.event_sink = self.hub.sink
            self.hub.start()
        return self

    def stop(self) -> None:
        """Stop serving and delivering events, and close the portal's file (final)."""
        for listener in self._listeners:
            listener.server.shutdown()
            listener.server.server_close()
            listener.thread.join(timeout=5)
        self._listeners = []
        self.hub.stop()
        self.portal.event_sink = None
        close = getattr(self.portal, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Block until interrupted (the CLI)."""
        self.start()
        try:
            while True:
                time.sleep(3600)
        finally:
            self.stop()

    # -- addresses --------------------------------------------------------------------------

    @property
    def _current(self) -> Listener:
        if not self._listeners:
            raise RuntimeError("the sandbox is not running; use start() or a with-block")
        return self._listeners[-1]

    @property
    def base_url(self) -> str:
        """The portal's address, e.g. http://127.0.0.1:8800 (changes after move_domain)."""
        return self._current.base_url

    @property
    def domain(self) -> str:
        """The portal's domain as Bitrix24 reports it (host:port here)."""
        return self._current.domain

    @property
    def client_endpoint(self) -> str:
        """The portal's REST endpoint for OAuth calls: <base_url>/rest/."""
        return f"{self.base_url}/rest/"

    @property
    def webhook_url(self) -> str:
        """The admin's incoming webhook: <base_url>/rest/1/<code>/."""
        return f"{self.base_url}/rest/{users.ADMIN_ID}/{self.webhook_code}/"

    @property
    def oauth_server(self) -> str:
        """The OAuth server's base URL (serves /oauth/token/); stays put across domain changes."""
        if not self._oauth_base:
            raise RuntimeError("the sandbox is not running; use start() or a with-block")
        return self._oauth_base

    @property
    def server_endpoint(self) -> str:
        """The OAuth server's REST address, as tokens and events state it."""
        return f"{self.oauth_server}/rest/"

    @property
    def admin_url(self) -> str:
        """The admin endpoint's base URL (send the admin key in `X-Sandbox-Key`)."""
        return f"{self.base_url}/_sandbox/"

    @property
    def member_id(self) -> str:
        """The portal's member_id (stable for a seed)."""
        return self.authority.member_id

    @property
    def client_id(self) -> str:
        """The Market app's client id."""
        return self.authority.client_id

    @property
    def client_secret(self) -> str:
        """The Market app's client secret."""
        return self.authority.client_secret

    def _endpoints(self) -> Endpoints:
        return Endpoints(self.domain, self.client_endpoint, self.server_endpoint, self.member_id)

    def info(self) -> dict[str, Any]:
        """Every address and credential a client of this sandbox needs."""
        return {
            "base_url": self.base_url,
            "webhook_url": self.webhook_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "oauth_server": self.oauth_server,
            "token_url": f"{self.oauth_server}/oauth/token/",
            "client_endpoint": self.client_endpoint,
            "server_endpoint": self.server_endpoint,
            "member_id": self.member_id,
            "domain": self.domain,
            "admin_url": self.admin_url,
            "admin_key": self.admin_key,
            "plan": self.plan.name,
            "mode": self.portal.mode,
        }

    # -- admin actions ----------------------------------------------------------------------

    def install_app(
        self,
        app_url: str | None = None,
        scope: str | Iterable[str] = DEFAULT_APP_SCOPE,
        user_id: int = users.ADMIN_ID,
        *,
        event_handler_url: str | None = None,
        page_url: str | None = None,
        finish: bool = True,
    ) -> dict[str, Any]:
        """Install the app like the Market: tokens, application_token, installer POST, ONAPPINSTALL.

        `app_url` gets the installer request (query DOMAIN/PROTOCOL/LANG/APP_SID, form AUTH_ID,
        REFRESH_ID, APPLICATION_TOKEN, ...); `event_handler_url` gets ONAPPINSTALL like a UI-less
        app's "installation event handler". `finish=False` leaves INSTALLED false (no events)
        until `finish_install()`, like a UI app that has not called BX24.installFinish().
        `page_url` is the app's page (its "handler path"), opened by `GET /portal/app?user=N`.
        https://apidocs.bitrix24.com/settings/oauth/simple-way.html
        """
        self.hub.forget_bindings()
        self.page_url = page_url
        pair = self.authority.install(
            scope=scope, user_id=user_id, finish=finish, handler_url=event_handler_url
        )
        inst = self.authority.installation
        details: dict[str, Any] = {
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "expires_in": pair.expires_in,
            "expires": int(pair.expires_at),
            "application_token": inst.application_token,
            "scope": ",".join(pair.scope),
            "user_id": user_id,
            "member_id": self.member_id,
            "domain": self.domain,
            "client_endpoint": self.client_endpoint,
            "server_endpoint": self.server_endpoint,
            "status": inst.status,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "install_status": None,
        }
        if app_url:
            details.update(self._post_installer(app_url, pair))
        if finish:
            self.hub.app_installed(pair)
        return details

    def _post_installer(self, app_url: str, pair: TokenPair) -> dict[str, Any]:
        inst = self.authority.installation
        query = {
            "DOMAIN": self.domain,
            "PROTOCOL": "0",
            "LANG": inst.language_id,
            "APP_SID": secrets.token_hex(16),
        }
        form = {
            "AUTH_ID": pair.access_token,
            "AUTH_EXPIRES": str(pair.expires_in),
            "REFRESH_ID": pair.refresh_token,
            "SERVER_ENDPOINT": self.server_endpoint,
            "APPLICATION_TOKEN": inst.application_token,
            "APPLICATION_SCOPE": ",".join(pair.scope),
            "member_id": self.member_id,
            "status": inst.status,
            "PLACEMENT": "DEFAULT",
            "PLACEMENT_OPTIONS": "{}",
        }
        try:
            response = requests.post(
                app_url, params=query, data=form, timeout=30, allow_redirects=False
            )
        except requests.RequestException as exc:
            return {"install_status": None, "install_error": type(exc).__name__}
        return {"install_status": response.status_code}

    def app_page_form(self, user_id: int = users.ADMIN_ID, *, lang: str = "en") -> dict[str, Any]:
        """What Bitrix24 sends when `user_id` opens the installed app's page: `{"query": {DOMAIN,
        PROTOCOL, LANG, APP_SID}, "form": {AUTH_ID, AUTH_EXPIRES, REFRESH_ID, member_id, ...}}`,
        with a fresh token pair issued to that user for this opening.
        https://apidocs.bitrix24.com/settings/oauth/simple-way.html
        """
        inst = self.authority.installation
        if not inst.active:
            raise RuntimeError("the app is not installed on this sandbox")
        pair = self.authority.issue(user_id)
        query = {
            "DOMAIN": self.domain,
            "PROTOCOL": "0",
            "LANG": lang,
            "APP_SID": secrets.token_hex(16),
        }
        form = {
            "AUTH_ID": pair.access_token,
            "AUTH_EXPIRES": str(pair.expires_in),
            "REFRESH_ID": pair.refresh_token,
            "SERVER_ENDPOINT": self.server_endpoint,
            "member_id": self.member_id,
            "status": inst.status,
            "PLACEMENT": "DEFAULT",
            "PLACEMENT_OPTIONS": "{}",
        }
        return {"query": query, "form": form}

    def finish_install(self) -> None:
        """BX24.installFinish(): INSTALLED becomes true, events flow, ONAPPINSTALL is sent."""
        inst = self.authority.installation
        if inst.active and not inst.installed:
            inst.installed = True
            self.hub.app_installed(self.authority.issue(inst.user_id))

    def uninstall_app(self, clean: bool = False) -> None:
        """Delete the app: tokens revoked, bindings removed, ONAPPUNINSTALL sent (CLEAN=clean)."""
        old = self.authority.uninstall()
        self.hub.app_uninstalled(old, clean=clean)

    def expire_tokens(self) -> int:
        """Expire every access token now; how many were live."""
        expired = self.authority.expire_all()
        self.counters.add("tokens_expired", expired)
        return expired

    def set_mode(self, mode: str, **options: Any) -> dict[str, Any]:
        """The admin's CRM-mode switch (no REST setter exists); delegates to the core."""
        return self.portal.set_mode(mode, **options)

    def run_as_robot(
        self, method: str, params: dict[str, Any], user_id: int = users.ADMIN_ID
    ) -> Any:
        """A robot or workflow changes the CRM (no REST request, no limits): the events of that
        change carry no tokens (docs api-reference/events/index.md). Returns the method's result."""
        with self.hub.acting_as(robot=True):
            return self.portal.dispatch(method, params, users.context_for(user_id, "robot")).result

    def set_plan_leads(self, allowed: bool) -> None:
        """The plan allows or forbids leads (a forbidding plan makes crm.settings.mode.get 2)."""
        setter = getattr(self.portal, "set_plan_leads", None)
        if not callable(setter):
            raise RuntimeError("this portal core has no plan settings")
        setter(allowed)

    def set_faults(self, spec: str | None) -> None:
        """Replace the fault spec (raises FaultSpecError on a bad one)."""
        self.faults.configure(spec)

    def set_portal_state(self, state: str) -> None:
        """active | unpaid (refresh answers PAYMENT_REQUIRED) | deleted (PORTAL_DELETED)."""
        self.authority.set_portal_state(state)

    def add_webhook(
        self,
        code: str | None = None,
        *,
        user_id: int = users.ADMIN_ID,
        scope: str | Iterable[str] = DEFAULT_WEBHOOK_SCOPE,
    ) -> str:
        """Create another incoming webhook; its URL."""
        code = code or secrets.token_hex(8)
        self.authority.add_webhook(code, user_id=user_id, scope=scope)
        return f"{self.base_url}/rest/{user_id}/{code}/"

    def authorization_code(self, user_id: int = users.ADMIN_ID) -> str:
        """A one-time code for `grant_type=authorization_code` (lives 30 s)."""
        return self.authority.authorization_code(user_id)

    def move_domain(self, port: int = 0) -> str:
        """Rename the portal: serve on a new address; the old one answers REST calls with 302."""
        old = self._current
        new = self._listen(port)
        self._listeners.append(new)
        old.moved_to = new.base_url
        return new.base_url

    def wait_events(self, timeout: float = 10.0) -> bool:
        """Block until every queued event has been attempted (tests); False on timeout."""
        return self.hub.wait_idle(timeout)

    @property
    def deliveries(self) -> list[Any]:
        """Recent event deliveries (`sandbox.events.Delivery`), oldest first."""
        return list(self.hub.deliveries)

    def stats(self) -> dict[str, Any]:
        """Counters: requests, sub-calls per method, 503s, 429s, faults, refreshes, events."""
        snapshot = self.counters.snapshot()
        snapshot.update(
            refreshes=self.authority.refreshes,
            events={"delivered": self.hub.delivered, "failed": self.hub.failed},
            plan=self.plan.name,
            faults_spec=self.faults.spec,
            portal_state=self.authority.portal_state,
            mode=self.portal.mode,
            counts=self.portal.counts(),
        )
        return snapshot

    # -- methods served by this layer -------------------------------------------------------

    def _register_methods(self) -> None:
        for name, fn in {**users.METHODS, **self.hub.methods()}.items():
            self.portal.register(name, fn)
        self.portal.register("app.info", self._app_info)
        self.portal.register("batch", self._batch_in_core)

    def _app_info(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        """`app.info`: https://apidocs.bitrix24.com/api-reference/common/system/app-info.html"""
        if ctx.auth_kind != "oauth":
            raise ApiError("ACCESS_DENIED", "Access denied! Application context required", 400)
        inst = self.authority.installation
        enterprise = self.plan.name == "enterprise"
        return MethodResult(
            result={
                "ID": inst.app_id,
                "CODE": inst.code,
                "VERSION": inst.version,
                "STATUS": inst.status,
                "INSTALLED": inst.installed,
                "PAYMENT_EXPIRED": "Y" if self.authority.portal_state == "unpaid" else "N",
                "DAYS": None,
                "LANGUAGE_ID": inst.language_id,
                "LICENSE": "en_ent250" if enterprise else "en_std",
                "LICENSE_TYPE": "ent250" if enterprise else "std",
                "LICENSE_FAMILY": "ent" if enterprise else "std",
            }
        )

    def _batch_in_core(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        """`batch` when called through portal.dispatch directly (no wire auth: every scope)."""
        scope = (ALWAYS_ALLOWED_SCOPE, "crm", "user", "department")
        meter = RequestMeter()
        try:
            result = self._run_batch(params, ctx, scope, Caller(ctx.auth_kind, "core"), meter)
        finally:
            self.operating.finish(meter)
        return MethodResult(result=result)

    # -- request handling -------------------------------------------------------------------

    def _handle(self, request: Request, listener: Listener) -> Response:
        path = request.path
        if path.startswith("/rest/"):
            if listener.moved_to:
                location = listener.moved_to + request.full_path.rstrip("?")
                return Response(
                    b"", status=302, headers={"Location": location}, content_type="application/json"
                )
            if path.rstrip("/").lower().endswith("crm.controller.item.getfile"):
                return self._download(request, path[len("/rest/") :])
            return self._rest(request, path[len("/rest/") :])
        if path.rstrip("/") == "/oauth/token":
            return self._token(request)
        if path.startswith("/_sandbox/"):
            return admin.handle(self, request, path[len("/_sandbox/") :])
        if path.rstrip("/") == "/portal/app":
            return self._open_app(request)
        return json_response({"error": "NOT_FOUND", "error_description": "Not found"}, 404)

    def _download(self, request: Request, rest_path: str) -> Response:
        """A custom-field file's bytes (its `downloadUrl`), for a caller with CRM scope."""
        self.counters.add("http_requests")
        if not self.bucket.try_acquire():
            return error_response(query_limit_error())
        params = parse_request(request)
        route = rest_path.strip("/").split("/")
        try:
            webhook = len(route) == 3 and route[0].isdigit()
            ctx, scope, _ = self._authenticate(route if webhook else [], params)
            check_scope("crm.item.get", scope, ctx.auth_kind, in_batch=False)
            if not ctx.crm_access:
                raise ApiError("ACCESS_DENIED", "Access denied", 403)
            found = getattr(self.portal, "file", lambda _: None)(int(params.get("fileId") or 0))
        except ApiError as exc:
            return error_response(exc)
        except ValueError:
            found = None
        if found is None:
            return error_response(ApiError("NOT_FOUND", "File not found", 404))
        name, data = found
        return Response(
            data,
            mimetype="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    def _open_app(self, request: Request) -> Response:
        """The portal UI opening the app page for `?user=N` (see sandbox.launcher)."""
        if not self.page_url or not self.authority.installation.active:
            return Response("no app page is installed on this sandbox", 404, mimetype="text/plain")
        try:
            user_id = int(request.args.get("user", users.ADMIN_ID))
        except ValueError:
            return Response("user must be a user id", 400, mimetype="text/plain")
        lang = request.args.get("lang", "en")[:8]
        opened = self.app_page_form(user_id, lang=lang)
        page = launcher_page(
            self.page_url,
            opened,
            user_id=user_id,
            links=lambda uid: f"/portal/app?{urlencode({'user': uid, 'lang': lang})}",
        )
        return Response(page, mimetype="text/html")

    def _token(self, request: Request) -> Response:
        self.counters.add("oauth_requests")
        try:
            body = self.authority.token_endpoint(
                parse_request(request),
                client_endpoint=self.client_endpoint,
                server_endpoint=self.server_endpoint,
                oauth_domain=self.oauth_server.split("://", 1)[1],
            )
        except ApiError as exc:
            return error_response(exc)
        return json_response(body)

    def _authenticate(
        self, route: list[str], params: dict[str, Any]
    ) -> tuple[CallContext, tuple[str, ...], Caller]:
        token = params.pop("auth", None)
        if len(route) == 3:
            try:
                hook = self.authority.webhook(int(route[0]), route[1])
            except ApiError:
                if self._knob("webhook_auth_error", "code") == "code":
                    raise invalid_credentials() from None
                raise
            caller = Caller("webhook", f"{hook.user_id}/{hook.code}")
            return users.context_for(hook.user_id, "webhook"), hook.scope, caller
        if not token or not isinstance(token, str):
            raise ApiError("NO_AUTH_FOUND", "Wrong authorization data", 401)
        grant = self.authority.authenticate(token)
        caller = Caller("oauth", self.client_id, grant.session)
        return users.context_for(grant.user_id, "oauth"), grant.scope, caller

    def _knob(self, name: str, default: str | None = None) -> str:
        """The reading chosen for knob `name` (docs/sandbox.md)."""
        fallback = default if default is not None else KNOBS[name][0]
        read = getattr(self.portal, "knob", None)
        return str(read(name, fallback)) if callable(read) else fallback

    def _rest(self, request: Request, rest_path: str) -> Response:
        started = self.clock()
        tick = time.perf_counter()
        self.counters.add("http_requests")
        params = parse_request(request)
        if not self.bucket.try_acquire():
            self.counters.add("query_limit_exceeded")
            self.counters.status(503)
            return error_response(query_limit_error())
        plan = self.faults.decide()
        if plan.kinds:
            self.counters.fault(plan.kinds)
        if plan.expire_tokens:
            self.expire_tokens()
        if plan.drop_before:
            return _drop_connection(request)
        if plan.error_500:
            response = error_response(
                ApiError("INTERNAL_SERVER_ERROR", "Internal server error", 500)
            )
        else:
            response = self._answer(rest_path.split("/"), params, started, tick)
        self.counters.status(response.status_code)
        if plan.slow_seconds:
            time.sleep(plan.slow_seconds)
        if plan.drop_after:
            return _drop_connection(request)
        return response

    def _answer(
        self, route: list[str], params: dict[str, Any], started: float, tick: float
    ) -> Response:
        """Authenticate and run one REST request (a method or a batch)."""
        webhook_route = len(route) == 3 and route[0].isdigit()
        method = route[-1].lower().removesuffix(".json")
        try:
            if self.authority.portal_state == "deleted":
                raise ApiError("PORTAL_DELETED", "Portal was deleted", 500)
            if not webhook_route and len(route) != 1:
                raise ApiError("NO_AUTH_FOUND", "Wrong authorization data", 401)
            ctx, scope, caller = self._authenticate(route if webhook_route else [], params)
            meter = RequestMeter()
            try:
                if method == "batch":
                    result = self._run_batch(params, ctx, scope, caller, meter)
                    finish = started + (time.perf_counter() - tick)
                    # `batch` is never charged, yet its answer reports its own (empty) key like
                    # any other method's (rest/classes/general/rest.php:744-760).
                    key = caller.key("batch")
                    body = {
                        "result": result,
                        "time": time_object(
                            started,
                            finish,
                            finish - started,
                            operating=self.operating.used(key),
                            operating_reset_at=self.operating.reset_at(key),
                        ),
                    }
                else:
                    body = self._single(method, params, ctx, scope, caller, meter, started, tick)
            finally:
                self.operating.finish(meter)
            return json_response(body)
        except ApiError as exc:
            # OPERATION_TIME_LIMIT too: its 429 body is error and text only, no `time`
            # (rest/classes/general/rest.php:213; b24phpsdk ApiLevelErrorHandlerTest.php:89-100).
            return error_response(exc)
        except Exception:  # a sandbox bug: answer like Bitrix24's own 500, keep the traceback
            log.exception("unexpected error in %s", method)
            return error_response(ApiError("INTERNAL_SERVER_ERROR", "Internal server error", 500))

    def _call(
        self,
        method: str,
        params: dict[str, Any],
        ctx: CallContext,
        scope: tuple[str, ...],
        caller: Caller,
        meter: RequestMeter,
        *,
        in_batch: bool = False,
    ) -> MethodResult:
        """One (sub-)call: lookup, scope, operating-time budget, dispatch, timing."""
        meta = self._meta_call(method, params, ctx, scope)
        if meta is not None:
            return meta
        if not self.portal.has_method(method):
            raise ApiError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
        status = 403 if self._knob("error_statuses") == "docs" else 401
        check_scope(method, scope, ctx.auth_kind, in_batch=in_batch, status=status)
        key = caller.key(method)
        try:
            self.operating.check(key, meter)
        except ApiError:
            self.counters.add("operation_time_limit")
            raise
        self.counters.call(method)
        connector = str(params.get("auth_connector", "") or "")
        try:
            with self.hub.acting_as(connector, session=caller.session):
                outcome = self.portal.dispatch(method, params, ctx)
        except ApiError:
            meter.record(key, self.cost(method, None))
            raise
        meter.record(key, self.cost(method, outcome.result))
        return outcome

    def _meta_call(
        self, method: str, params: dict[str, Any], ctx: CallContext, scope: tuple[str, ...]
    ) -> MethodResult | None:
        """`scope`, `method.get` and a webhook's `app.info`: answers about the caller's own grant.

        rest/classes/general/rest_provider.php: `scopeList` gives the granted scopes; `getMethod`
        gives {isExisting, isAvailable}; `appInfo` called through a webhook gives its SCOPE and
        the LICENSE (knob `app_info_webhook=code`; the docs say "Application context required",
        the default).
        """
        if method == "scope":
            return MethodResult(result=sorted(s for s in scope if s != ALWAYS_ALLOWED_SCOPE))
        if method == "method.get":
            name = str(params.get("name") or "").lower()
            known = name in ("scope", "method.get") or (bool(name) and self.portal.has_method(name))
            return MethodResult(
                result={"isExisting": known, "isAvailable": known and has_scope(name, scope)}
            )
        if method == "app.info" and ctx.auth_kind != "oauth":
            if self._knob("app_info_webhook") != "code":
                return None
            license_name = "en_ent250" if self.plan.name == "enterprise" else "en_std"
            scopes = sorted(s for s in scope if s != ALWAYS_ALLOWED_SCOPE)
            return MethodResult(result={"SCOPE": scopes, "LICENSE": license_name})
        return None

    def _single(
        self,
        method: str,
        params: dict[str, Any],
        ctx: CallContext,
        scope: tuple[str, ...],
        caller: Caller,
        meter: RequestMeter,
        started: float,
        tick: float,
    ) -> dict[str, Any]:
        processing_tick = time.perf_counter()
        outcome = self._call(method, params, ctx, scope, caller, meter)
        key = caller.key(method)
        done = time.perf_counter()
        body: dict[str, Any] = {"result": outcome.result}
        if outcome.next is not None:
            body["next"] = outcome.next
        if outcome.total is not None:
            body["total"] = outcome.total
        body["time"] = time_object(
            started,
            started + (done - tick),
            done - processing_tick,
            operating=self.operating.used(key, meter),
            operating_reset_at=self.operating.reset_at(key),
        )
        return body

    def _run_batch(
        self,
        params: dict[str, Any],
        ctx: CallContext,
        scope: tuple[str, ...],
        caller: Caller,
        meter: RequestMeter,
    ) -> dict[str, Any]:
        def run(method: str, sub_params: dict[str, Any]) -> SubResult:
            # The name as sent: "batch", "download" and "upload" are refused per command, with
            # HTTP 200 for the batch (rest/classes/general/rest_provider.php:304-314).
            if method in NOT_IN_BATCH:
                return SubResult(
                    error=ApiError(
                        "ERROR_BATCH_METHOD_NOT_ALLOWED",
                        "Method is not allowed for batch usage",
                        405,
                    )
                )
            method = method.lower()
            sub_params.pop("auth", None)
            try:
                outcome = self._call(method, sub_params, ctx, scope, caller, meter, in_batch=True)
            except ApiError as exc:
                return SubResult(error=exc)
            operating = self.operating.used(caller.key(method), meter)
            return SubResult(outcome.result, outcome.total, outcome.next, operating=operating)

        answer = run_batch(params, run, self.clock)
        if self._knob("batch_sections") == "docs":
            # Knob `docs`: every section an object keyed by command key, as batch.md describes
            # it, even for keys 0..n-1. `code` (default): PHP's json_encode, which turns such a
            # section into a JSON list (rest_provider.php methodsBatch; fast_bitrix24
            # tests/real_responses/crm_get_batch_mix_success_and_errors.py).
            for name, section in answer.items():
                if isinstance(section, list) and section:
                    answer[name] = {str(i): value for i, value in enumerate(section)}
        return answer
