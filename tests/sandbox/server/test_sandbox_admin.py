"""The admin endpoint: another process flips the mode, expires tokens, reads stats, moves."""

from __future__ import annotations

import requests

from sandbox.server import Sandbox

from .conftest import admin, call, oauth_call


def test_admin_needs_the_key(portal: Sandbox) -> None:
    no_key = requests.get(portal.admin_url + "stats", timeout=10)
    wrong = requests.get(portal.admin_url + "stats", headers={"X-Sandbox-Key": "x"}, timeout=10)
    in_query = requests.get(
        portal.admin_url + "stats", params={"key": portal.admin_key}, timeout=10
    )
    assert no_key.status_code == 403 and wrong.status_code == 403
    assert in_query.status_code == 200


def test_unknown_action_is_404(portal: Sandbox) -> None:
    assert admin(portal, "POST", "explode").status_code == 404
    assert admin(portal, "GET", "mode").status_code == 404


def test_stats_count_requests_methods_and_statuses(portal: Sandbox) -> None:
    call(portal.webhook_url, "crm.lead.list")
    call(portal.webhook_url, "crm.lead.get", id=1)
    call(portal.webhook_url, "no.such")
    stats = admin(portal, "GET", "stats").json()
    assert stats["http_requests"] == 3
    assert stats["sub_calls"] == {"crm.lead.list": 1, "crm.lead.get": 1}
    assert stats["statuses"] == {"200": 2, "404": 1}
    assert stats["plan"] == "fast"
    assert stats["counts"]["lead"] == 120
    assert stats["events"] == {"delivered": 0, "failed": 0}
    assert stats["refreshes"] == 0


def test_info_lists_addresses(portal: Sandbox) -> None:
    info = admin(portal, "GET", "info").json()
    assert info["webhook_url"] == portal.webhook_url
    assert info["token_url"] == f"{portal.oauth_server}/oauth/token/"
    assert info["member_id"] == portal.member_id


def test_mode_switch_over_http(portal: Sandbox) -> None:
    summary = admin(portal, "POST", "mode", mode="simple", client="contact").json()
    assert summary["mode"] == "simple"
    assert call(portal.webhook_url, "crm.settings.mode.get").json()["result"] == 2
    bad = admin(portal, "POST", "mode", mode="weird")
    assert bad.status_code == 400


def test_install_expire_and_uninstall_over_http(portal: Sandbox) -> None:
    install = admin(portal, "POST", "install", scope="crm").json()
    token = install["access_token"]
    assert oauth_call(portal, "profile", token).status_code == 200
    assert admin(portal, "POST", "expire-tokens").json() == {"expired": 1}
    assert oauth_call(portal, "profile", token).json()["error"] == "expired_token"
    assert admin(portal, "POST", "uninstall").json() == {"uninstalled": True}
    assert admin(portal, "POST", "portal-state", state="unpaid").json() == {
        "portal_state": "unpaid"
    }
    assert admin(portal, "POST", "portal-state", state="gone").status_code == 400


def test_webhook_and_code_over_http(portal: Sandbox) -> None:
    hook = admin(portal, "POST", "webhook", user_id=3, scope="crm").json()["webhook_url"]
    denied = call(hook, "user.admin")
    assert denied.json()["result"] is False
    portal.install_app()
    code = admin(portal, "POST", "authorization-code", user_id=2).json()["code"]
    assert len(code) == 32


def test_domain_change_answers_302_at_the_old_address(portal: Sandbox) -> None:
    old_base = portal.base_url
    old_webhook = portal.webhook_url
    new_base = admin(portal, "POST", "move").json()["base_url"]
    assert new_base != old_base and portal.base_url == new_base
    moved = requests.post(
        old_webhook + "crm.lead.get?id=1", json={}, timeout=10, allow_redirects=False
    )
    assert moved.status_code == 302
    assert moved.headers["Location"] == f"{new_base}/rest/1/{portal.webhook_code}/crm.lead.get?id=1"
    fresh = call(portal.webhook_url, "crm.lead.get", id=1)
    assert fresh.status_code == 200
    # The OAuth server stays where it was; tokens now name the new client endpoint.
    install = portal.install_app()
    assert install["client_endpoint"] == f"{new_base}/rest/"
    assert portal.oauth_server == old_base


def test_plan_leads_and_robot_changes_over_http(portal: Sandbox) -> None:
    """The plan forbidding leads makes crm.settings.mode.get 2 (crm/lib/settings/
    leadsettings.php:297-306); a robot's change goes through the core without a REST call."""
    assert admin(portal, "POST", "plan-leads", allowed=False).json() == {"leads_allowed": False}
    assert call(portal.webhook_url, "crm.settings.mode.get").json()["result"] == 2
    admin(portal, "POST", "plan-leads", allowed=True)
    changed = admin(
        portal,
        "POST",
        "robot",
        method="crm.lead.update",
        params={"id": 1, "fields": {"TITLE": "R"}},
    )
    assert changed.json() == {"result": True}
    assert call(portal.webhook_url, "crm.lead.get", id=1).json()["result"]["TITLE"] == "R"
    missing = admin(portal, "POST", "robot", method="crm.lead.get", params={"id": 99999})
    assert missing.status_code == 400
