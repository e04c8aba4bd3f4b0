"""The web app on a loopback port in a background thread, for the demo and the tests.

The port is bound first, so its URL can go into the app's settings (B24APP_PUBLIC_URL) before the
app is built; `mount` then plugs the app in. Production runs gunicorn instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (the demo narrates; tests read the app's own logs)."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class ThreadedServer:
    """A threaded WSGI server on 127.0.0.1; use as a context manager."""

    def __init__(self, app: WsgiApp | None = None, *, port: int = 0) -> None:
        self.app = app
        self._server = make_server(
            "127.0.0.1", port, self._dispatch, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _dispatch(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.app is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"the app is not mounted yet"]
        return self.app(environ, start_response)

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self._server.server_port}"

    def mount(self, app: WsgiApp) -> None:
        """Serve `app` from now on."""
        self.app = app

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
