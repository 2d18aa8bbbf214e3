"""Neighbours of the real chunk DB (SmolLM2 tokenizer, MiniLM keys) against exhaustive search."""

import json

import numpy as np
import pytest

from indexer.errors import InvalidInput, NotFound
from indexer.retro import MAX_NEIGHBORS_K, ChunkDB

from .conftest import DATA, faq_documents, oracle

QUESTIONS = [json.loads(line)["question"] for line in (DATA / "faq-general/qa.jsonl").open()][:6]


def long_input() -> str:
    """About 2,000 tokens from the other FAQ page: a RETRO-sized request."""
    return (DATA / "faq-programming/corpus.md").read_text()[:7000]


def rows_of(db, result):
    ids = [[n.chunk_id for n in r.neighbors] for r in result]
    return [list(db._row_of_id(np.array(i, dtype=np.int64))) for i in ids]


@pytest.mark.parametrize("text", QUESTIONS + [long_input()])
def test_exact_index_matches_oracle(exact_db, text):
    got = exact_db.neighbors(text=text, k=3)
    want_rows, want_dist = oracle(exact_db, text, 3)
    assert len(got) == len(want_rows)
    assert rows_of(exact_db, got) == want_rows.tolist()
    dist = np.array([[n.distance for n in r.neighbors] for r in got])
    np.testing.assert_allclose(dist, want_dist, atol=1e-4)


def test_keys_match_unbatched_encoding(exact_db, tok, enc):
    """Batching with padding must not change a key: encode chunks one at a time."""
    rows = [0, 7, exact_db.num_chunks - 1]
    texts = [tok.decode(exact_db.tokens[r, : exact_db.lengths[r]]) for r in rows]
    one_by_one = np.stack([enc.encode([t])[0] for t in texts])
    np.testing.assert_allclose(np.asarray(exact_db.keys[rows], np.float32), one_by_one, atol=2e-3)


def test_same_document_exclusion(exact_db, docs):
    text = docs[5][2]  # an input taken from the corpus: its own chunks are nearest
    plain = exact_db.neighbors(text=text, k=2)
    assert plain[0].neighbors[0].document_id == docs[5][0]
    got = exact_db.neighbors(text=text, k=4, exclude_same_document=docs[5][0])
    want_rows, _ = oracle(exact_db, text, 4, banned_docs=[docs[5][0]])
    assert rows_of(exact_db, got) == want_rows.tolist()
    assert all(n.document_id != docs[5][0] for r in got for n in r.neighbors)


def test_exclude_document_ids(exact_db):
    text = QUESTIONS[0]
    top = exact_db.neighbors(text=text, k=2)[0].neighbors
    banned = [n.document_id for n in top]
    got = exact_db.neighbors(text=text, k=5, exclude_document_ids=banned)[0].neighbors
    assert not {n.document_id for n in got} & set(banned)
    assert len(got) == 5


def test_continuations_come_from_the_same_document(exact_db, docs, tok):
    c = exact_db.config.chunk_tokens
    doc_tokens = {d: tok.encode(t) for d, _, t in docs}
    for r in exact_db.neighbors(text=long_input(), k=4):
        for n in r.neighbors:
            row = int(exact_db._row_of_id(np.array([n.chunk_id]))[0])
            ordinal = row - int(exact_db.doc_start[exact_db.doc_rows[row]])
            ids = doc_tokens[n.document_id][ordinal * c : (ordinal + 2) * c]
            assert len(n.tokens) == 2 * c and sum(n.mask) == len(ids)
            assert np.array(n.tokens)[np.array(n.mask)].tolist() == ids.tolist()
            assert all(t == tok.pad_id for t, m in zip(n.tokens, n.mask) if not m)
            assert n.mask == sorted(n.mask, reverse=True)  # padding only at the end


def test_without_continuation_tokens_are_one_chunk(exact_db):
    n = exact_db.neighbors(text=QUESTIONS[1], k=1, continuation=False)[0].neighbors[0]
    assert len(n.tokens) == exact_db.config.chunk_tokens


def test_token_ids_input_equals_text_input(exact_db, tok):
    text = QUESTIONS[2]
    by_text = exact_db.neighbors(text=text, k=2)
    by_ids = exact_db.neighbors(token_ids=tok.encode(text).tolist(), k=2)
    assert by_text == by_ids


def test_long_input_is_answered_chunk_by_chunk(exact_db, tok):
    text = long_input()
    result = exact_db.neighbors(text=text, k=2)
    assert len(result) == -(-len(tok.encode(text)) // 64)
    assert sum(len(r.tokens) for r in result) == len(tok.encode(text))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"text": ""},
        {"text": "   \n"},
        {"token_ids": [10**9]},
        {"token_ids": []},
        {"text": "x", "k": 0},
        {"text": "x", "k": MAX_NEIGHBORS_K + 1},
        {"text": "x", "chunk_tokens": 32},
        {},
        {"text": "x", "token_ids": [1]},
    ],
)
def test_bad_input(exact_db, kwargs):
    with pytest.raises(InvalidInput):
        exact_db.neighbors(**kwargs)


def test_no_chunk_db_yet(tmp_path):
    with pytest.raises(NotFound, match="no chunk DB"):
        ChunkDB.open(tmp_path / "missing")


def test_precompute_excludes_own_document(exact_db, tmp_path):
    out = exact_db.precompute(tmp_path / "pre", k=2)
    nb = np.load(out / "neighbors.npy")
    doc_rows = np.load(out / "doc_rows.npy")
    assert nb.dtype == np.int32 and nb.shape == (exact_db.num_chunks, 2)
    assert np.load(out / "tokens.npy").shape == (exact_db.num_chunks, 64)
    assert (nb >= 0).all() and (doc_rows[nb] != doc_rows[:, None]).all()
    keys = np.asarray(exact_db.keys, np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    sim = keys @ keys.T
    sim[doc_rows[:, None] == doc_rows[None, :]] = -np.inf
    want = np.argsort(-sim, axis=1, kind="stable")[:, :2]
    assert (nb == want).mean() > 0.99  # fp ties aside, the exhaustive answer
    meta = json.loads((out / "meta.json").read_text())
    assert meta["k"] == 2 and len(meta["documents"]) == len(exact_db.docs)


def test_other_corpus_section_not_in_db(exact_db):
    """Sanity: the programming FAQ is not in the DB, so its own id cannot be banned/found."""
    assert faq_documents("faq-programming")[0][0] not in exact_db.doc_index
