"""Per-portal settings of the Market app: the conversion policy an admin saved, the CRM mode last
observed and when the sweep last ran.

The policy is stored as the JSON dict `Policy.to_dict()` gives (the store does not import the
domain); callers rebuild it with `Policy.from_dict`. A mode change seen by the sweep or the app
page is recorded in the installation history, so an admin can tell when the portal switched.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import Column, Engine, String, Table, Text, delete, insert, select, update

from b24app.store.db import UtcDateTime, metadata, utc_now, write_lock
from b24app.store.installations import installation_history

portal_settings = Table(
    "portal_settings",
    metadata,
    Column("member_id", String(64), primary_key=True),
    Column("policy", Text, nullable=True),
    Column("policy_by", String(255), nullable=True),
    Column("policy_at", UtcDateTime(), nullable=True),
    Column("mode", String(16), nullable=True),
    Column("mode_at", UtcDateTime(), nullable=True),
    Column("swept_at", UtcDateTime(), nullable=True),
)


class PortalSettings:
    """The app's settings for each installed portal, keyed by `member_id`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _row(self, member_id: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(
                select(portal_settings).where(portal_settings.c.member_id == member_id)
            ).first()

    def policy_data(self, member_id: str) -> dict[str, Any] | None:
        """The saved policy dict, or None when the admin never saved one (defaults apply)."""
        row = self._row(member_id)
        return json.loads(row.policy) if row is not None and row.policy else None

    def policy_saved_by(self, member_id: str) -> tuple[str | None, dt.datetime | None]:
        """Who saved the policy last (a user id or name) and when."""
        row = self._row(member_id)
        return (row.policy_by, row.policy_at) if row is not None else (None, None)

    def save_policy(self, member_id: str, data: dict[str, Any], *, by: str) -> None:
        """Store the policy dict (`Policy.to_dict()`), saved by user `by`."""
        values = {
            "policy": json.dumps(data, sort_keys=True),
            "policy_by": by,
            "policy_at": utc_now(),
        }
        with write_lock(self.engine) as conn:
            found = conn.execute(
                update(portal_settings)
                .where(portal_settings.c.member_id == member_id)
                .values(**values)
            ).rowcount
            if not found:
                conn.execute(insert(portal_settings).values(member_id=member_id, **values))

    def record_mode(self, member_id: str, mode_label: str) -> str | None:
        """Remember the mode just read; the previous label when it changed, else None."""
        now = utc_now()
        with write_lock(self.engine) as conn:
            before = conn.execute(
                select(portal_settings.c.mode).where(portal_settings.c.member_id == member_id)
            ).first()
            if before is None:
                conn.execute(
                    insert(portal_settings).values(
                        member_id=member_id, mode=mode_label, mode_at=now
                    )
                )
            else:
                conn.execute(
                    update(portal_settings)
                    .where(portal_settings.c.member_id == member_id)
                    .values(mode=mode_label, mode_at=now)
                )
            previous = before.mode if before is not None else None
            if previous is None or previous == mode_label:
                return None
            conn.execute(
                insert(installation_history).values(
                    member_id=member_id,
                    event="mode_changed",
                    detail=f"{previous} -> {mode_label}",
                    at=now,
                )
            )
            return previous

    def observed_mode(self, member_id: str) -> tuple[str | None, dt.datetime | None]:
        """The mode label last read from the portal and when (None, None if never)."""
        row = self._row(member_id)
        return (row.mode, row.mode_at) if row is not None else (None, None)

    def mark_swept(self, member_id: str, at: dt.datetime) -> None:
        """The sweep covered the portal up to `at`."""
        with write_lock(self.engine) as conn:
            found = conn.execute(
                update(portal_settings)
                .where(portal_settings.c.member_id == member_id)
                .values(swept_at=at)
            ).rowcount
            if not found:
                conn.execute(insert(portal_settings).values(member_id=member_id, swept_at=at))

    def last_swept(self, member_id: str) -> dt.datetime | None:
        """When the sweep last covered the portal, or None."""
        row = self._row(member_id)
        return row.swept_at if row is not None else None

    def swept(self) -> dict[str, dt.datetime]:
        """When the sweep last covered each portal it ever covered: one query (a worker's tick
        asks for every portal)."""
        column = portal_settings.c.swept_at
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(portal_settings.c.member_id, column).where(column.is_not(None))
            )
            return {row.member_id: row.swept_at for row in rows}

    def purge(self, member_id: str) -> None:
        """Forget everything stored for the portal (uninstall with CLEAN=1)."""
        with write_lock(self.engine) as conn:
            conn.execute(delete(portal_settings).where(portal_settings.c.member_id == member_id))
