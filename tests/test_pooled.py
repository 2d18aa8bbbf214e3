"""The pooled term of hybrid search: every written passage stores its encoder's pooled
vector as sign bits, hybrid search fuses their cosine as the encoder's ``pooled_weight``
says, passages without one fall back to ColBERT + BM25, and a re-index rewrites them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select, update

from indexer.bm25 import fuse
from indexer.corpus import Corpora, DocumentInput
from indexer.database import Passage
from indexer.encoding.encoder import ColBERTEncoder
from indexer.pooled import pack, scores
from indexer.reindex import reindex
from indexer.training.loop import random_rotation

DOCS = [
    DocumentInput("geo.py", "def circle_area(radius):\n    return 3.14159 * radius ** 2\n"),
    DocumentInput("net.py", "def fetch_url(url):\n    import urllib.request\n"
                  "    return urllib.request.urlopen(url).read()\n"),
    DocumentInput("text.py", "def count_words(text):\n    return len(text.split())\n"),
    DocumentInput("disk.py", "def file_size(path):\n    import os\n    return os.stat(path).st_size\n"),
]
QUERY = "how many bytes does a file take on disk"


def test_signs_score_as_their_dot_product() -> None:
    rng = np.random.default_rng(0)
    docs, query = rng.standard_normal((5, 384)), rng.standard_normal(384)
    packed = pack(docs)
    assert {len(b) for b in packed} == {48}
    np.testing.assert_allclose(scores(query, packed), np.sign(docs) @ query, rtol=1e-9)
    assert scores(query, []).shape == (0,)


def test_the_pooled_rotation_is_orthogonal_and_seeded() -> None:
    a, b, c = random_rotation(16, 0), random_rotation(16, 0), random_rotation(16, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(a @ a.T, torch.eye(16), atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def pooled_encoder() -> ColBERTEncoder:
    enc = ColBERTEncoder.load("bundled:minilm")
    enc.config = replace(enc.config, pooled_weight=0.5)
    return enc


@pytest.fixture
def indexed(tmp_path: Path, pooled_encoder: ColBERTEncoder) -> Corpora:
    """Corpus ``c`` of DOCS, written by an encoder with a pooled term."""
    corpora = Corpora(tmp_path / "home", encoder=pooled_encoder)
    corpora.create("c")
    corpora.upsert_documents("c", DOCS)
    return corpora


def _stored(corpora: Corpora) -> dict[int, bytes | None]:
    with corpora.sessions() as s:
        return dict(s.execute(select(Passage.id, Passage.pooled)).all())


def test_hybrid_search_fuses_the_stored_pooled_vectors(indexed: Corpora,
                                                       pooled_encoder: ColBERTEncoder) -> None:
    corpora = indexed
    stored = _stored(corpora)
    ids, texts, _ = corpora.passages("c")
    expected = pack(pooled_encoder.encode_documents_and_pooled(texts)[1])
    assert [stored[i] for i in ids] == expected  # the encoder's vectors, as signs

    # the service's ranking is fuse() over the dense, BM25 and stored pooled scores
    q_vectors, q_pooled = pooled_encoder.encode_queries_and_pooled([QUERY])
    dense = [(h.passage_id, h.score) for h in corpora.index("c").search(q_vectors, 32)[0]]
    sparse = corpora.bm25("c").search([QUERY], 32)[0]
    cands = sorted({p for p, _ in dense} | {p for p, _ in sparse})
    pooled = dict(zip(cands, scores(q_pooled[0], [stored[p] for p in cands])))
    want = fuse(dense, sparse, 0.1, 4, pooled, 0.5)
    got = corpora.search(["c"], [QUERY], k=4, mode="hybrid")[0]
    assert [h.passage_id for h in got] == [p for p, _ in want]
    np.testing.assert_allclose([h.score for h in got], [s for _, s in want])
    assert want != fuse(dense, sparse, 0.1, 4)  # the pooled term moved the scores

    # a passage written before pooled vectors existed: ColBERT + BM25 only, no error
    with corpora.sessions.begin() as s:
        s.execute(update(Passage).where(Passage.id == ids[0]).values(pooled=None))
    again = corpora.search(["c"], [QUERY], k=4, mode="hybrid")[0]
    assert [(h.passage_id, round(h.score, 6)) for h in again] == [
        (p, round(x, 6)) for p, x in fuse(dense, sparse, 0.1, 4)]


def test_reindex_rewrites_the_pooled_vectors(indexed: Corpora) -> None:
    corpora = indexed
    before = _stored(corpora)
    with corpora.sessions.begin() as s:  # as if written before pooled vectors existed
        s.execute(update(Passage).values(pooled=None))
    reindex(corpora, "c", "bundled:memex-colbert")
    after = _stored(corpora)
    assert after.keys() == before.keys() and None not in after.values()
    ids, texts, _ = corpora.passages("c")
    new_encoder = ColBERTEncoder.load("bundled:memex-colbert")
    assert [after[i] for i in ids] == pack(new_encoder.encode_documents_and_pooled(texts)[1])
