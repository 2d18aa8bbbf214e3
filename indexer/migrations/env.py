"""Alembic environment: runs on the connection ``migrate`` hands over, or on the URL
of ``MEMEX_DATABASE_URL`` / ``MEMEX_HOME`` when alembic is run from the command line.
Every table is a model of ``indexer.database``, so ``--autogenerate`` sees them all."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from indexer import config
from indexer.database import Base


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=Base.metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.current().db_url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
