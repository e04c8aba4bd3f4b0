"""What every view needs, built once per app: settings, the database, the stores and the queue.

`create_app` puts one `AppContext` on `app.extensions["b24app"]`; views reach it with
`app_context()`. Nothing here decides anything: the rules live in `b24app`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy import Engine

from b24app.config import Settings
from b24app.rest import PortalClient
from b24app.store.installations import InstallationStore
from b24app.store.journal import Journal
from b24app.store.portal_settings import PortalSettings

if TYPE_CHECKING:
    from b24app.jobs import Jobs

EXTENSION = "b24app"


@dataclass(frozen=True)
class AppContext:
    """The app's settings, engine, stores and job queue."""

    settings: Settings = field(repr=False)
    engine: Engine
    installations: InstallationStore
    portal_settings: PortalSettings
    jobs: Jobs

    def journal(self, member_id: str) -> Journal:
        """The conversion journal of one installed portal."""
        return Journal(self.engine, portal=member_id)

    def client(self, member_id: str) -> PortalClient:
        """A client calling the portal with its stored (and refreshed) app tokens."""
        return PortalClient.for_installation(self.installations, member_id, settings=self.settings)


def app_context() -> AppContext:
    """The AppContext of the running Flask app."""
    return current_app.extensions[EXTENSION]
