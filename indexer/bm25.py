"""BM25 over a corpus's passages, and its fusion with ColBERT (hybrid search).

BM25 sees exactly the text the encoder sees (the path line, then the passage),
split into code-aware terms by ``terms`` (identifiers give their words *and*
themselves, see there) and scored by bm25s. It is
kept in memory per (corpus, corpus version): a change to the corpus bumps the
version, and the next search rebuilds it (about 1-2 s per 20k passages); only
searches of that corpus wait for the rebuild (``Corpora.bm25``).

Fusion is a convex combination of z-scores: per query, each ranking's top
``FUSION_DEPTH`` scores are standardised (MaxSim sums and BM25 scores have
unrelated scales that differ per query), a passage missing from one ranking
gets one below that ranking's lowest z-score, and the fused score is
``(1 - w) * z_colbert + w * z_bm25``. Reciprocal rank fusion (RRF) was the
first method here; it throws the score gaps away, and on all 1,000 stdlib
queries it lowered MRR@10 below ColBERT alone at every BM25 weight, while
z-score fusion raised it (``bench/RESULTS-retriever.md``). The weight ``w`` is
per corpus: post-training calibrates it on held-out synthetic queries
(``indexer/posttrain.py``); until then ``DEFAULT_BM25_WEIGHT``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Candidates taken from each ranking before fusing. 32 fused as well as 100 on the stdlib set
# (MRR@10 0.4742 vs 0.4747 post-trained) and stays within the passages PLAID scores exactly.
FUSION_DEPTH = 32
# Uncalibrated corpora: BM25 as a light correction of ColBERT. On the stdlib set every weight
# from 0.05 to 0.3 beat ColBERT alone; with the code-aware terms 0.4 measured best there, and
# 0.1 still beats ColBERT on the validation sets (bench/RESULTS.md, issue 17).
DEFAULT_BM25_WEIGHT = 0.1


@dataclass
class BM25Index:
    """An in-memory bm25s index over passages; ``ids`` maps rows to passage ids."""

    ids: np.ndarray  # int64 [n]
    retriever: object | None  # bm25s.BM25, or None for an empty corpus

    @classmethod
    def build(cls, ids: list[int], texts: list[str]) -> BM25Index:
        import bm25s

        if not texts:
            return cls(np.zeros(0, np.int64), None)
        analyse = Analyzer()
        retriever = bm25s.BM25()
        retriever.index([analyse(t) for t in texts], show_progress=False)
        return cls(np.asarray(ids, np.int64), retriever)

    def search(self, queries: list[str], k: int,
               allowed_ids: np.ndarray | None = None) -> list[list[tuple[int, float]]]:
        """``k`` best (passage id, BM25 score) per query; passages with score 0 are left out."""
        if self.retriever is None:
            return [[] for _ in queries]
        analyse = Analyzer()
        out = []
        for query in queries:
            words = analyse(query)
            scores = self.retriever.get_scores(words) if words else np.zeros(len(self.ids))
            if allowed_ids is not None:
                scores = np.where(np.isin(self.ids, allowed_ids), scores, 0.0)
            top = np.argsort(-scores, kind="stable")[:k]
            out.append([(int(self.ids[i]), float(scores[i])) for i in top if scores[i] > 0])
        return out


# An identifier (``\w`` includes ``_`` and digits).
_NAME = re.compile(r"\w+")
# The words of an ASCII identifier: ``HTTPServer`` -> HTTP, Server; ``parse_url2`` -> parse,
# url, 2; ``getURLs`` -> get, URLs (an acronym's plural is one word).
_WORD = re.compile(r"[A-Z]{2,}s(?![a-z])|[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def terms(text: str, stem: Callable[[str], str] = str,
          stopwords: frozenset[str] = frozenset()) -> list[str]:
    """The BM25 terms of ``text``: each identifier's words, plus the identifier itself.

    Words (``parseUrl`` -> parse, url) are lowercased, stemmed, and dropped when shorter
    than 2 characters or a stopword, as bm25s does to plain words. A name of several
    words is also kept whole, its words joined by ``_`` and not stemmed, so ``parseUrl``,
    ``parse_url`` and ``ParseURL`` all give the term ``parse_url``: an exact identifier
    in a query outranks passages that merely use both words. Dotted names are split at
    the dots; keeping them whole too measured no better (``bench/RESULTS.md``).

    >>> terms("def parseUrl(self): return os.path.join(a, b)")
    ['def', 'parse', 'url', 'parse_url', 'self', 'return', 'os', 'path', 'join']
    """
    out: list[str] = []
    for name in _NAME.findall(text):
        words = [w.lower() for w in (_WORD.findall(name) if name.isascii() else name.split("_")) if w]
        out += [stem(w) for w in words if len(w) > 1 and w not in stopwords]
        if len(words) > 1:
            out.append("_".join(words))
    return out


class Analyzer:
    """``terms`` with the measured best settings: a Snowball stemmer, bm25s's English
    stopwords (``bench/bench_bm25.py``). Each distinct identifier is analysed once (a
    corpus repeats its names), so building costs about what bm25s's tokenizer does. One
    per build or search: PyStemmer objects are not thread-safe."""

    def __init__(self) -> None:
        import Stemmer
        from bm25s.stopwords import STOPWORDS_EN

        self._stem = Stemmer.Stemmer("english").stemWord
        self._stopwords = frozenset(STOPWORDS_EN)
        self._seen: dict[str, list[str]] = {}

    def __call__(self, text: str) -> list[str]:
        out: list[str] = []
        for name in _NAME.findall(text):
            found = self._seen.get(name)
            if found is None:
                found = self._seen[name] = terms(name, self._stem, self._stopwords)
            out += found
        return out


def fuse(dense: list[tuple[int, float]], sparse: list[tuple[int, float]], bm25_weight: float,
         k: int | None = None, pooled: dict[int, float] | None = None,
         pooled_weight: float = 0.0) -> list[tuple[int, float]]:
    """Z-score fusion of a ColBERT and a BM25 ranking of (id, score), best first.

    ``pooled``: a third score for *every* candidate (``indexer/pooled.py``), taking
    ``pooled_weight`` of the fused score; ColBERT and BM25 share the rest as
    ``bm25_weight`` says, so a corpus's calibrated BM25 weight keeps its meaning.

    >>> [p for p, _ in fuse([(1, 9.0), (2, 8.9), (3, 5.0)], [(2, 7.0), (3, 1.0)], 0.5)]
    [2, 1, 3]
    >>> [p for p, _ in fuse([(1, 9.0), (2, 8.9)], [(2, 7.0)], 0.0)]
    [1, 2]
    >>> [p for p, _ in fuse([(1, 9.0), (2, 8.9)], [(2, 7.0)], 0.0, None, {1: 0.1, 2: 0.9}, 0.6)]
    [2, 1]
    """
    def zscores(ranking: list[tuple[int, float]]) -> tuple[dict[int, float], float]:
        if not ranking:
            return {}, 0.0
        v = np.array([s for _, s in ranking], np.float64)
        z = (v - v.mean()) / (v.std() or 1.0)
        return dict(zip((p for p, _ in ranking), z.tolist())), float(z.min()) - 1.0

    (zd, floor_d), (zs, floor_s) = zscores(dense), zscores(sparse)
    fused = {p: (1 - bm25_weight) * zd.get(p, floor_d) + bm25_weight * zs.get(p, floor_s)
             for p in zd.keys() | zs.keys()}
    if pooled is not None and pooled_weight > 0:
        zp, _ = zscores([(p, pooled[p]) for p in fused])
        fused = {p: (1 - pooled_weight) * f + pooled_weight * zp[p] for p, f in fused.items()}
    best = sorted(fused.items(), key=lambda x: (-x[1], x[0]))
    return best[:k] if k is not None else best
