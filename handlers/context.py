"""What every view needs, built once per app: settings, the database, the stores and the queue.

`create_app` puts one `AppContext` on `app.extensions["b24app"]`; views reach it with
`app_context()`. The database, stores and portal clients come from `b24app.services.Services`,
the same place the workers take them from, so each portal keeps one rate bucket per process.
Nothing here decides anything: the rules live in `b24app`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy import Engine

from b24app.config import Settings
from b24app.rest import PortalClient
from b24app.services import Services
from b24app.store.installations import InstallationStore
from b24app.store.journal import Journal
from b24app.store.portal_settings import PortalSettings

if TYPE_CHECKING:
    from b24app.jobs import Jobs

EXTENSION = "b24app"


@dataclass(frozen=True)
class AppContext:
    """The app's shared services and its job queue."""

    services: Services
    jobs: Jobs

    @property
    def settings(self) -> Settings:
        """The app's settings."""
        return self.services.settings

    @property
    def engine(self) -> Engine:
        """The app database."""
        return self.services.engine

    @property
    def installations(self) -> InstallationStore:
        """Installed portals, tokens encrypted."""
        return self.services.installations

    @property
    def portal_settings(self) -> PortalSettings:
        """Saved policies, observed modes, sweep times."""
        return self.services.portal_settings

    def journal(self, member_id: str) -> Journal:
        """The conversion journal of one installed portal."""
        return self.services.journal(member_id)

    def client(self, member_id: str) -> PortalClient:
        """A client calling the portal with its stored (and refreshed) app tokens."""
        return self.services.client(member_id)


def app_context() -> AppContext:
    """The AppContext of the running Flask app."""
    return current_app.extensions[EXTENSION]
