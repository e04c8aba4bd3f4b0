"""Installations: one row per portal (keyed by `member_id`), secrets encrypted, plus a history.

A portal can be renamed, so `member_id` - which never changes - is the key and the domain is just
data (https://apidocs.bitrix24.com/settings/how-to-call-rest-api/change-domen.html). Tokens are
rotated on every refresh and the newest pair is persisted before it is used: refresh tokens may be
single-use (https://apidocs.bitrix24.com/settings/oauth/auto-renewal.html). The history table
records what happened to each installation and never holds a secret.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    String,
    Table,
    Text,
    insert,
    or_,
    select,
    update,
)

from b24app.errors import UsageError
from b24app.store.crypto import Cipher
from b24app.store.db import UtcDateTime, is_sqlite, metadata, utc_now, write_lock

ACTIVE = "active"
REINSTALL_NEEDED = "reinstall_needed"
DELETED = "deleted"
PAYMENT_REQUIRED = "payment_required"
UNINSTALLED = "uninstalled"
STATUSES = (ACTIVE, REINSTALL_NEEDED, DELETED, PAYMENT_REQUIRED, UNINSTALLED)

installations = Table(
    "installations",
    metadata,
    Column("member_id", String(64), primary_key=True),
    Column("domain", String(255), nullable=False, index=True),
    Column("client_endpoint", String(512), nullable=False),
    Column("server_endpoint", String(512), nullable=True),
    Column("access_token", Text, nullable=True),
    Column("refresh_token", Text, nullable=True),
    Column("application_token", Text, nullable=True),
    Column("expires_at", BigInteger, nullable=True),
    Column("scope", String(1024), nullable=False, default=""),
    Column("status", String(32), nullable=False, default=ACTIVE),
    Column("installed_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("refreshed_at", UtcDateTime(), nullable=True),
)

installation_history = Table(
    "installation_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("member_id", String(64), nullable=False, index=True),
    Column("event", String(32), nullable=False),
    Column("detail", String(512), nullable=False, default=""),
    Column("at", UtcDateTime(), nullable=False),
)

_SECRETS = ("access_token", "refresh_token", "application_token")


@dataclass(frozen=True)
class Installation:
    """One portal's installation of the app; the three secrets are plaintext here, never in repr."""

    member_id: str
    domain: str
    client_endpoint: str
    access_token: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    application_token: str = field(default="", repr=False)
    server_endpoint: str | None = None
    expires_at: int | None = None
    scope: str = ""
    status: str = ACTIVE
    installed_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    refreshed_at: dt.datetime | None = None

    @property
    def active(self) -> bool:
        """True when jobs may call this portal."""
        return self.status == ACTIVE


@dataclass(frozen=True)
class HistoryEntry:
    """One thing that happened to an installation (no secrets)."""

    member_id: str
    event: str
    detail: str
    at: dt.datetime


def domain_of(endpoint: str) -> str:
    """The host of a `client_endpoint` such as https://portal.bitrix24.com/rest/."""
    return urlsplit(endpoint).netloc


