"""Retrieval quality on a set with one target span per query (the stdlib code-search set).

A hit is a returned passage of the query's file whose line span overlaps the
target's lines. Every benchmark turns its results into ``(path, start, end)``
spans, best first, and scores them here, so all report the same MRR@10.

>>> q = {"path": "a.py", "start_line": 10, "end_line": 12}
>>> reciprocal_ranks([[("b.py", 1, 30), ("a.py", 1, 10)]], [q]).tolist()
[0.5]
>>> metrics([[("a.py", 13, 40)], [("a.py", 5, 11)]], [q, q])
{'R@10': 0.5, 'MRR@10': 0.5, 'nDCG@10': 0.5}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Span = tuple[str, int, int]
Query = dict[str, Any]  # text, path, start_line, end_line


def first_hit(spans: Sequence[Span], query: Query, k: int = 10) -> int | None:
    """0-based rank of the first span overlapping the query's target in the top ``k``."""
    for rank, (path, start, end) in enumerate(spans[:k]):
        if path == query["path"] and start <= query["end_line"] and end >= query["start_line"]:
            return rank
    return None


def reciprocal_ranks(ranked: Sequence[Sequence[Span]], queries: Sequence[Query],
                     k: int = 10) -> np.ndarray:
    """Per query: 1 / rank of its first hit in the top ``k``, 0 without one."""
    ranks = [first_hit(spans, q, k) for spans, q in zip(ranked, queries)]
    return np.array([0.0 if r is None else 1.0 / (r + 1) for r in ranks])


def metrics(ranked: Sequence[Sequence[Span]], queries: Sequence[Query], k: int = 10) -> dict[str, float]:
    """Recall, MRR and nDCG at ``k`` (one relevant target per query), as floats."""
    ranks = [first_hit(spans, q, k) for spans, q in zip(ranked, queries)]
    found = [r for r in ranks if r is not None]
    n = len(queries)
    return {f"R@{k}": len(found) / n, f"MRR@{k}": float(sum(1 / (r + 1) for r in found) / n),
            f"nDCG@{k}": float(sum(1 / np.log2(r + 2) for r in found) / n)}


def overlap(a: Sequence[Sequence[Any]], b: Sequence[Sequence[Any]], k: int = 10) -> float:
    """Mean share of ``b``'s top ``k`` that ``a``'s top ``k`` also holds (``b`` the reference)."""
    return float(np.mean([len(set(x[:k]) & set(y[:k])) / max(min(len(y), k), 1)
                          for x, y in zip(a, b)]))
