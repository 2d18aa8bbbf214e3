"""BM25 over a corpus's passages, and its fusion with ColBERT (hybrid search).

BM25 sees exactly the text the encoder sees (the path line, then the passage),
tokenized by bm25s with its English stopwords and a Snowball stemmer. It is
kept in memory per (corpus, corpus version): a change to the corpus bumps the
version, and the next search rebuilds it (about 1-2 s per 20k passages).

Fusion is reciprocal rank fusion (Cormack et al., 2009): a passage's fused
score is ``sum_m w_m / (RRF_K + rank_m)`` over the rankings ``m`` it is in.
It needs no score calibration between MaxSim sums and BM25 scores, whose
scales differ per query; ``bench/bench_retriever.py`` measures it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

RRF_K = 60  # the constant of the original paper; damps the head of each ranking
FUSION_DEPTH = 100  # candidates taken from each ranking before fusing


@dataclass
class BM25Index:
    """An in-memory bm25s index over passages; ``ids`` maps rows to passage ids."""

    ids: np.ndarray  # int64 [n]
    retriever: object | None  # bm25s.BM25, or None for an empty corpus

    @classmethod
    def build(cls, ids: list[int], texts: list[str]) -> "BM25Index":
        import bm25s

        if not texts:
            return cls(np.zeros(0, np.int64), None)
        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), show_progress=False)
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        return cls(np.asarray(ids, np.int64), retriever)

    def search(self, queries: list[str], k: int,
               allowed_ids: np.ndarray | None = None) -> list[list[tuple[int, float]]]:
        """``k`` best (passage id, BM25 score) per query; passages with score 0 are left out."""
        if self.retriever is None:
            return [[] for _ in queries]
        import bm25s

        tokens = bm25s.tokenize(queries, stopwords="en", stemmer=_stemmer(),
                                show_progress=False, return_ids=False)
        out = []
        for words in tokens:
            scores = self.retriever.get_scores(words) if words else np.zeros(len(self.ids))
            if allowed_ids is not None:
                scores = np.where(np.isin(self.ids, allowed_ids), scores, 0.0)
            top = np.argsort(-scores, kind="stable")[:k]
            out.append([(int(self.ids[i]), float(scores[i])) for i in top if scores[i] > 0])
        return out


_local = threading.local()


def _stemmer():
    """PyStemmer objects are not thread-safe: one per thread."""
    if not hasattr(_local, "stemmer"):
        import Stemmer

        _local.stemmer = Stemmer.Stemmer("english")
    return _local.stemmer


def rrf(rankings: list[list[int]], weights: list[float] | None = None,
        k: int | None = None) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of ranked id lists, best first.

    >>> rrf([[1, 2, 3], [3, 1]])[:2] == [(1, 1 / 61 + 1 / 62), (3, 1 / 63 + 1 / 61)]
    True
    """
    weights = weights or [1.0] * len(rankings)
    fused: dict[int, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, pid in enumerate(ranking, 1):
            fused[pid] = fused.get(pid, 0.0) + w / (RRF_K + rank)
    best = sorted(fused.items(), key=lambda x: (-x[1], x[0]))
    return best[:k] if k is not None else best
