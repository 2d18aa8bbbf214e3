"""Exhaustive MaxSim in float32: the reference rankings the engines are measured against.

>>> bags = [np.array([[1.0, 0.0]], np.float32), np.array([[0.0, 1.0], [0.6, 0.8]], np.float32)]
>>> maxsim_scores([np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)], bags).astype(float).round(2).tolist()
[[1.0, 1.6]]
>>> [(h.passage_id, round(h.score, 2)) for h in top_k([np.array([[0.0, 1.0]], np.float32)], bags, 2)[0]]
[(1, 1.0), (0, 0.0)]
"""

from __future__ import annotations

import numpy as np
import torch

from indexer.index.base import ScoredPassage


def maxsim_scores(queries: list[np.ndarray], bags: list[np.ndarray]) -> np.ndarray:
    """[n_queries, n_bags]: the sum over each query's tokens of its best dot product in the
    bag. All queries' tokens go through one matmul per bag."""
    stacked = torch.from_numpy(np.concatenate(queries)).float()  # [all query tokens, dim]
    owner = torch.repeat_interleave(torch.tensor([len(q) for q in queries]))
    cols = []
    for bag in bags:
        best = (stacked @ torch.from_numpy(bag).float().T).max(dim=1).values
        cols.append(torch.zeros(len(queries)).index_add_(0, owner, best))
    return torch.stack(cols, dim=1).numpy()


def top_k(queries: list[np.ndarray], bags: list[np.ndarray], k: int = 10) -> list[list[ScoredPassage]]:
    """Each query's ``k`` best bags by MaxSim; a bag's id is its position, ties go to the lower."""
    scores = maxsim_scores(queries, bags)
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[:k]
        out.append([ScoredPassage(int(i), float(row[i])) for i in order])
    return out
