"""Multi-vector indexes behind one interface (``base.MultiVectorIndex``).

``plaid`` (compressed, the default) and ``exact`` (float16, exhaustive: the oracle).
``open_index`` reads the manifest to tell which engine wrote a directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from indexer.errors import IndexCorrupt, InvalidInput
from indexer.index.base import MultiVectorIndex, ScoredPassage

ENGINES = ("plaid", "exact")

__all__ = ["ENGINES", "MultiVectorIndex", "ScoredPassage", "create_index", "open_index"]


def create_index(path: Path, dim: int, engine: str = "plaid", nbits: int = 2,
                 shards: int = 1) -> MultiVectorIndex:
    """``shards`` > 1: PLAID indexes by document (``indexer/distributed/sharded.py``)."""
    if shards > 1:
        if engine != "plaid":
            raise InvalidInput("only the plaid engine can be sharded")
        from indexer.distributed.sharded import ShardedIndex

        return ShardedIndex.create(path, dim, shards, nbits)
    if engine == "plaid":
        from indexer.index.plaid import PlaidIndex

        return PlaidIndex.create(path, dim, nbits=nbits)
    if engine == "exact":
        from indexer.index.exact import ExactIndex

        return ExactIndex.create(path, dim)
    raise InvalidInput(f"unknown index engine {engine!r} (choose from {', '.join(ENGINES)})")


def open_index(path: Path) -> MultiVectorIndex:
    try:
        kind = json.loads((Path(path) / "manifest.json").read_text()).get("format")
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(f"index at {path} has no readable manifest: {exc}") from exc
    if kind == "exact":
        from indexer.index.exact import ExactIndex

        return ExactIndex.open(path)
    if kind == "sharded":
        from indexer.distributed.sharded import ShardedIndex

        return ShardedIndex.open(path)
    from indexer.index.plaid import PlaidIndex

    return PlaidIndex.open(path)
