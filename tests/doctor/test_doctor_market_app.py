"""`b24app doctor --portal` (the Market app's tokens) and the app page's "Check the portal"
panel: the bound events and the public URL on top of the webhook's checks."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from b24app.crm import checkup
from b24app.doctor import public_url_check
from b24app.install import EVENTS_PATH
from b24app.rest.bindings import ensure_bindings
from b24app.store.db import make_engine
from b24app.store.portal_variants import PortalVariants
from b24app.vocabulary import BOUND_EVENTS
from handlers import i18n
from sandbox.server import Sandbox
from tests.cli.cli_support import Ran, run_cli
from tests.handlers.page_support import make_page_app
from tests.handlers.untranslated import english_left, visible_texts
from tests.rest.sandbox_app import Installed


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def public_url() -> Iterator[str]:
    """A loopback server answering /healthz, standing in for the app's public address."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def portal() -> Iterator[Sandbox]:
    with Sandbox(plan="fast", seed_leads=4, seed=2) as running:
        yield running


def doctor(installed: Installed, public_url: str, *args: str) -> Ran:
    env = {
        "B24APP_DATABASE_URL": installed.db_url,
        "B24APP_PLAN": "fast",
        "B24APP_SECRET_KEY": installed.key,
        "B24_CLIENT_ID": installed.settings["client_id"],
        "B24_CLIENT_SECRET": installed.settings["client_secret"],
        "B24_OAUTH_SERVER": installed.settings["oauth_server"],
        "B24APP_PUBLIC_URL": public_url,
    }
    return run_cli(["doctor", "--portal", installed.member_id, *args], env)


def statuses(ran: Ran) -> dict[str, str]:
    return {c["check"]: c["status"] for c in ran.json()["checks"]}


def test_bound_events_and_a_loopback_public_url(
    portal: Sandbox, public_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    installed = Installed(portal, f"sqlite:///{tmp_path / 'app.db'}")
    with installed.client() as client:
        ensure_bindings(client, public_url + EVENTS_PATH, BOUND_EVENTS)
    ran = doctor(installed, public_url, "--json")
    assert ran.code == 0, ran.out + ran.err
    found = statuses(ran)
    assert found["events"] == "ok"
    assert found["public_url"] == "warn"  # it answers, but Bitrix24 cannot reach 127.0.0.1
    assert found["credentials"] == "ok" and found["scopes"] == "ok"
    assert "app_info_webhook" not in ran.json()["variants"]
    assert ran.json()["requests"] == {"portal": 3, "other": 1}  # + the department probe
    assert PortalVariants(make_engine(installed.db_url)).of(installed.member_id)


def test_unbound_events_fail_with_the_fix(
    portal: Sandbox, public_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    installed = Installed(portal, f"sqlite:///{tmp_path / 'app.db'}")
    ran = doctor(installed, public_url)
    assert ran.code == 3
    events = next(line for line in ran.out.splitlines() if line.startswith("fail"))
    assert "ONCRMLEADADD" in events
    assert "reinstall" in ran.out


def test_the_public_url_that_does_not_answer_fails(
    portal: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    installed = Installed(portal, f"sqlite:///{tmp_path / 'app.db'}")
    ran = doctor(installed, "http://127.0.0.1:9", "--json")
    assert statuses(ran)["public_url"] == "fail"
    assert ran.code == 3


def test_the_app_pages_panel_shows_the_lines_to_admins_only(
    portal: Sandbox, public_url: str, tmp_path: Path
) -> None:
    page = make_page_app(portal, tmp_path, public_url=public_url)
    token = page.token(1)
    overview = page.client().get("/app", query_string={"t": token}).get_data(as_text=True)
    assert 'id="doctor-link"' in overview
    response = page.client().get("/app/doctor", query_string={"t": token})
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html[:500]
    assert 'data-check="mode"' in html and 'class="doctor-ok" data-check="admin"' in html
    assert 'data-check="events"' in html and 'data-check="public_url"' in html
    assert "nothing was written to the CRM" in html
    assert PortalVariants(page.ctx.engine).of(page.member_id)
    reader = page.token(2)
    assert 'id="doctor-link"' not in page.client().get("/app", query_string={"t": reader}).get_data(
        as_text=True
    )
    assert page.client().get("/app/doctor", query_string={"t": reader}).status_code == 403


@pytest.fixture
def fields_portal() -> Iterator[Sandbox]:
    """Custom fields without twins (a `warn` line with its fix)."""
    with Sandbox(plan="fast", seed_leads=4, seed=2, custom_fields=True) as running:
        yield running


@pytest.mark.parametrize("lang", [lang for lang in i18n.LOCALES if lang != "en"])
def test_the_panel_speaks_the_readers_language(
    fields_portal: Sandbox, public_url: str, tmp_path: Path, lang: str
) -> None:
    page = make_page_app(fields_portal, tmp_path, public_url=public_url)
    english = page.client().get("/app/doctor", query_string={"t": page.token(1)})
    token = page.token(1, lang=lang)
    response = page.client().get("/app/doctor", query_string={"t": token})
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html[:500]
    shown = visible_texts(html)
    assert english_left(shown, lang) == [], english_left(shown, lang)
    texts = i18n.texts(lang)
    badges = re.findall(r'<span class="badge (ok|warn|fail)">([^<]*)</span>', html)
    assert {status for status, _ in badges} >= {"ok", "warn"}
    for status, label in badges:
        assert label == texts.gettext(i18n.DOCTOR_STATUS[status]) != status or status == "ok"
    # every line is a translated template: no row reads as it does in English
    rows = re.compile(r'data-check="(\w+)">(.*?)</tr>', re.DOTALL)
    english_rows = dict(rows.findall(english.get_data(as_text=True)))
    translated_rows = dict(rows.findall(html))
    assert translated_rows.keys() == english_rows.keys()
    assert [name for name in english_rows if english_rows[name] == translated_rows[name]] == []


def test_every_line_the_doctor_writes_is_a_template_the_page_translates() -> None:
    """Each summary and fix of the readings matches a template of b24app.messages."""
    german = i18n.texts("de")
    lines = [
        checkup.admin(checkup.Answers(results={"admin": False})),
        checkup.plan(checkup.Answers(results={"app": {"LICENSE": "en_ent250"}}), "standard"),
        checkup.methods(checkup.Answers()),
        public_url_check(None),
        public_url_check("http://127.0.0.1:9"),
    ]
    for line in lines:
        for text in (line.summary, line.fix):
            if text:
                assert german.core(text) != text, text
