"""Links from the app page into the portal: a lead, deal, contact or company's own page.

The portal's address is the installation's stored client endpoint (`https://<domain>/rest/`),
never a DOMAIN from the request. Bitrix24 opens CRM items at `/crm/<type>/details/<id>/`
(the entity detail pages of the crm module, e.g. `crm/lead/details/5/`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

ENTITIES = ("lead", "deal", "contact", "company")


@dataclass(frozen=True)
class PortalLinks:
    """Builds the portal's URL of a CRM item; `base` is `scheme://host[:port]`."""

    base: str

    @classmethod
    def from_endpoint(cls, client_endpoint: str) -> PortalLinks | None:
        """The links of the portal behind `client_endpoint`, or None for an unusable one."""
        parts = urlsplit(client_endpoint or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return None
        return cls(f"{parts.scheme}://{parts.netloc}")

    def item(self, entity: str, item_id: int | None) -> str | None:
        """The item's page (None without an id or for an unknown entity)."""
        if not item_id or entity not in ENTITIES:
            return None
        return f"{self.base}/crm/{entity}/details/{int(item_id)}/"
