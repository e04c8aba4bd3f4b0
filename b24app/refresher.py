"""Token refreshes that outlive the process that asked for them.

Bitrix24's refresh tokens may be single-use: after a refresh the old refresh token and its access
token are dead (../docs/bitrix24-platform.md, "Lifetimes"; settings/oauth/auto-renewal.md). A
process killed between the OAuth server's answer and the commit of the new pair takes the only
valid pair with it, and the portal needs an admin before the app can call it again. A worker is
killed at any moment (OOM killer, `kill -9`, a supervisor's timeout), so the app's long-running
processes - `b24app worker` and the web app under gunicorn - refresh in a short-lived child
process of their own (`python -m b24app.refresher`): it reads the request on stdin, runs the usual
serialized refresh (`StoredTokens`: under the installation row's write lock, reusing a pair another
process already rotated), commits the pair and exits. The child is in its own session and ignores
SIGINT/SIGTERM/SIGHUP, so the parent's death, a Ctrl-C to the process group or a supervisor's
graceful stop does not interrupt it; its parent waits for it and reads the outcome from the
database. Only the child's own death (a machine crash) can still lose a pair.

Child protocol: one long-lived child per process; each request is a line on its stdin, a JSON
object {"member_id", "failed"} (the rejected access token, never on the command line); the answer
a line on its stdout: `ok` when the stored tokens are settled (fresh, or the installation marked
by a refused refresh), else {"kind", "code", "description", "status"} of the error it met. The
child exits when its stdin closes - after finishing the refresh in hand.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading

from b24app import errors
from b24app.config import Settings
from b24app.errors import B24Error, TransportError

log = logging.getLogger("b24app.rest")

# The child gets the OAuth call's own timeout plus this long to start and commit.
START_MARGIN = 30.0


class DetachedRefresh:
    """Refresh a portal's stored tokens in a child process that survives this one.

    One child serves the process (started on first use, started again if it died): a request is
    a line on its stdin, the answer a line on its stdout, so a refresh costs no interpreter
    start. Thread-safe: one refresh at a time goes through the child.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return "DetachedRefresh()"

    def __call__(self, member_id: str, failed_access_token: str) -> None:
        """Return once the child settled the portal's stored tokens; raise what it could not
        do as the error it met (transport, OAuth server) - the tokens are then unchanged."""
        request = json.dumps({"member_id": member_id, "failed": failed_access_token}) + "\n"
        timeout = self.settings.timeout + START_MARGIN
        with self._lock:
            child = self._running()
            assert child.stdin is not None and child.stdout is not None
            try:
                child.stdin.write(request.encode())
                child.stdin.flush()
            except OSError:
                self._child = None
                raise TransportError(
                    "the token refresh process is gone", method="oauth/token"
                ) from None
            ready, _, _ = select.select([child.stdout], [], [], timeout)
            # No answer in time: the child is left to finish (it may hold the new pair and be
            # about to store it) and a fresh one serves the next refresh.
            line = child.stdout.readline() if ready else b""
            if not line:
                self._child = None
                raise TransportError(
                    f"the token refresh did not finish in {timeout:g} s", method="oauth/token"
                )
        answer = line.decode().strip()
        if answer != "ok":
            raise _error(answer)

    def _running(self) -> subprocess.Popen[bytes]:
        child = self._child
        if child is None or child.poll() is not None:
            child = subprocess.Popen(
                [sys.executable, "-m", "b24app.refresher"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, **self.settings.environment()},
                start_new_session=True,
            )
            self._child = child
        return child


def _error(out: str) -> B24Error:
    """The error the child met, rebuilt from its one JSON line."""
    try:
        said = json.loads(out.strip().splitlines()[-1])
        kind = getattr(errors, str(said["kind"]), None)
        cls = kind if isinstance(kind, type) and issubclass(kind, B24Error) else TransportError
        status = said.get("status")
        return cls(
            str(said.get("description") or ""),
            code=str(said.get("code") or ""),
            method="oauth/token",
            status=status if isinstance(status, int) else None,
        )
    except (IndexError, ValueError, KeyError, TypeError, AttributeError):
        return TransportError(
            f"the token refresh process answered {out[:80]!r}", method="oauth/token"
        )


def main() -> int:
    """The child: refresh the tokens each stdin line names, store them, answer on stdout; exit
    when stdin closes (its parent is gone or done)."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    from b24app.rest.oauth import OAuthServer
    from b24app.store.crypto import Cipher
    from b24app.store.db import make_engine
    from b24app.store.installations import InstallationStore
    from b24app.store.tokens import StoredTokens

    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
    )
    store = InstallationStore(make_engine(settings.database_url), Cipher.from_settings(settings))
    oauth = OAuthServer.from_settings(settings)
    for line in sys.stdin:
        try:
            request = json.loads(line)
            member_id, failed = str(request["member_id"]), str(request["failed"])
        except (ValueError, KeyError, TypeError):  # half a line: the parent died writing it
            continue
        try:
            StoredTokens(store, member_id, oauth).refresh(failed)
        except B24Error as exc:
            found = store.get_installation(member_id)
            if found is None or found.active:
                _say(
                    {
                        "kind": type(exc).__name__,
                        "code": exc.code,
                        "description": exc.description,
                        "status": exc.status,
                    }
                )
                continue
            # refused and marked (reinstall needed, deleted, unpaid): the parent reads the mark
        _say("ok")
    return 0


def _say(payload: dict[str, object] | str) -> None:
    with contextlib.suppress(OSError):  # the parent is gone: the database says it all
        print(payload if isinstance(payload, str) else json.dumps(payload), flush=True)


if __name__ == "__main__":
    sys.exit(main())
