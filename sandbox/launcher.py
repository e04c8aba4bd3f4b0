"""The portal's side of opening an app page: Bitrix24 shows the app in an iframe and POSTs the
opening user's fresh tokens into it (https://apidocs.bitrix24.com/settings/oauth/simple-way.html).

`GET /portal/app?user=1&lang=en` on the sandbox renders that frame for the installed app's page
URL (`Sandbox.install_app(page_url=...)`), so a person can open the app in a browser the way a
portal user would. The sandbox has no login: the `user` parameter says who is looking.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from sandbox import users


def launcher_page(
    page_url: str, opened: Mapping[str, Any], *, user_id: int, links: Callable[[int], str]
) -> str:
    """An HTML page that posts `opened` (Sandbox.app_page_form) into an iframe on `page_url`."""
    action = f"{page_url}?{urlencode(opened['query'])}"
    fields = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(str(value))}">'
        for name, value in opened["form"].items()
    )
    switch = " · ".join(
        f'<a href="{html.escape(links(other.id))}">{html.escape(_name(other))}'
        f"{' (admin)' if other.is_admin else ''}</a>"
        for other in users.USERS.values()
        if other.id != user_id
    )
    user = users.user_by_id(user_id)
    who = _name(user) if user else f"user #{user_id}"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sandbox portal</title></head>"
        "<body style='margin:0;font-family:sans-serif'>"
        "<div style='padding:6px 12px;background:#2fc6f6;color:#fff'>"
        f"Sandbox portal &mdash; signed in as {html.escape(who)} &mdash; open as: {switch}</div>"
        f"<form id='launch' method='post' target='app-frame' action='{html.escape(action)}'>"
        f"{fields}</form>"
        "<iframe name='app-frame' id='app-frame' style='border:0;width:100%;height:2400px'>"
        "</iframe><script>document.getElementById('launch').submit();</script></body></html>"
    )


def _name(user: users.User) -> str:
    return f"{user.name} {user.last_name}"
