"""OAuth: installation, single-use refresh tokens, expiry, scopes, portal states."""

from __future__ import annotations

import requests

from sandbox.server import Sandbox

from .conftest import FakeClock, fixture, oauth_call


def refresh(
    portal: Sandbox, refresh_token: str, *, method: str = "GET", **overrides: str
) -> requests.Response:
    params = {
        "grant_type": "refresh_token",
        "client_id": portal.client_id,
        "client_secret": portal.client_secret,
        "refresh_token": refresh_token,
        **overrides,
    }
    url = f"{portal.oauth_server}/oauth/token/"
    if method == "GET":
        return requests.get(url, params=params, timeout=10)
    return requests.post(url, data=params, timeout=10)


def test_install_gives_tokens_that_work_on_rest(portal: Sandbox) -> None:
    install = portal.install_app(scope="crm,user")
    assert len(install["access_token"]) == 32
    assert install["application_token"]
    assert install["member_id"] == portal.member_id
    answer = oauth_call(portal, "crm.settings.mode.get", install["access_token"])
    assert answer.status_code == 200
    assert answer.json()["result"] == 1


def test_token_in_query_form_or_json_body(portal: Sandbox) -> None:
    token = portal.install_app()["access_token"]
    url = f"{portal.base_url}/rest/profile"
    in_query = requests.get(url, params={"auth": token}, timeout=10)
    in_form = requests.post(url, data={"auth": token}, timeout=10)
    in_json = requests.post(url + ".json", json={"auth": token}, timeout=10)
    assert [r.json()["result"]["ID"] for r in (in_query, in_form, in_json)] == ["1", "1", "1"]


def test_refresh_returns_a_new_pair_shaped_like_the_docs(portal: Sandbox) -> None:
    install = portal.install_app(scope="crm,user")
    response = refresh(portal, install["refresh_token"])
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == set(fixture("oauth.token.refresh"))
    assert body["access_token"] != install["access_token"]
    assert body["refresh_token"] != install["refresh_token"]
    assert body["client_endpoint"] == f"{portal.base_url}/rest/"
    assert body["member_id"] == portal.member_id
    assert body["scope"] == "crm,user"
    assert body["expires_in"] == 3600
    assert oauth_call(portal, "profile", body["access_token"]).status_code == 200
    assert portal.stats()["refreshes"] == 1


def test_refresh_tokens_are_single_use(portal: Sandbox) -> None:
    install = portal.install_app()
    assert refresh(portal, install["refresh_token"], method="POST").status_code == 200
    again = refresh(portal, install["refresh_token"])
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_a_refresh_kills_the_access_token_it_replaces(portal: Sandbox) -> None:
    install = portal.install_app()
    refresh(portal, install["refresh_token"])
    old = oauth_call(portal, "profile", install["access_token"])
    assert old.status_code == 401
    assert old.json()["error"] == "expired_token"


def test_wrong_client_is_invalid_client_and_does_not_burn_the_token(portal: Sandbox) -> None:
    install = portal.install_app()
    wrong = refresh(portal, install["refresh_token"], client_secret="nope")
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert refresh(portal, install["refresh_token"]).status_code == 200


def test_access_tokens_expire_after_token_ttl(clock: FakeClock) -> None:
    with Sandbox(token_ttl=60, clock=clock) as portal:
        token = portal.install_app()["access_token"]
        assert oauth_call(portal, "profile", token).status_code == 200
        clock.advance(61)
        expired = oauth_call(portal, "profile", token)
    assert expired.status_code == 401
    assert expired.json() == fixture("error.expired_token")


def test_unknown_token_is_invalid_token(portal: Sandbox) -> None:
    response = oauth_call(portal, "profile", "0" * 32)
    assert response.status_code == 401
    assert response.json() == fixture("error.invalid_token")


def test_mass_expiry(portal: Sandbox) -> None:
    first = portal.install_app()
    second = refresh(portal, first["refresh_token"]).json()
    assert portal.expire_tokens() == 1  # the first access token already died with its refresh
    response = oauth_call(portal, "profile", second["access_token"])
    assert response.json()["error"] == "expired_token"
    assert refresh(portal, second["refresh_token"]).status_code == 200