class InstallationStore:
    """Installations in the database at `engine`, secrets encrypted with `cipher`.

    Each method runs in its own transaction, or inside `conn` when one is given (the refresher
    passes the connection holding the installation's write lock).
    """

    def __init__(self, engine: Engine, cipher: Cipher) -> None:
        self.engine = engine
        self._cipher = cipher

    def __repr__(self) -> str:
        return f"InstallationStore({self.engine.url.render_as_string(hide_password=True)})"

    @contextmanager
    def _writing(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with write_lock(self.engine) as own:
                yield own

    def _seal(self, value: str | None) -> str | None:
        return self._cipher.encrypt(value) if value else None

    def _row(self, row: Any) -> Installation:
        data = dict(row._mapping)
        for name in _SECRETS:
            data[name] = self._cipher.decrypt(data[name]) if data[name] else ""
        return Installation(**data)

    def _record(self, conn: Connection, member_id: str, event: str, detail: str = "") -> None:
        conn.execute(
            insert(installation_history).values(
                member_id=member_id, event=event, detail=detail[:512], at=utc_now()
            )
        )

    def save_installation(self, installation: Installation) -> Installation:
        """Insert or replace the portal's installation (an install or a reinstall); status active.

        Secrets left empty keep their stored values (an installer request may lack some).
        """
        now = utc_now()
        with self._writing(None) as conn:
            old = self._select(conn, installation.member_id, lock=True)
            values: dict[str, Any] = {
                "domain": installation.domain or domain_of(installation.client_endpoint),
                "client_endpoint": installation.client_endpoint,
                "server_endpoint": installation.server_endpoint,
                "expires_at": installation.expires_at,
                "scope": installation.scope,
                "status": ACTIVE,
                "installed_at": now,
                "updated_at": now,
            }
            for name in _SECRETS:
                plain = getattr(installation, name)
                if plain or old is None:
                    values[name] = self._seal(plain)
            if old is None:
                conn.execute(
                    insert(installations).values(member_id=installation.member_id, **values)
                )
                self._record(conn, installation.member_id, "installed", values["domain"])
            else:
                conn.execute(
                    update(installations)
                    .where(installations.c.member_id == installation.member_id)
                    .values(**values)
                )
                self._record(
                    conn,
                    installation.member_id,
                    "reinstalled",
                    f"{values['domain']} (was {old.status})",
                )
            saved = self._select(conn, installation.member_id)
        assert saved is not None
        return saved

    def _select(
        self, conn: Connection, member_id: str, *, lock: bool = False
    ) -> Installation | None:
        query = select(installations).where(installations.c.member_id == member_id)
        if lock and not is_sqlite(self.engine):
            query = query.with_for_update()
        row = conn.execute(query).first()
        return self._row(row) if row else None

    def get_installation(
        self, member_id: str, *, conn: Connection | None = None
    ) -> Installation | None:
        """The installation for `member_id`, or None."""
        if conn is not None:
            return self._select(conn, member_id)
        with self.engine.connect() as own:
            return self._select(own, member_id)

    def lock_installation(self, conn: Connection, member_id: str) -> Installation | None:
        """Re-read the installation inside `conn` (a `write_lock` transaction), locking its row
        on PostgreSQL (SELECT ... FOR UPDATE); SQLite's BEGIN IMMEDIATE already locks."""
        return self._select(conn, member_id, lock=True)

    def find_installation(self, member_id_or_domain: str) -> Installation | None:
        """The installation whose member_id or domain (host) is `member_id_or_domain`."""
        key = member_id_or_domain.strip()
        host = domain_of(key) if "://" in key else key.rstrip("/")
        query = (
            select(installations)
            .where(or_(installations.c.member_id == key, installations.c.domain == host))
            .order_by(installations.c.updated_at.desc())
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return self._row(row) if row else None

    def list_installations(self, *, status: str | None = None) -> list[Installation]:
        """Every installation, or those with `status`, by domain."""
        query = select(installations).order_by(installations.c.domain)
        if status is not None:
            _check_status(status)
            query = query.where(installations.c.status == status)
        with self.engine.connect() as conn:
            return [self._row(row) for row in conn.execute(query)]

    def mark_status(
        self, member_id: str, status: str, *, reason: str = "", conn: Connection | None = None
    ) -> None:
        """Set the installation's status (jobs skip portals that are not active) and record it."""
        _check_status(status)
        with self._writing(conn) as c:
            old = c.execute(
                select(installations.c.status).where(installations.c.member_id == member_id)
            ).scalar()
            if old is None:
                return
            c.execute(
                update(installations)
                .where(installations.c.member_id == member_id)
                .values(status=status, updated_at=utc_now())
            )
            self._record(
                c, member_id, "status", f"{old} -> {status}" + (f": {reason}" if reason else "")
            )

    def rotate_tokens(
        self,
        member_id: str,
        *,
        access_token: str,
        refresh_token: str,
        expires_at: int | None,
        client_endpoint: str | None = None,
        server_endpoint: str | None = None,
        scope: str | None = None,
        conn: Connection | None = None,
    ) -> Installation:
        """Store a refreshed token pair (and the endpoints the OAuth server sent with it)."""
        now = utc_now()
        values: dict[str, Any] = {
            "access_token": self._seal(access_token),
            "refresh_token": self._seal(refresh_token),
            "expires_at": expires_at,
            "refreshed_at": now,
            "updated_at": now,
        }
        if server_endpoint:
            values["server_endpoint"] = server_endpoint
        if scope:
            values["scope"] = scope
        with self._writing(conn) as c:
            old = self._select(c, member_id)
            if old is None:
                raise UsageError(f"no installation stored for member_id {member_id}")
            c.execute(
                update(installations).where(installations.c.member_id == member_id).values(**values)
            )
            self._record(c, member_id, "rotated", f"expires_at={expires_at}")
            if client_endpoint and client_endpoint != old.client_endpoint:
                self._move(c, old, client_endpoint)
            saved = self._select(c, member_id)
        assert saved is not None
        return saved

    def _move(self, conn: Connection, old: Installation, client_endpoint: str) -> None:
        conn.execute(
            update(installations)
            .where(installations.c.member_id == old.member_id)
            .values(
                client_endpoint=client_endpoint,
                domain=domain_of(client_endpoint),
                updated_at=utc_now(),
            )
        )
        self._record(conn, old.member_id, "moved", f"{old.domain} -> {domain_of(client_endpoint)}")

    def move_installation(
        self, member_id: str, client_endpoint: str, *, conn: Connection | None = None
    ) -> None:
        """The portal answered from a new address: store its new `client_endpoint` and domain."""
        with self._writing(conn) as c:
            old = self._select(c, member_id)
            if old is not None and old.client_endpoint != client_endpoint:
                self._move(c, old, client_endpoint)

    def mark_uninstalled(self, member_id: str, *, clean: bool = False) -> None:
        """The app was removed from the portal: forget its tokens (they are revoked)."""
        with self._writing(None) as c:
            found = c.execute(
                update(installations)
                .where(installations.c.member_id == member_id)
                .values(
                    status=UNINSTALLED, access_token=None, refresh_token=None, updated_at=utc_now()
                )
            ).rowcount
            if found:
                self._record(c, member_id, "uninstalled", "clean" if clean else "")

    def verify_application_token(self, member_id: str, application_token: str) -> bool:
        """True when `application_token` is the one stored for the portal (constant time).

        https://apidocs.bitrix24.com/api-reference/events/safe-event-handlers.html
        """
        installation = self.get_installation(member_id)
        if installation is None or not installation.application_token or not application_token:
            return False
        return hmac.compare_digest(
            installation.application_token.encode(), application_token.encode()
        )

    def history(self, member_id: str) -> list[HistoryEntry]:
        """What happened to the installation, oldest first."""
        query = (
            select(installation_history)
            .where(installation_history.c.member_id == member_id)
            .order_by(installation_history.c.id)
        )
        with self.engine.connect() as conn:
            return [
                HistoryEntry(member_id=r.member_id, event=r.event, detail=r.detail, at=r.at)
                for r in conn.execute(query)
            ]


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise UsageError(f"unknown installation status {status!r} (one of {', '.join(STATUSES)})")
