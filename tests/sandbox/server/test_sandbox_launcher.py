"""`GET /portal/app?user=N`: the portal UI posting a fresh token for user N into the app's frame."""

from __future__ import annotations

import html
import re

import requests

from sandbox.server import Sandbox


def _form(page: str) -> tuple[str, dict[str, str]]:
    action = html.unescape(re.search(r"action='([^']+)'", page).group(1))
    fields = {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', page)
    }
    return action, fields


def test_the_launcher_posts_the_chosen_users_token_to_the_app_page() -> None:
    with Sandbox() as portal:
        portal.install_app(page_url="http://127.0.0.1:9/app")
        response = requests.get(f"{portal.base_url}/portal/app?user=2&lang=br", timeout=10)
        assert response.status_code == 200
        action, fields = _form(response.text)
        assert action.startswith("http://127.0.0.1:9/app?") and "LANG=br" in action
        assert fields["member_id"] == portal.member_id and fields["PLACEMENT"] == "DEFAULT"
        me = requests.post(
            f"{portal.client_endpoint}user.current.json",
            data={"auth": fields["AUTH_ID"]},
            timeout=10,
        ).json()
        assert me["result"]["ID"] == "2"


def test_no_installed_page_is_404_and_a_bad_user_is_400() -> None:
    with Sandbox() as portal:
        assert requests.get(f"{portal.base_url}/portal/app", timeout=10).status_code == 404
        portal.install_app(page_url="http://127.0.0.1:9/app")
        assert requests.get(f"{portal.base_url}/portal/app?user=x", timeout=10).status_code == 400
        portal.uninstall_app()
        assert requests.get(f"{portal.base_url}/portal/app", timeout=10).status_code == 404
