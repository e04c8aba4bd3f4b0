"""The opening user, read back from the portal with the AUTH_ID it posted (never refreshed)."""

from __future__ import annotations

import pytest

from b24app.errors import AuthError, ExpiredToken, UnexpectedResponse
from b24app.rest.user import parse_viewer, read_viewer, viewer_client
from sandbox import Sandbox


def open_as(portal: Sandbox, user_id: int) -> str:
    return portal.app_page_form(user_id)["form"]["AUTH_ID"]


def test_admin_and_ordinary_user_in_one_request() -> None:
    with Sandbox() as portal:
        portal.install_app()
        for user_id, admin in ((1, True), (2, False)):
            client = viewer_client(
                open_as(portal, user_id),
                client_endpoint=portal.client_endpoint,
                member_id=portal.member_id,
            )
            viewer = read_viewer(client)
            assert (viewer.user_id, viewer.is_admin) == (user_id, admin)
            assert client.requests_made == 1
        assert viewer.name == "Mary Jones"


def test_a_forged_or_expired_token_is_refused_and_never_refreshed() -> None:
    with Sandbox() as portal:
        portal.install_app()
        forged = viewer_client(
            "f" * 32, client_endpoint=portal.client_endpoint, member_id=portal.member_id
        )
        with pytest.raises(AuthError):
            read_viewer(forged)
        token = open_as(portal, 1)
        portal.expire_tokens()
        expired = viewer_client(
            token, client_endpoint=portal.client_endpoint, member_id=portal.member_id
        )
        with pytest.raises(ExpiredToken, match="reopen the app"):
            read_viewer(expired)
        assert portal.stats()["refreshes"] == 0


def test_parse_viewer_needs_a_numeric_id() -> None:
    assert parse_viewer({"ID": "7", "EMAIL": "a@b.c"}, "true").name == "a@b.c"
    assert parse_viewer({"ID": "7"}, False).is_admin is False
    with pytest.raises(UnexpectedResponse):
        parse_viewer({"NAME": "x"}, True)
    with pytest.raises(UnexpectedResponse):
        parse_viewer(None, True)
