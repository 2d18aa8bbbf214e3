"""Lists of more ids than a statement may bind (65,535 on psycopg, 32,766 on SQLite).

Every corpus path that binds a list of ids goes through ``indexer.database.in_list``;
each test runs on SQLite and on the real PostgreSQL of ``scripts/ci_postgres.sh``.
The rows are inserted in bulk through SQL (encoding 70,000 passages would take
minutes here); what is under test is the SQL that reads and deletes them.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select

from indexer.corpus import Corpora
from indexer.corpus.search import hydrate
from indexer.database import Corpus, Document, Passage, utcnow
from tests.test_postgres import PG_URL, pg_url  # noqa: F401 - a fixture

N = 70_000  # more than psycopg's 65,535 parameters per statement


@pytest.fixture(params=["sqlite", "postgres"])
def big(request, tmp_path, encoder):
    """A corpus of N one-passage documents, with no index vectors (searched with BM25)."""
    if request.param == "postgres":
        if not PG_URL:
            pytest.skip("MEMEX_TEST_POSTGRES_URL not set (eval \"$(bash scripts/ci_postgres.sh)\")")
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'memex.db'}"
    corpora = Corpora(tmp_path / "home", url, encoder=encoder)
    corpora.create("big")
    with corpora.sessions() as s:
        cid = s.scalar(select(Corpus.id).where(Corpus.name == "big"))
    now = utcnow()
    with corpora.engine.begin() as conn:
        conn.execute(insert(Document), [
            {"corpus_id": cid, "doc_id": f"f{i:05d}.txt", "path": f"f{i:05d}.txt",
             "content_hash": "-", "n_chars": 20, "text": f"word{i} shared", "updated_at": now}
            for i in range(N)])
        docs = conn.execute(select(Document.id, Document.text)).all()
        conn.execute(insert(Passage), [
            {"corpus_id": cid, "document_id": d, "start_line": 1, "end_line": 1,
             "start_char": 0, "end_char": len(t), "text": t} for d, t in docs])
    yield corpora
    corpora.engine.dispose()


def test_path_glob_and_hydration_bind_more_ids_than_a_statement_allows(big):
    with big.sessions() as s:
        ids = set(s.scalars(select(Passage.id)))
    assert len(ids) == N
    hits = hydrate(big, "big", ids)  # what queries x k hits read back
    assert len(hits) == N and hits[min(ids)](1.0).document_id == "f00000.txt"
    found = big.search(["big"], ["word123"], k=3, mode="bm25", path_glob="f*.txt")
    assert found[0][0].document_id == "f00123.txt"


def test_recovery_of_a_change_listing_more_ids_than_a_statement_allows(big):
    """The redo record of a change that added N passages is read back in one recovery."""
    with big.sessions.begin() as s:
        live = sorted(s.scalars(select(Passage.id)))[:2]
        # Ids past the last passage stand for passages a later change removed: recovery
        # binds every id and re-encodes those still there (two, to keep this fast).
        gone = list(range(max(live) + 10**6, max(live) + 10**6 + N))
        s.scalar(select(Corpus).where(Corpus.name == "big")).pending = {
            "add": live + gone, "delete": []}
    assert big.recover_all() == ["big"]
    assert sorted(big.index("big").passage_ids().tolist()) == live


def test_deleting_more_documents_than_a_statement_allows(big):
    """The same statements as a first sync of N files: look up, then replace N documents."""
    doc_ids = [f"f{i:05d}.txt" for i in range(N)]
    report = big.delete_documents("big", doc_ids)
    assert len(report.deleted) == N and report.passages_deleted == N
    with big.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Passage)) == 0
        assert s.scalar(select(func.count()).select_from(Document)) == 0
