"""Seeded clustered token vectors for PLAID tests, and a numpy MaxSim oracle."""

from __future__ import annotations

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def corpus(n: int, dim: int, seed: int = 0, topics: int = 64, spread: float = 0.5,
           tokens: tuple[int, int] = (8, 40)) -> list[np.ndarray]:
    """``n`` bags of unit vectors; each passage mixes tokens from two topic clusters."""
    rng = np.random.default_rng(seed)
    centers = unit(rng.standard_normal((topics, dim)))
    bags = []
    for _ in range(n):
        t = rng.choice(topics, 2)
        m = int(rng.integers(*tokens))
        base = centers[rng.choice(t, m)]
        bags.append(unit(base + spread * rng.standard_normal((m, dim)) / np.sqrt(dim) * 4))
    return bags


def queries(bags: list[np.ndarray], n: int, seed: int = 1, noise: float = 0.3) -> list[np.ndarray]:
    """Noisy subsets of the tokens of random passages."""
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(len(bags), n, replace=False):
        b = bags[i][rng.choice(len(bags[i]), min(8, len(bags[i])), replace=False)]
        out.append(unit(b + noise * rng.standard_normal(b.shape) / np.sqrt(b.shape[1]) * 4))
    return out


def exact_topk(q: np.ndarray, ids: np.ndarray, bags: list[np.ndarray], k: int) -> list[int]:
    """Oracle: exhaustive MaxSim over float vectors, ties broken by id."""
    scores = np.array([(q @ b.T).max(1).sum() for b in bags])
    order = np.lexsort((ids, -scores))[:k]
    return [int(ids[i]) for i in order]
