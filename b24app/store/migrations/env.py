"""Alembic environment: runs the packaged migrations against the configured URL."""

from __future__ import annotations

from alembic import context

from b24app.store.db import make_engine

config = context.config


def run_migrations_online() -> None:
    """Apply migrations on a live connection (the only mode b24app uses).

    `b24app.store.db.migrate` hands over a connection already holding the migration lock.
    """
    given = config.attributes.get("connection")
    if given is not None:
        context.configure(connection=given, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(connection=connection, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
