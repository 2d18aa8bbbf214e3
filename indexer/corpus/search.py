"""Search over corpora: dense (the index), lexical (BM25) or both fused, then hydrated to hits."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select

from indexer import pooled as pooled_module
from indexer.bm25 import FUSION_DEPTH, fuse
from indexer.corpus.records import SearchHit
from indexer.database import Document, Passage, in_list
from indexer.errors import InvalidInput

if TYPE_CHECKING:
    from indexer.corpus.corpora import Corpora

MAX_SEARCH_K = 1000  # the largest k a search may ask for (service/api/schemas mirrors it)
SEARCH_MODES = ("colbert", "bm25", "hybrid")
# Hybrid: z-score fusion with BM25 beat ColBERT alone on all 1,000 stdlib queries, untrained
# (MRR@10 0.425 vs 0.419) and post-trained (0.473 vs 0.462); bench/RESULTS-retriever.md.
DEFAULT_MODE = "hybrid"


def search(corpora: Corpora, names: list[str], queries: list[str], k: int = 10,
           path_glob: str | None = None, mode: str | None = None,
           nprobe: int | None = None, candidates: int | None = None,
           decompress: int | None = None) -> list[list[SearchHit]]:
    """Top ``k`` passages per query over the union of ``names`` (``Corpora.search``)."""
    mode = mode or DEFAULT_MODE
    if mode not in SEARCH_MODES:
        raise InvalidInput(f"mode must be one of {', '.join(SEARCH_MODES)}")
    if not names:
        raise InvalidInput("name at least one corpus")
    if not 1 <= k <= MAX_SEARCH_K:
        raise InvalidInput(f"k must be between 1 and {MAX_SEARCH_K}")
    for q in queries:
        if not q or not q.strip():
            raise InvalidInput("queries must not be empty")
    with corpora.sessions() as s:
        rows = {n: corpora.row(s, n) for n in names}
    knobs = {n: v for n, v in (("nprobe", nprobe), ("candidates", candidates),
                               ("decompress", decompress)) if v}
    # per encoder fingerprint: query token vectors, pooled vectors, the pooled weight
    encoded: dict[str, tuple[list[np.ndarray], np.ndarray, float]] = {}
    merged: list[list[SearchHit]] = [[] for _ in queries]
    depth = max(k, FUSION_DEPTH) if mode == "hybrid" else k
    for name, row in rows.items():
        allowed = allowed_ids(corpora, row.id, path_glob) if path_glob else None
        if allowed is not None and len(allowed) == 0:
            continue
        found: list[list[tuple[int, float]]] = [[] for _ in queries]
        if mode != "bm25":
            if row.encoder_fingerprint not in encoded:
                encoder = corpora.encoder_for(row.encoder, row.encoder_fingerprint)
                encoded[row.encoder_fingerprint] = (*encoder.encode_queries_and_pooled(queries),
                                                    encoder.config.pooled_weight)
            vectors, query_pooled, pooled_weight = encoded[row.encoder_fingerprint]
            found = [[(p.passage_id, p.score) for p in r] for r in corpora.index(
                name, row.index_dir).search(vectors, depth, allowed, **knobs)]
        if mode != "colbert":
            lexical = corpora.bm25(name).search(queries, depth, allowed)
            if mode == "bm25":
                found = lexical
            else:
                pooled = pooled_scores(corpora, query_pooled, found, lexical) \
                    if pooled_weight > 0 else [None] * len(queries)
                found = [fuse(dense, sparse, row.bm25_weight, k, p, pooled_weight)
                         for dense, sparse, p in zip(found, lexical, pooled)]
        hits = hydrate(corpora, name, {p for r in found for p, _ in r})
        for qi, ranked in enumerate(found):
            merged[qi] += [hits[p](score) for p, score in ranked[:k] if p in hits]
    return [sorted(h, key=lambda x: -x.score)[:k] for h in merged]


def pooled_scores(corpora: Corpora, query_pooled: np.ndarray,
                  dense: list[list[tuple[int, float]]],
                  sparse: list[list[tuple[int, float]]]) -> list[dict[int, float] | None]:
    """Per query, the pooled score of each of its fusion candidates (one read of their
    packed vectors for all queries); None for a query with a candidate that has none
    (a passage written before pooled vectors existed: re-index to add them)."""
    ids = {p for ranking in (*dense, *sparse) for p, _ in ranking}
    with corpora.sessions() as s:
        packed = {i: b for cond in in_list(s, Passage.id, ids)
                  for i, b in s.execute(select(Passage.id, Passage.pooled).where(cond))}
    out: list[dict[int, float] | None] = []
    for q, d, sp in zip(query_pooled, dense, sparse):
        cands = sorted({p for p, _ in d} | {p for p, _ in sp})
        blobs = [packed.get(p) for p in cands]
        if any(b is None for b in blobs):
            out.append(None)
            continue
        out.append(dict(zip(cands, pooled_module.scores(q, blobs).tolist())))  # type: ignore[arg-type]
    return out


def allowed_ids(corpora: Corpora, corpus_id: int, glob: str) -> np.ndarray:
    """Ids of the passages whose document's path (or id) matches ``glob``, sorted."""
    with corpora.sessions() as s:
        docs = s.execute(select(Document.id, Document.path, Document.doc_id)
                         .where(Document.corpus_id == corpus_id)).all()
        keep = [i for i, path, doc_id in docs if fnmatch.fnmatchcase(path or doc_id, glob)]
        ids = [i for cond in in_list(s, Passage.document_id, keep)
               for i in s.scalars(select(Passage.id).where(cond))]
        return np.array(sorted(ids), dtype=np.int64)


def hydrate(corpora: Corpora, name: str, ids: set[int]) -> dict[int, Callable[[float], SearchHit]]:
    """Passage id -> a maker of its hit at a given score (rows read once per search)."""
    with corpora.sessions() as s:
        rows = [r for cond in in_list(s, Passage.id, ids)
                for r in s.execute(select(Passage, Document.doc_id, Document.path)
                                   .join(Document, Passage.document_id == Document.id)
                                   .where(cond))]

    def maker(p: Passage, doc_id: str, path: str | None) -> Callable[[float], SearchHit]:
        return lambda score: SearchHit(name, p.id, doc_id, path, p.start_line, p.end_line, score,
                                       p.text)

    return {p.id: maker(p, doc_id, path) for p, doc_id, path in rows}
