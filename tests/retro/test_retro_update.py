"""Incremental updates equal a fresh build; approximate indexes; atomic commits."""

import numpy as np
import pytest

from indexer.retro import ChunkDB, ChunkDBConfig, versioned_dir

from .conftest import oracle

QUERY = "How do I get a list of all Python modules and is Python stable?"


def canonical(db: ChunkDB) -> dict:
    """Per (document id, chunk ordinal): tokens, length, key — independent of row order."""
    out = {}
    for row in range(db.num_chunks):
        d = db.docs[db.doc_rows[row]]
        ordinal = row - int(db.doc_start[db.doc_rows[row]])
        out[(d["id"], d["path"], ordinal)] = (
            db.tokens[row].tolist(), int(db.lengths[row]), np.asarray(db.keys[row], np.float32)
        )
    return out


def answer(db, k=3):
    return [[(n.document_id, n.text, round(n.distance, 3)) for n in r.neighbors]
            for r in db.neighbors(text=QUERY, k=k)]


@pytest.fixture(scope="module")
def small(docs):
    return docs[:12]


def final_set(small):
    edited = (small[3][0], small[3][1], small[3][2] + "\nAn added closing sentence about modules.")
    moved = (small[4][0], "moved/path.md", small[4][2])
    return [small[0], small[1], small[2], edited, moved] + small[6:12]


def test_incremental_update_equals_fresh_build(small, tmp_path):
    first = ChunkDB.create(tmp_path / "inc").update(small[:9])
    inc = first.update(final_set(small)[3:], deletes=[small[5][0]])
    fresh = ChunkDB.create(tmp_path / "fresh").update(final_set(small))
    a, b = canonical(inc), canonical(fresh)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key][:2] == b[key][:2]
        np.testing.assert_allclose(a[key][2], b[key][2], atol=2e-3)
    assert answer(inc) == answer(fresh)
    # unchanged documents kept their chunk ids; the edited one was re-chunked
    ids = {d["id"]: set(inc.chunk_ids[inc.doc_rows == i].tolist()) for i, d in enumerate(inc.docs)}
    old = {d["id"]: set(first.chunk_ids[first.doc_rows == i].tolist())
           for i, d in enumerate(first.docs)}
    assert all(ids[d] == old[d] for d, _, _ in small[:3] + small[6:9])
    assert min(ids[small[3][0]]) >= first.meta["next_chunk_id"]


def test_unchanged_documents_are_not_reembedded(small, tmp_path):
    db = ChunkDB.create(tmp_path / "db").update(small[:4])
    before = {d["id"]: i for i, d in enumerate(db.docs)}
    again = db.update(small[:4])
    assert again.chunk_ids.tolist() == db.chunk_ids.tolist()  # same ids: nothing re-chunked
    assert {d["id"]: i for i, d in enumerate(again.docs)} == before


@pytest.mark.parametrize("factory", ["IVF4,PQ48x4fs", "HNSW16"])
def test_approximate_index_with_full_rerank_is_exact(small, tmp_path, factory):
    """With every list probed and every chunk re-ranked the approximate path is exact;
    the update path covers remove_ids (IVF) and rebuild (HNSW cannot remove)."""
    n_all = 200
    cfg = ChunkDBConfig(factory=factory, nprobe=4, rerank=n_all)
    db = ChunkDB.create(tmp_path / "db", cfg).update(small[:9])
    db = db.update(final_set(small)[3:], deletes=[small[5][0]])
    assert db.index is not None and db.index.ntotal == db.num_chunks
    got = db.neighbors(text=QUERY, k=3)
    want, _ = oracle(db, QUERY, 3)
    assert [list(db._row_of_id(np.array([n.chunk_id for n in r.neighbors]))) for r in got] \
        == want.tolist()
    banned = got[0].neighbors[0].document_id
    excl = db.neighbors(text=QUERY, k=3, exclude_document_ids=[banned])
    assert all(n.document_id != banned for r in excl for n in r.neighbors)


def test_failed_commit_leaves_previous_version(small, tmp_path):
    db = ChunkDB.create(tmp_path / "db").update(small[:2])

    def crash(vdir):
        (vdir / "tokens.npy").write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        versioned_dir.commit_version(db.root, db.meta["version"] + 1, crash)
    reopened = ChunkDB.open(db.root)
    assert reopened.meta["version"] == db.meta["version"]
    assert reopened.num_chunks == db.num_chunks
    assert reopened.update(small[2:3]).meta["version"] == db.meta["version"] + 1
