"""Token refreshes in a child process that outlives the worker asking for it (b24app.refresher)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from b24app import errors as e
from b24app.config import Settings
from b24app.refresher import DetachedRefresh
from b24app.rest import PortalClient
from b24app.services import installation_client
from b24app.store import installations as inst
from sandbox import Sandbox
from tests.rest.sandbox_app import Installed, spend_refresh_token


def _settings(app: Installed) -> Settings:
    return Settings(**app.settings, database_url=app.db_url, secret_key=app.key)


def _client(app: Installed) -> PortalClient:
    settings = _settings(app)
    return installation_client(
        app.store, app.member_id, settings=settings, detached=DetachedRefresh(settings)
    )


def test_an_expired_token_is_refreshed_once_by_the_child(tmp_path: Path) -> None:
    with Sandbox(seed_leads=5, seed=1, plan="fast") as portal:
        app = Installed(portal, f"sqlite:///{tmp_path / 'app.db'}")
        before = app.store.get_installation(app.member_id)
        portal.expire_tokens()
        leads = _client(app).call("crm.lead.list").result
        stats = portal.stats()
    after = app.store.get_installation(app.member_id)
    assert len(leads) == 5
    assert stats["refreshes"] == 1
    assert after.access_token != before.access_token
    assert after.refresh_token != before.refresh_token
    assert [h.event for h in app.store.history(app.member_id)] == ["installed", "rotated"]


def test_a_refused_refresh_marks_the_portal_and_raises_in_the_parent(tmp_path: Path) -> None:
    with Sandbox(seed_leads=5, seed=1, plan="fast") as portal:
        app = Installed(portal, f"sqlite:///{tmp_path / 'app.db'}")
        spend_refresh_token(app)
        portal.expire_tokens()
        with pytest.raises(e.InvalidGrant, match="reinstall_needed"):
            _client(app).call("crm.lead.list")
        assert portal.stats()["oauth_requests"] == 1
    assert app.store.get_installation(app.member_id).status == inst.REINSTALL_NEEDED


def test_an_unreachable_oauth_server_is_a_transport_error_and_changes_nothing(
    tmp_path: Path,
) -> None:
    with Sandbox(seed_leads=5, seed=1, plan="fast") as portal:
        app = Installed(portal, f"sqlite:///{tmp_path / 'app.db'}")
        before = app.store.get_installation(app.member_id)
        settings = Settings(
            **{**app.settings, "oauth_server": "http://127.0.0.1:9"},
            database_url=app.db_url,
            secret_key=app.key,
            timeout=2.0,
        )
        with pytest.raises(e.TransportError, match="oauth/token"):
            DetachedRefresh(settings)(app.member_id, before.access_token)
    after = app.store.get_installation(app.member_id)
    assert (after.access_token, after.status) == (before.access_token, inst.ACTIVE)


_PARENT = textwrap.dedent(
    """
    import json, sys
    from b24app.config import Settings
    from b24app.refresher import DetachedRefresh
    args = json.loads(sys.argv[1])
    settings = Settings(**args["settings"])
    DetachedRefresh(settings)(args["member_id"], args["failed"])
    """
)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_the_refresh_outlives_a_parent_killed_with_sigkill(tmp_path: Path) -> None:
    """The worker dies the moment its refresh starts; the child still stores the new pair, so
    the next process finds live tokens instead of a consumed refresh token."""
    import json

    with Sandbox(seed_leads=5, seed=1, plan="fast") as portal:
        app = Installed(portal, f"sqlite:///{tmp_path / 'app.db'}")
        before = app.store.get_installation(app.member_id)
        portal.expire_tokens()
        answer = portal._token

        def slow_answer(request: Any) -> Any:
            # The pair is rotated (the old one spent), then the answer is 1 s on its way: the
            # kill below lands in that window however slowly this machine runs the parent.
            response = answer(request)
            time.sleep(1.0)
            return response

        portal._token = slow_answer  # type: ignore[method-assign]
        settings = {
            **{k: v for k, v in app.settings.items() if k != "rate_limit"},
            "database_url": app.db_url,
            "secret_key": app.key,
        }
        payload = {"settings": settings, "member_id": app.member_id, "failed": before.access_token}
        parent = subprocess.Popen([sys.executable, "-c", _PARENT, json.dumps(payload)])
        deadline = time.monotonic() + 60
        children: list[int] = []
        # The dangerous moment: the OAuth server has been asked (the old pair is spent).
        while time.monotonic() < deadline and parent.poll() is None:
            children = children or _children(parent.pid)
            if children and portal.stats()["oauth_requests"]:
                break
            time.sleep(0.002)
        assert children, "the parent never started its refresh child"
        assert parent.poll() is None, "the parent finished before the OAuth server answered"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        while not _gone(children[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(children[0]), "the refresh child did not finish"
        after = app.store.get_installation(app.member_id)
        assert after.access_token != before.access_token
        leads = app.client().call("crm.lead.list").result  # the stored pair is the live one
        stats = portal.stats()
    assert len(leads) == 5
    assert stats["refreshes"] == 1
    assert after.status == inst.ACTIVE
