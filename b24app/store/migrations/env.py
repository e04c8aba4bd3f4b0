"""Alembic environment: runs the packaged migrations against the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from b24app.store.db import make_engine

config = context.config


def _run(connection: Connection) -> None:
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply migrations on a live connection (the only mode b24app uses).

    `b24app.store.db.migrate` hands over a connection already holding the migration lock; other
    Alembic commands (e.g. `command.revision(alembic_config(url), autogenerate=True)`) get one here.
    """
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


run_migrations_online()
