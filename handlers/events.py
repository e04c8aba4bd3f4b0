"""`/events`: Bitrix24's event deliveries, verified and handed to `b24app.events.EventRouter`.

Bitrix24 delivers each event once and never again (https://apidocs.bitrix24.com/api-reference/
events/index.html), so the view answers at once: parse, verify, enqueue, 200. A delivery that is
not a Bitrix24 event form gets 400; one that is not authentic for an installed portal gets 401 and
one log line naming the portal and the reason - never a token. Nothing is changed for either.
"""

from __future__ import annotations

import logging
from functools import partial

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from b24app.errors import ConfigError
from b24app.events import EventRejected, EventRouter, MalformedEvent
from b24app.install import InstallError, InstallRejected, install_from_event
from handlers.context import app_context

log = logging.getLogger(__name__)
blueprint = Blueprint("events", __name__)


def _router() -> EventRouter:
    ctx = app_context()
    return EventRouter(
        store=ctx.installations,
        jobs=ctx.jobs,
        portal_settings=ctx.portal_settings,
        install=partial(install_from_event, ctx.installations, settings=ctx.settings),
        journal=ctx.journal,
    )


@blueprint.post("/events")
def receive() -> ResponseReturnValue:
    """Verify one event delivery and do what it means (enqueue, uninstall, install)."""
    try:
        outcome = _router().receive(request.get_data(cache=False))
    except MalformedEvent as exc:
        log.info("event delivery refused as malformed: %s", exc)
        return jsonify(error="malformed_event", message=str(exc)), 400
    except EventRejected as exc:
        log.warning("event %s for portal %s rejected: %s", exc.event, exc.member_id, exc.reason)
        return jsonify(error="rejected"), 401
    except InstallRejected as exc:
        log.warning("ONAPPINSTALL rejected: %s", exc)
        return jsonify(error="rejected"), 401
    except InstallError as exc:
        return jsonify(error="install_failed", message=str(exc)), exc.status
    except ConfigError as exc:
        log.error("event handling failed: %s", exc)
        return jsonify(error="misconfigured"), 500
    return jsonify(status="ok", action=outcome.action)
