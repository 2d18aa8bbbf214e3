"""The one interface every multi-vector index implements.

A corpus owns one index directory. Passage ids are int64s assigned by the store
and never change; the index maps them to token-vector bags. ``commit`` applies
additions and deletions as one atomic step: a reader that opened the index
before (or during) a commit keeps seeing the previous state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.progress import Progress


@dataclass(frozen=True)
class ScoredPassage:
    passage_id: int
    score: float


class MultiVectorIndex(ABC):
    """Late-interaction index over bags of L2-normalised token vectors.

    Implementations: ``ExactIndex`` (float16 vectors, exhaustive MaxSim, the oracle)
    and the compressed PLAID engine.
    """

    dim: int
    # Set by the corpus layer around a commit: the engine reports its slow stages through it.
    progress: Progress | None = None

    @classmethod
    @abstractmethod
    def create(cls, path: Path, dim: int) -> MultiVectorIndex:
        """Make a new empty index at ``path`` (a directory that must not hold an index)."""

    @classmethod
    @abstractmethod
    def open(cls, path: Path) -> MultiVectorIndex:
        """Open the last committed state at ``path``; raises ``IndexCorrupt`` on bad files."""

    @abstractmethod
    def commit(
        self,
        add_ids: np.ndarray,
        add_vectors: list[np.ndarray],
        delete_ids: np.ndarray,
        merge: bool = True,
    ) -> None:
        """Atomically delete ``delete_ids`` and add ``add_ids`` (int64, shape [n]) with
        their vectors (each float32 [n_tokens, dim], L2-normalised). An id may be in
        both lists: the old vectors are replaced. ``merge=False``: leave the engine's
        housekeeping to a later ``merge()``."""

    def needs_merge(self) -> bool:
        """Whether ``merge()`` has work to do now."""
        return False

    def merge(self, publish_lock: Callable[[], AbstractContextManager[None]] | None = None) -> int:
        """Housekeeping after commits (merges); returns how many were published.
        ``publish_lock``: held only while the result is published (the corpus writer lock)."""
        return 0

    def optimize(self, publish_lock: Callable[[], AbstractContextManager[None]] | None = None) -> int:
        """Rewrite the index in its most compact, fastest form (an operator's request)."""
        return 0

    @abstractmethod
    def search(
        self,
        queries: list[np.ndarray],
        k: int,
        allowed_ids: np.ndarray | None = None,
        **params: int,
    ) -> list[list[ScoredPassage]]:
        """For each query ([q_tokens, dim] float32), the ``k`` best passages by MaxSim,
        best first. ``allowed_ids`` (sorted int64) restricts the candidates (filters).
        ``params``: engine knobs (PLAID's ``nprobe``, ``candidates``); an engine ignores
        the ones it does not have."""

    @abstractmethod
    def passage_ids(self) -> np.ndarray:
        """Ids of the live passages, sorted int64."""

    @abstractmethod
    def nbytes(self) -> int:
        """Bytes on disk of the committed state."""
