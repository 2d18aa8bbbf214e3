"""Schema migrations (alembic), applied when an engine is opened.

``upgrade(engine)`` brings any database to the newest revision, once even when
several workers start together: SQLite is serialised by a lock file next to
the database, Postgres by a transaction-scoped advisory lock. A database made
before migrations existed (tables but no ``alembic_version``) is stamped at the
first revision, which matches those tables, and upgraded from there.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

HERE = Path(__file__).parent
FIRST = "0001"
PG_LOCK_ID = 0x6D656D6578  # "memex"


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


@contextmanager
def _sqlite_lock(engine: Engine) -> Iterator[None]:
    db = engine.url.database
    if not db or db == ":memory:":
        yield
        return
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.migrate.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = config()
    sqlite = engine.dialect.name == "sqlite"
    with _sqlite_lock(engine) if sqlite else _nothing():
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_ID})
            tables = set(inspect(conn).get_table_names())
            cfg.attributes["connection"] = conn
            if "corpora" in tables and "alembic_version" not in tables:
                command.stamp(cfg, FIRST)
            command.upgrade(cfg, revision)


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if "alembic_version" not in inspect(conn).get_table_names():
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


@contextmanager
def _nothing() -> Iterator[None]:
    yield