def test_token_without_crm_scope_gets_insufficient_scope(portal: Sandbox) -> None:
    """401, not the docs' 403: rest/lib/oauth/auth.php:133-141 raises OAuthException, whose
    status is 401 (rest/lib/oauthexception.php:14-24); the body is the pySDK fixture's."""
    token = portal.install_app(scope="user")["access_token"]
    response = oauth_call(portal, "crm.lead.list", token)
    assert response.status_code == 401
    assert response.json() == fixture("error.insufficient_scope")


def test_unpaid_portal_answers_payment_required_on_refresh(portal: Sandbox) -> None:
    install = portal.install_app()
    portal.set_portal_state("unpaid")
    response = refresh(portal, install["refresh_token"])
    assert response.json() == fixture("oauth.error.PAYMENT_REQUIRED")
    assert oauth_call(portal, "profile", install["access_token"]).status_code == 200
    portal.set_portal_state("active")
    assert refresh(portal, install["refresh_token"]).status_code == 200


def test_deleted_portal_answers_portal_deleted(portal: Sandbox) -> None:
    install = portal.install_app()
    portal.set_portal_state("deleted")
    response = oauth_call(portal, "profile", install["access_token"])
    assert response.status_code == 500
    assert response.json()["error"] == "PORTAL_DELETED"
    assert (
        requests.post(portal.webhook_url + "profile", timeout=10).json()["error"]
        == "PORTAL_DELETED"
    )


def test_uninstall_revokes_everything(portal: Sandbox) -> None:
    install = portal.install_app()
    portal.uninstall_app()
    assert oauth_call(portal, "profile", install["access_token"]).json()["error"] == "invalid_token"
    assert refresh(portal, install["refresh_token"]).json()["error"] == "invalid_grant"


def test_authorization_code_grant_is_single_use(portal: Sandbox) -> None:
    portal.install_app()
    code = portal.authorization_code(user_id=2)
    params = {
        "grant_type": "authorization_code",
        "client_id": portal.client_id,
        "client_secret": portal.client_secret,
        "code": code,
    }
    first = requests.get(f"{portal.oauth_server}/oauth/token/", params=params, timeout=10)
    second = requests.get(f"{portal.oauth_server}/oauth/token/", params=params, timeout=10)
    assert first.status_code == 200
    assert first.json()["user_id"] == 2
    assert second.json()["error"] == "invalid_grant"
    me = oauth_call(portal, "user.current", first.json()["access_token"]).json()["result"]
    assert me["ID"] == "2"


def test_app_info_for_the_installed_app(portal: Sandbox) -> None:
    token = portal.install_app()["access_token"]
    body = oauth_call(portal, "app.info", token).json()
    assert set(body["result"]) == set(fixture("app.info")["result"])
    assert body["result"]["INSTALLED"] is True


def test_unfinished_install_reports_installed_false(portal: Sandbox) -> None:
    token = portal.install_app(finish=False)["access_token"]
    assert oauth_call(portal, "app.info", token).json()["result"]["INSTALLED"] is False
    portal.finish_install()
    assert oauth_call(portal, "app.info", token).json()["result"]["INSTALLED"] is True


def test_ordinary_user_token_is_not_admin(portal: Sandbox) -> None:
    token = portal.install_app(user_id=2)["access_token"]
    assert oauth_call(portal, "user.admin", token).json()["result"] is False


def test_app_page_form_carries_a_token_of_the_opening_user(portal: Sandbox) -> None:
    portal.install_app(scope="crm,user")
    opened = portal.app_page_form(2, lang="br")
    assert opened["query"]["LANG"] == "br" and opened["query"]["DOMAIN"] == portal.domain
    form = opened["form"]
    assert form["PLACEMENT"] == "DEFAULT" and form["member_id"] == portal.member_id
    me = oauth_call(portal, "user.current", form["AUTH_ID"]).json()["result"]
    assert me["ID"] == "2"
    assert oauth_call(portal, "user.admin", form["AUTH_ID"]).json()["result"] is False
