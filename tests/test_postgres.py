"""The SQL store against a REAL PostgreSQL server on loopback, and migrations on both.

``MEMEX_TEST_POSTGRES_URL`` comes from ``scripts/ci_postgres.sh`` (``.ci/run``
calls it); without it the Postgres tests skip. Each test gets a fresh database.
"""

from __future__ import annotations

import os
import threading
import uuid

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, select, text

from indexer.corpus import Corpora, DocumentInput, chunk_document
from indexer.database import Base, Job, Passage, make_engine, make_sessionmaker
from indexer.migrations import current, upgrade
from indexer.pooled import pack
from service.api.keys import KeyStore
from service.jobs.runner import JobRunner

PG_URL = os.environ.get("MEMEX_TEST_POSTGRES_URL")
needs_pg = pytest.mark.skipif(not PG_URL, reason="MEMEX_TEST_POSTGRES_URL not set "
                              "(eval \"$(bash scripts/ci_postgres.sh)\")")


@pytest.fixture
def pg_url():
    name = f"memex_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def _drift(engine) -> list:
    """Differences between the migrated schema and the models (empty = in step)."""
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def test_migrations_match_models_on_sqlite(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    assert current(engine) == "0005"
    assert _drift(engine) == []


def test_database_made_before_migrations_is_stamped_and_upgraded(tmp_path):
    """A foundation-era database (create_all, no alembic_version, no api_keys) upgrades."""
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    Base.metadata.create_all(engine, tables=[t for t in Base.metadata.sorted_tables
                                             if t.name != "api_keys"])
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO jobs (id, kind, status, stage, done, total, params, "
                          "cancel_requested, created_at, updated_at) VALUES ('j', 'sync', "
                          "'succeeded', '', 0, 0, '{}', 0, '2025-01-01', '2025-01-01')"))
    upgrade(engine)
    assert current(engine) == "0005" and _drift(engine) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM jobs")).scalar() == "j"  # data kept


@needs_pg
def test_migrations_on_postgres_concurrently(pg_url):
    """Four processes' worth of engines migrating at once: advisory lock, one schema."""
    engines = [create_engine(pg_url) for _ in range(4)]
    errors = []

    def go(e):
        try:
            upgrade(e)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(e,)) for e in engines]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    assert current(engines[0]) == "0005" and _drift(engines[0]) == []
    [e.dispose() for e in engines]


@needs_pg
def test_corpus_lifecycle_and_recovery_on_postgres(pg_url, tmp_path, encoder):
    corpora = Corpora(tmp_path / "home", pg_url, encoder=encoder)
    assert corpora.engine.dialect.name == "postgresql"
    corpora.create("pg")
    docs = [DocumentInput("v", "Volcanoes erupt molten lava.", "geo/v.md", {"tag": "geo"}),
            DocumentInput("b", "Bread dough rises with yeast.", "food/b.md")]
    report = corpora.upsert_documents("pg", docs)
    assert report.added == ["v", "b"] and report.version == 1
    hits = corpora.search(["pg"], ["lava eruption"], k=1)[0]
    assert hits[0].document_id == "v" and hits[0].path == "geo/v.md"
    assert corpora.search(["pg"], ["yeast"], k=5, path_glob="food/*")[0][0].document_id == "b"
    first_ids = set(corpora.index("pg").passage_ids())

    corpora.upsert_documents("pg", [DocumentInput("v", "Glaciers carve valleys.", "geo/v.md")])
    corpora.delete_documents("pg", ["b"])
    with corpora.sessions() as s:
        ids = sorted(s.scalars(select(Passage.id)))
    assert not set(ids) & first_ids  # ids are never reused
    assert np.array_equal(corpora.index("pg").passage_ids(), np.array(ids))

    # A crash between the SQL commit and the index commit: the redo record finishes it.
    change = [DocumentInput("n", "Neutron stars spin fast.")]
    chunks = [chunk_document(d, encoder) for d in change]
    pooled = pack(encoder.encode_documents_and_pooled([p.text for p in chunks[0]])[1])
    new_ids, _ = corpora.changes.commit_rows("pg", change, chunks, [], pooled)
    reopened = Corpora(tmp_path / "home", pg_url, encoder=encoder)
    assert reopened.recover_all() == ["pg"]
    assert set(new_ids) <= set(reopened.index("pg").passage_ids())
    assert reopened.search(["pg"], ["pulsar spinning"], k=1)[0][0].document_id == "n"
    assert reopened.info("pg").version == 4
    reopened.delete("pg")
    assert corpora.names() == []


@needs_pg
def test_keys_and_job_claims_on_postgres(pg_url, tmp_path):
    sessions = make_sessionmaker(make_engine(pg_url))
    keys = KeyStore(sessions)
    row, token = keys.create("ops", "write", ["a", "b"])
    assert keys.verify(token).allows("a", "read") and not keys.verify(token).allows("c", "read")
    keys.revoke(row.id)
    assert keys.verify(token) is None and keys.active_count() == 0

    # Claims racing on one Postgres (as several workers' runners would): each job is
    # taken exactly once. Leadership (one runner per data dir) is tested in test_ops.
    runner = JobRunner(sessions, tmp_path / "home")
    runner.register("t", lambda ctx, params: {})
    for n in range(30):
        runner.submit("t", {"n": n})
    claimed: list[str] = []
    lock = threading.Lock()

    def claim_all():
        while (job := runner._claim()) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claim_all) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(claimed) == 30 and len(set(claimed)) == 30
    with sessions() as s:
        assert set(s.scalars(select(Job.status))) == {"running"}
