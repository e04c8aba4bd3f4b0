"""The app page: Bitrix24's POST authenticates the user, a signed page token carries them,
admins change things, everyone else reads, and forged or stale requests change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from b24app.config import PLANS, RateLimit
from b24app.pagetoken import PageTokens, PageUser
from b24app.rest import PortalClient
from sandbox import Sandbox
from tests.handlers.page_support import PageApp, make_page_app, page_token


@pytest.fixture
def portal() -> Iterator[Sandbox]:
    with Sandbox(seed_leads=12, seed=5, plan="fast") as sandbox:
        yield sandbox


@pytest.fixture
def page(portal: Sandbox, tmp_path: Path) -> PageApp:
    return make_page_app(portal, tmp_path)


def text(response) -> str:
    return response.get_data(as_text=True)


def test_an_admin_opening_the_app_sees_every_form(page: PageApp) -> None:
    opened = page.opening(1)
    response = page.client().post("/app", query_string=opened["query"], data=opened["form"])
    html = text(response)
    assert response.status_code == 200
    assert 'id="policy-form"' in html and 'id="convert-form"' in html
    assert 'id="verify-button"' in html and 'name="page_token"' in html
    assert "This portal uses Classic CRM" in html
    assert "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    for secret in (opened["form"]["AUTH_ID"], opened["form"]["REFRESH_ID"]):
        assert secret not in html


def test_the_page_counts_active_leads_by_stage(page: PageApp) -> None:
    html = text(page.open(1))
    leads = page.ctx.client(page.member_id).call(
        "crm.lead.list", {"filter": {"STATUS_SEMANTIC_ID": "P"}, "select": ["ID"], "start": 0}
    )
    assert f'id="active-total">{leads.total}<' in html


def test_a_non_admin_reads_everything_and_may_change_nothing(page: PageApp) -> None:
    response = page.open(2)
    html = text(response)
    assert response.status_code == 200
    assert 'id="read-only"' in html and 'id="policy-form"' in html
    assert '<fieldset class="plain" disabled>' in html
    assert 'name="page_token"' not in html
    assert 'id="convert-form"' not in html and 'id="verify-button"' not in html
    token = page_token(html)
    client = page.client()
    for path, form in (
        ("/app/policy", {"client": "both"}),
        ("/app/convert", {"leads": "all"}),
        ("/app/mode/verify", {}),
    ):
        refused = client.post(path, data={"page_token": token, **form})
        assert refused.status_code == 403, path
        assert "Only a portal administrator" in text(refused)
    assert page.ctx.portal_settings.policy_data(page.member_id) is None
    assert page.ctx.journal(page.member_id).jobs() == []
    assert client.get("/app", query_string={"t": token}).status_code == 200


def test_an_unknown_portal_gets_403_and_the_portal_is_not_asked(page: PageApp) -> None:
    opened = page.opening(1)
    before = page.sandbox.stats()["http_requests"]
    form = {**opened["form"], "member_id": "f" * 32}
    response = page.client().post("/app", query_string=opened["query"], data=form)
    assert response.status_code == 403
    assert "not installed on this portal" in text(response)
    assert page.sandbox.stats()["http_requests"] == before


def test_a_forged_auth_id_is_403(page: PageApp) -> None:
    opened = page.opening(1)
    form = {**opened["form"], "AUTH_ID": "0" * 32}
    response = page.client().post("/app", query_string=opened["query"], data=form)
    assert response.status_code == 403
    assert "did not confirm who you are" in text(response)


def test_the_stored_endpoint_is_asked_never_the_domain_in_the_request(page: PageApp) -> None:
    opened = page.opening(1)
    query = {**opened["query"], "DOMAIN": "attacker.invalid", "PROTOCOL": "1"}
    response = page.client().post("/app", query_string=query, data=opened["form"])
    assert response.status_code == 200
    assert "attacker.invalid" not in text(response)


def test_missing_fields_are_400(page: PageApp) -> None:
    assert page.client().post("/app", data={"member_id": page.member_id}).status_code == 400
    assert page.client().get("/app").status_code == 403


def test_tampered_expired_and_missing_tokens_are_403(page: PageApp) -> None:
    token = page.token(1)
    client = page.client()
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.get("/app", query_string={"t": tampered}).status_code == 403
    old = PageTokens(page.settings.secret_key, clock=lambda: 1_000_000_000.0).issue(
        PageUser(member_id=page.member_id, user_id=1, is_admin=True)
    )
    expired = client.get("/app", query_string={"t": old})
    assert expired.status_code == 403 and "expired" in text(expired)
    other_key = PageTokens("x" * 44).issue(PageUser(page.member_id, 1, True))
    assert client.post("/app/policy", data={"page_token": other_key}).status_code == 403


def test_a_post_without_the_token_in_form_or_header_is_refused(page: PageApp) -> None:
    """CSRF: a cross-site form cannot know the token, and a token in the URL does not count."""
    token = page.token(1)
    client = page.client()
    assert client.post("/app/policy", data={"client": "both"}).status_code == 403
    in_url = client.post("/app/policy", query_string={"t": token}, data={"client": "both"})
    assert in_url.status_code == 403
    assert page.ctx.portal_settings.policy_data(page.member_id) is None
    by_header = client.post(
        "/app/policy",
        data={"client": "both", "pipeline": "0", "activities": "complete"},
        headers={"X-Page-Token": token},
    )
    assert by_header.status_code == 303


def test_a_token_of_an_uninstalled_portal_is_refused(page: PageApp) -> None:
    token = page.token(1)
    page.ctx.installations.mark_uninstalled(page.member_id)
    assert page.client().get("/app", query_string={"t": token}).status_code == 403


def test_lang_picks_the_catalog_and_unknown_languages_get_english(page: PageApp) -> None:
    html = text(page.open(1, lang="br"))
    assert '<html lang="pt-BR">' in html
    assert "Política de conversão" in html and "Este portal usa CRM Clássico" in html
    token = page_token(html)
    again = text(page.client().get("/app", query_string={"t": token}))
    assert "Política de conversão" in again  # the language travels in the token
    assert "Konvertierungsregeln" in text(page.open(1, lang="de"))
    assert "Правила конвертации" in text(page.open(1, lang="ru"))
    assert "Política de conversión" in text(page.open(1, lang="la"))
    assert "Conversion policy" in text(page.open(1, lang="pl"))
    refused = page.client().post("/app", query_string={"LANG": "br"}, data={})
    assert "Esta página é aberta de dentro do Bitrix24" in text(refused)


def test_the_policy_is_saved_checked_and_shown(page: PageApp) -> None:
    token = page.token(1)
    client = page.client()
    form = {
        "page_token": token,
        "client": "both",
        "pipeline": "7",
        "activities": "move",
        "match_clients": ["phone", "email"],
        "auto_enabled": "on",
        "auto_stages": ["NEW"],
        "auto_sources": ["WEB", "CALL"],
    }
    saved = client.post("/app/policy", data=form)
    assert saved.status_code == 303
    assert saved.headers["Location"].startswith("/app?t=")
    stored = page.ctx.portal_settings.policy_data(page.member_id)
    assert stored["client"] == "both" and stored["pipeline"] == 7
    assert stored["activities"] == "move" and stored["match_clients"] == ["phone", "email"]
    assert stored["auto"] == {"enabled": True, "stages": ["NEW"], "sources": ["WEB", "CALL"]}
    assert page.ctx.portal_settings.policy_saved_by(page.member_id)[0] == "1"
    html = text(client.get(saved.headers["Location"]))
    assert "Policy saved." in html
    assert '<option value="7" selected translate="no">' in html
    assert 'name="auto_enabled" id="auto_enabled" checked' in html


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"pipeline": "99"}, "pipeline 99 does not exist"),
        ({"client": "nobody"}, "client must be contact | company | both"),
        ({"auto_stages": ["JUNK"]}, "lead stage &#39;JUNK&#39; is closed"),
    ],
)
def test_a_bad_policy_is_shown_inline_and_not_saved(page: PageApp, change, problem) -> None:
    token = page.token(1)
    form = {"page_token": token, "client": "contact", "pipeline": "0", "activities": "complete"}
    response = page.client().post("/app/policy", data={**form, **change})
    assert response.status_code == 422
    assert 'id="policy-problems"' in text(response) and problem in text(response)
    assert page.ctx.portal_settings.policy_data(page.member_id) is None


@pytest.mark.parametrize(
    ("lang", "change", "problem"),
    [
        (
            "br",
            {"activities": "bogus"},
            "activities deve ser move | complete (recebido: &#39;bogus&#39;)",
        ),
        ("de", {"client": "nobody"}, "client muss contact | company | both sein"),
        ("ru", {"pipeline": "-1"}, "pipeline должно быть целым числом &gt;= 0"),
        ("es", {"client": "x"}, "client debe ser contact | company | both"),
    ],
)
def test_a_bad_policy_is_explained_in_the_readers_language(
    page: PageApp, lang: str, change: dict[str, str], problem: str
) -> None:
    token = page.token(1, lang=lang)
    form = {"page_token": token, "client": "contact", "pipeline": "0", "activities": "complete"}
    response = page.client().post("/app/policy", data={**form, **change})
    assert response.status_code == 422
    assert problem in text(response), text(response)[:3000]


def test_the_preview_lists_what_would_happen_and_changes_nothing(page: PageApp) -> None:
    token = page.token(1)
    counts = page.sandbox.stats()["counts"]
    response = page.client().get("/app/preview", query_string={"t": token})
    html = text(response)
    assert response.status_code == 200
    active = html.count("<tr data-lead=")
    assert active > 0
    assert html.count("<td>contact, deal</td>") == active  # the default policy
    assert html.count('name="lead_id"') == active
    assert page.sandbox.stats()["counts"] == counts


def test_the_preview_says_what_each_lead_becomes_under_the_native_rules(page: PageApp) -> None:
    """Issue 14: a repeat lead (a deal only, with the lead's contacts), a requisite made from the
    address, the deal linked to a reused client's requisite, closed activities and comments."""
    hook = PortalClient.from_webhook(page.sandbox.webhook_url, rate=RateLimit(*PLANS["fast"]))
    company = hook.call("crm.company.add", {"fields": {"TITLE": "Old Client Inc"}}).result
    contact = hook.call("crm.contact.add", {"fields": {"NAME": "Old", "LAST_NAME": "Buyer"}}).result
    requisite = {"ENTITY_TYPE_ID": 4, "ENTITY_ID": company, "PRESET_ID": 1, "NAME": "Old"}
    hook.call("crm.requisite.add", {"fields": requisite})
    fields = {"TITLE": "Back again", "COMPANY_ID": company, "CONTACT_ID": contact}
    repeat = hook.call("crm.lead.add", {"fields": fields}).result
    fresh_fields = {"TITLE": "Addressed", "NAME": "Ann", "COMPANY_TITLE": "Fjord AS"}
    fresh_fields |= {"ADDRESS": "1 Main St", "ADDRESS_CITY": "Oslo"}
    fresh = hook.call("crm.lead.add", {"fields": fresh_fields}).result
    comment = {"ENTITY_TYPE": "lead", "ENTITY_ID": fresh, "COMMENT": "called back"}
    hook.call("crm.timeline.comment.add", {"fields": comment})
    done = {"OWNER_TYPE_ID": 1, "OWNER_ID": fresh, "TYPE_ID": 2, "SUBJECT": "Call"}
    done |= {"COMPLETED": "Y", "DIRECTION": 2, "RESPONSIBLE_ID": 1}
    done |= {"COMMUNICATIONS": [{"VALUE": "+4712345678"}]}
    hook.call("crm.activity.add", {"fields": done})

    token = page.token(1)
    form = {"page_token": token, "client": "both", "pipeline": "0", "activities": "complete"}
    html = text(page.client().post("/app/preview", data=form))
    row_of = {
        lead: html.split(f'<tr data-lead="{lead}"', 1)[1].split("</tr>", 1)[0]
        for lead in (repeat, fresh)
    }
    assert "repeat lead: a deal only, with the lead&#39;s 1 contact" in row_of[repeat]
    assert "the deal is linked to requisite #" in row_of[repeat]
    assert "requisite from the address for: company, contact" in row_of[fresh]
    assert "1 closed, bound to the deal" in row_of[fresh]
    assert "1 comment, bound to the deal" in row_of[fresh]
    br = text(
        page.client().post("/app/preview", data={**form, "page_token": page.token(1, lang="br")})
    )
    assert "lead repetido: apenas um negócio" in br and "1 comentário, vinculado ao negócio" in br


def test_mode_verify_records_the_mode_and_says_what_bitrix24_reports(page: PageApp) -> None:
    token = page.token(1)
    client = page.client()
    first = client.post("/app/mode/verify", data={"page_token": token})
    assert first.status_code == 303
    assert page.ctx.portal_settings.observed_mode(page.member_id)[0] == "classic"
    page.sandbox.set_mode("simple")
    second = client.post("/app/mode/verify", data={"page_token": token})
    assert "verified=simple" in second.headers["Location"]
    assert "from=classic" in second.headers["Location"]
    html = text(client.get(second.headers["Location"]))
    assert "Bitrix24 now reports Simple CRM." in html
    assert "The mode changed from Classic CRM to Simple CRM." in html
    assert page.ctx.portal_settings.observed_mode(page.member_id)[0] == "simple"


def test_the_guided_switch_names_the_toggle_path(page: PageApp) -> None:
    html = text(page.open(1))
    assert 'id="toggle-path"' in html
    assert "CRM &gt; Leads (or CRM &gt; Deals)" in html and "&#34;Simple CRM&#34;" in html
    br = text(page.open(1, lang="br"))
    assert "CRM &gt; Leads (ou CRM &gt; Negócios)" in br and "&#34;CRM Simples&#34;" in br


def test_a_portal_that_stops_answering_gives_an_error_page_not_a_500(page: PageApp) -> None:
    token = page.token(1)
    page.sandbox.uninstall_app()  # removed on the portal; its uninstall event never came
    client = page.client()
    failed = client.get("/app", query_string={"t": token})
    assert failed.status_code == 502
    assert "Bitrix24 did not answer as expected (invalid_token)" in text(failed)
    verify = client.post("/app/mode/verify", data={"page_token": token})
    assert verify.status_code == 502


def test_each_request_asks_the_portal_through_one_client_closed_after_it(
    page: PageApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = page.token(1)
    made, closed = [], []
    real = page.ctx.services.client

    def spy(member_id: str):
        client = real(member_id)
        close = client.close
        client.close = lambda: (closed.append(client), close())
        made.append(client)
        return client

    monkeypatch.setattr(page.ctx.services, "client", spy)
    client = page.client()
    assert client.get("/app", query_string={"t": token}).status_code == 200
    assert client.get("/app/preview", query_string={"t": token}).status_code == 200
    assert len(made) == 2 and closed == made
