"""`/install`: the Market installer request, answered with the page that calls
`BX24.installFinish()`.

Bitrix24 opens the installer inside the portal with a POST: `DOMAIN`, `PROTOCOL`, `LANG`,
`APP_SID` in the query string, `AUTH_ID`, `REFRESH_ID`, `member_id`, `APPLICATION_TOKEN`, ... in
the form (https://apidocs.bitrix24.com/settings/oauth/simple-way.html). `b24app.install` proves
and stores it; this view only translates the outcome into a page and a status. The page calls
`installFinish` only after a successful install, so a failed one stays "not installed" in Bitrix24.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue

from b24app.errors import ConfigError
from b24app.install import InstallError, install_from_market
from handlers import i18n
from handlers.context import app_context
from handlers.i18n import N_

log = logging.getLogger(__name__)
blueprint = Blueprint("install", __name__, template_folder="templates")

GET_TEXT = N_(
    "This is the installer of b24app. Install the app from the Bitrix24 Market; "
    "Bitrix24 opens this page by itself."
)
FAILED_TEXT = N_("The app could not be installed: {reason}")
MISCONFIGURED_TEXT = N_(
    "The app could not be installed: the server is misconfigured. Please contact the app's support."
)


def _texts() -> i18n.Texts:
    return i18n.texts(request.args.get("LANG") or request.form.get("LANG"))


def _page(
    status: int, *, message: str = "", error: bool = False, **extra: Any
) -> ResponseReturnValue:
    texts = _texts()
    html = render_template(
        "install.html",
        _=texts.gettext,
        html_lang=texts.html_lang,
        message=message,
        error=error,
        finish=extra.pop("finish", False),
        bound=extra.pop("bound", ()),
    )
    return html, status, {"Cache-Control": "no-store"}


@blueprint.route("/install", methods=["GET", "POST"])
def install() -> ResponseReturnValue:
    """Install from the Market request (POST); a GET only explains what this page is."""
    texts = _texts()
    if request.method == "GET":
        return _page(200, message=texts.gettext(GET_TEXT))
    ctx = app_context()
    form = request.args.to_dict() | request.form.to_dict()
    try:
        result = install_from_market(ctx.installations, form, settings=ctx.settings)
    except InstallError as exc:
        reason = texts.core(str(exc))
        return _page(exc.status, message=texts.gettext(FAILED_TEXT, reason=reason), error=True)
    except ConfigError as exc:
        log.error("install failed: %s", exc)
        return _page(500, message=texts.gettext(MISCONFIGURED_TEXT), error=True)
    events = result.bindings.bound + result.bindings.present
    return _page(200, finish=True, bound=events)
