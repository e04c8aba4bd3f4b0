"""Which side of each docs/code disagreement a portal showed (`b24app doctor`), per portal.

Keyed like the journal (`member_id` for an installed portal, the webhook's host otherwise), so
a conversion run on that portal can take the right path at once instead of finding out by
trial and error. Only definite observations are stored; "unknown" leaves the last one in place.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlalchemy import Column, Engine, String, Table, Text, delete, insert, select

from b24app.store.db import UtcDateTime, metadata, utc_now, write_lock

portal_variants = Table(
    "portal_variants",
    metadata,
    Column("portal", String(255), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", String(32), nullable=False),
    Column("detail", Text, nullable=True),
    Column("observed_at", UtcDateTime(), nullable=False),
)


class PortalVariants:
    """Recorded variants: portal -> {name: value}."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(
        self, portal: str, found: Mapping[str, tuple[str, str]], *, at: dt.datetime | None = None
    ) -> None:
        """Store `{name: (value, detail)}` for `portal`, replacing earlier values of those names."""
        if not found:
            return
        when = at or utc_now()
        with write_lock(self.engine) as conn:
            conn.execute(
                delete(portal_variants).where(
                    portal_variants.c.portal == portal, portal_variants.c.name.in_(list(found))
                )
            )
            conn.execute(
                insert(portal_variants),
                [
                    {
                        "portal": portal,
                        "name": name,
                        "value": value,
                        "detail": detail,
                        "observed_at": when,
                    }
                    for name, (value, detail) in found.items()
                ],
            )

    def of(self, portal: str) -> dict[str, str]:
        """The recorded variants of `portal`: {name: value}."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(portal_variants.c.name, portal_variants.c.value).where(
                    portal_variants.c.portal == portal
                )
            ).all()
        return {row.name: row.value for row in rows}

    def observed_at(self, portal: str) -> dt.datetime | None:
        """When the doctor last recorded anything for `portal`."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(portal_variants.c.observed_at).where(portal_variants.c.portal == portal)
            ).all()
        return max((row.observed_at for row in rows), default=None)
