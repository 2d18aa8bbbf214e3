"""A real small corpus: the Python General FAQ cut into one document per section."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data import shared_dir
from indexer.retro import ChunkDB, ChunkDBConfig
from indexer.retro.records import cached_encoder, cached_tokenizer

DATA = shared_dir() / "data"


def faq_documents(name: str = "faq-general") -> list[tuple[str, str, str]]:
    text = (DATA / name / "corpus.md").read_text()
    sections = [s for s in text.split("\n## ") if s.strip()]
    return [(f"{name}/{i}", f"{name}/corpus.md#{i}", s) for i, s in enumerate(sections)]


@pytest.fixture(scope="session")
def docs() -> list[tuple[str, str, str]]:
    if not (DATA / "faq-general" / "corpus.md").exists():
        pytest.skip("eval data not present")
    return faq_documents()


@pytest.fixture(scope="session")
def exact_db(docs, tmp_path_factory) -> ChunkDB:
    root = tmp_path_factory.mktemp("exact") / "chunkdb"
    return ChunkDB.create(root, ChunkDBConfig()).update(docs)


@pytest.fixture(scope="session")
def tok():
    return cached_tokenizer(ChunkDBConfig().tokenizer)


@pytest.fixture(scope="session")
def enc():
    return cached_encoder(ChunkDBConfig().encoder, "cpu")


def oracle(db: ChunkDB, text: str, k: int, banned_docs=()) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive search: every chunk's key scored in numpy, banned documents dropped."""
    tok, enc = cached_tokenizer(db.config.tokenizer), cached_encoder(db.config.encoder, "cpu")
    ids = tok.encode(text)
    c = db.config.chunk_tokens
    queries = enc.encode([tok.decode(ids[s : s + c]) for s in range(0, len(ids), c)])
    keys = np.asarray(db.keys, dtype=np.float32)
    dist = 2 - 2 * queries @ keys.T  # (q, N)
    doc_of_row = np.array([db.docs[r]["id"] for r in db.doc_rows])
    dist[:, np.isin(doc_of_row, list(banned_docs))] = np.inf
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dist, order, 1)
