"""The Market app's web side: Flask views that translate HTTP to calls into `b24app`.

Routes an admin registers in the Market app settings: `/install` (installation handler and first
app URL), `/events` (event handler), `/app` (the app page, PLACEMENT=DEFAULT) and `/healthz`.
Development: `b24app serve`; production: `gunicorn 'handlers:create_app()'`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dotenv import load_dotenv
from flask import Flask

from b24app.config import Settings
from b24app.services import Services
from b24app.store.crypto import Cipher
from handlers import events, health, install, page
from handlers.context import EXTENSION, AppContext

if TYPE_CHECKING:
    from b24app.jobs import Jobs

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, jobs: Jobs | None = None) -> Flask:
    """The Flask app for `settings` (default: the environment and `.env`) and job queue `jobs`.

    Raises ConfigError when B24APP_SECRET_KEY is missing: tokens are never stored unencrypted.
    """
    production = settings is None
    if settings is None:
        load_dotenv()
        settings = Settings.from_env()
    Cipher.from_settings(settings)  # fail at start, not at the first install
    if jobs is None:
        from b24app.jobs import Jobs

        # gunicorn kills a worker that overruns its timeout with SIGKILL: a token refresh runs in
        # a child that outlives it (b24app.refresher).
        jobs = Jobs(settings, services=Services(settings, detached_refresh=production))
    services = getattr(jobs, "services", None) or Services(settings)
    services.engine  # noqa: B018 - migrate now, before the first request
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024  # events and install forms are a few KB
    app.extensions[EXTENSION] = AppContext(services=services, jobs=jobs)
    for module in (install, events, page, health):
        app.register_blueprint(module.blueprint)
    return app
