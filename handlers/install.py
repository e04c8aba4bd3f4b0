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
from handlers.context import app_context

log = logging.getLogger(__name__)
blueprint = Blueprint("install", __name__, template_folder="templates")

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "b24app: lead conversion",
        "done": "The app is installed. Bitrix24 opens it in a moment.",
        "bound": "Listening to",
        "get": "This is the installer of b24app. Install the app from the Bitrix24 Market; "
        "Bitrix24 opens this page by itself.",
        "failed": "The app could not be installed: {reason}",
        "misconfigured": "The app could not be installed: the server is misconfigured. "
        "Please contact the app's support.",
    },
    "br": {
        "title": "b24app: conversão de leads",
        "done": "O aplicativo foi instalado. O Bitrix24 o abrirá em instantes.",
        "bound": "Recebendo",
        "get": "Este é o instalador do b24app. Instale o aplicativo pelo Bitrix24 Market; "
        "o Bitrix24 abre esta página automaticamente.",
        "failed": "Não foi possível instalar o aplicativo: {reason}",
        "misconfigured": "Não foi possível instalar o aplicativo: o servidor está mal "
        "configurado. Fale com o suporte do aplicativo.",
    },
}


def _lang() -> str:
    lang = (request.args.get("LANG") or request.form.get("LANG") or "en").strip().lower()
    return lang if lang in TEXTS else "en"


def _page(
    status: int, *, message: str = "", error: bool = False, **extra: Any
) -> ResponseReturnValue:
    lang = _lang()
    html = render_template(
        "install.html",
        lang="pt-BR" if lang == "br" else "en",
        text=TEXTS[lang],
        message=message,
        error=error,
        finish=extra.pop("finish", False),
        bound=extra.pop("bound", ()),
    )
    return html, status, {"Cache-Control": "no-store"}


@blueprint.route("/install", methods=["GET", "POST"])
def install() -> ResponseReturnValue:
    """Install from the Market request (POST); a GET only explains what this page is."""
    text = TEXTS[_lang()]
    if request.method == "GET":
        return _page(200, message=text["get"])
    ctx = app_context()
    form = request.args.to_dict() | request.form.to_dict()
    try:
        result = install_from_market(ctx.installations, form, settings=ctx.settings)
    except InstallError as exc:
        return _page(exc.status, message=text["failed"].format(reason=str(exc)), error=True)
    except ConfigError as exc:
        log.error("install failed: %s", exc)
        return _page(500, message=text["misconfigured"], error=True)
    events = result.bindings.bound + result.bindings.present
    return _page(200, finish=True, bound=events)
