"""The shards of a sharded corpus served by Ray actors; a search fans out to all of them.

Each actor opens its shard's PLAID index from shared storage and reopens it when the
writer (the process that ran a sync) has committed, as ``Corpora.index`` does locally.
A dead actor is restarted by Ray (``max_restarts=-1``) and reloads its shard from storage.
Until it answers, searches fail with ``Unavailable`` (HTTP 503) rather than return the
other shards' hits: a top-k missing a third of the corpus looks like a normal answer to an
agent, which has no way to tell, whereas a 503 says "retry in a few seconds", which
clients and proxies already do (docs/scale-out.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from indexer.config import LibrarySettings
from indexer.distributed.cluster import connect
from indexer.errors import Unavailable
from indexer.index.base import ScoredPassage
from indexer.index.plaid.index import PlaidIndex

RETRY_AFTER_S = 5  # what the 503 suggests: a shard reload is seconds (bench/RESULTS.md)


class ShardServer:
    """The actor: one shard, reopened after each commit; empty until its first commit."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._key: tuple[int, int, int] | None = None
        self._index: PlaidIndex | None = None
        self._current()  # load now: a restarted actor is ready when it answers

    def _current(self) -> PlaidIndex | None:
        try:
            st = (self.path / "manifest.json").stat()
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._key or self._index is None:
            self._index, self._key = PlaidIndex.open(self.path), key
        return self._index

    def search(self, queries: list[np.ndarray], k: int, allowed_ids: np.ndarray | None,
               params: dict[str, Any]) -> list[list[ScoredPassage]]:
        index = self._current()
        if index is None:
            return [[] for _ in queries]
        return index.search(queries, k, allowed_ids, **params)

    def pid(self) -> int:
        """The actor's process (tests kill it to show the failure behaviour)."""
        return os.getpid()


class RayShards:
    """One actor per shard, spread over the nodes; owned by this process (each API replica
    holds its own set, dropped with it)."""

    def __init__(self, paths: list[Path], address: str, settings: LibrarySettings) -> None:
        self.ray = connect(address, settings)
        self.timeout = settings.ray_timeout_s
        remote = self.ray.remote(ShardServer).options(
            num_cpus=settings.ray_shard_cpus, max_restarts=-1, max_task_retries=0,
            scheduling_strategy="SPREAD")
        self.actors = [remote.remote(str(p)) for p in paths]

    def search(self, queries: list[np.ndarray], k: int, allowed_ids: np.ndarray | None,
               params: dict[str, Any]) -> list[list[list[ScoredPassage]]]:
        """Every shard's top ``k``; ``Unavailable`` when one is down or silent past the timeout."""
        from ray.exceptions import GetTimeoutError, RayActorError

        refs = [a.search.remote(queries, k, allowed_ids, params) for a in self.actors]
        deadline = time.monotonic() + self.timeout
        out = []
        for i, ref in enumerate(refs):
            try:
                out.append(self.ray.get(ref, timeout=max(0.0, deadline - time.monotonic())))
            except (RayActorError, GetTimeoutError) as exc:
                raise Unavailable(f"shard {i} of {len(refs)} is restarting or unreachable; "
                                  f"retry in {RETRY_AFTER_S}s", shard=i,
                                  retry_after_s=RETRY_AFTER_S,
                                  reason=type(exc).__name__) from None
        return out
