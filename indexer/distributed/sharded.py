"""A corpus index split into shards by document: each shard a PLAID index of its own.

Layout of the corpus's index directory (docs/scale-out.md)::

    manifest.json      {"format": "sharded", "shards": S, "dim", "nbits"}
    codec-seed/        the codec every shard starts from (a PLAID index with no segments)
    shard-000/ ...     PLAID indexes, made by the first commit that routes a document there

A document's passages live in shard ``sha256(doc_id) mod S`` (stable: a sync routes each
changed document to the shard that holds it). The first commit trains one codec on all of
its passages, the codec an unsharded build of them would get (same content-defined sample,
same seed), and every shard starts from it: so a shard compresses a passage to the bytes
the unsharded index would and MaxSim scores are equal across layouts, not only
comparable. Later each shard follows PLAID's refit rule on its own content.

Searches go to every shard (in-process, or to Ray actors when ``MEMEX_RAY_ADDRESS`` is set:
``shard_actors.py``) and the top ``k`` of their top ``k`` lists is the corpus's top ``k``.
Commits always run where the sync runs, shard by shard; each is atomic, and a crash between
two is finished by the corpus's redo record (an add of a present id replaces it, a delete of
an absent one is ignored, so replaying a whole change is safe). A reader can see one shard
before and another after a change of several documents; one document is always whole.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from indexer import durable
from indexer.config import current
from indexer.errors import IndexCorrupt, InvalidInput
from indexer.index.base import MultiVectorIndex, ScoredPassage
from indexer.index.plaid.codec import Codec, n_centroids_for
from indexer.index.plaid.index import DEFAULT_KEEP_VECTORS, PlaidIndex
from indexer.index.plaid.manifest import Manifest
from indexer.index.plaid.merge import StackedRows
from indexer.index.plaid.originals import Rounded, form_of
from indexer.index.plaid.refit import TRAIN_POINTS_PER_CENTROID, token_hash

FORMAT = "sharded"
SEED = "codec-seed"


def shard_of(doc_key: str, shards: int) -> int:
    """The shard of a document: stable across processes, machines and Python versions.

    >>> [shard_of(k, 3) for k in ("a.py", "b.py", "c.py")]
    [1, 0, 1]
    """
    return int.from_bytes(hashlib.sha256(doc_key.encode()).digest()[:8], "big") % shards


def merge_top_k(per_shard: list[list[list[ScoredPassage]]], k: int) -> list[list[ScoredPassage]]:
    """Per query, the ``k`` best of the shards' lists: best score first, ties by id (as PLAID)."""
    out = []
    for lists in zip(*per_shard):
        hits = [h for found in lists for h in found]
        out.append(sorted(hits, key=lambda h: (-h.score, h.passage_id))[:k])
    return out


def seed_codec(ids: np.ndarray, vectors: list[np.ndarray], nbits: int) -> Codec:
    """The codec ``PlaidIndex`` trains for a fresh build of these passages: tokens picked by
    ``token_hash`` below the same rate, in (passage id, position) order, k-means seed 0."""
    doclens = np.array([len(v) for v in vectors], dtype=np.int64)
    total = int(doclens.sum())
    n_centroids = n_centroids_for(total)
    h, key = token_hash(ids, doclens)
    picked = np.flatnonzero(h < TRAIN_POINTS_PER_CENTROID * n_centroids / total)
    rows: StackedRows | Rounded = StackedRows(vectors)  # never joins the commit
    if form_of(DEFAULT_KEEP_VECTORS) == "int8":  # what a shard stores, compresses and trains on
        rows = Rounded(rows)
    sample = np.asarray(rows[picked], dtype=np.float32)
    return Codec.train(sample[np.argsort(key[picked], kind="stable")], nbits, n_centroids, seed=0)


class LocalShard:
    """One shard's PLAID index in this process, reopened when another process committed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int, int] | None = None
        self._index: PlaidIndex | None = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = (self.path / "manifest.json").stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def index(self) -> PlaidIndex | None:
        """The committed index, None while the shard holds nothing yet."""
        key = self._stat()
        if key is None:
            return None
        if key != self._key or self._index is None:
            self._index, self._key = PlaidIndex.open(self.path), key
        return self._index

    def writable(self, dim: int, nbits: int, seed: Path) -> PlaidIndex:
        index = self.index()
        if index is None:
            if self.path.exists():  # left by a creation that crashed before its manifest
                durable.remove(self.path)
            index = PlaidIndex.create(self.path, dim, nbits, codec_from=seed)
            self._index, self._key = index, self._stat()
        return index

    def committed(self) -> None:
        """This process's own commit changed the manifest: no need to reopen."""
        self._key = self._stat()


class ShardedIndex(MultiVectorIndex):
    """S PLAID indexes behind the one-index interface; ``commit`` needs each added
    passage's document (``doc_keys``), which ``commit_documents`` passes."""

    def __init__(self, path: Path, meta: dict[str, Any], remote: Any = None) -> None:
        self.path = Path(path)
        self.shards, self.dim, self.nbits = int(meta["shards"]), int(meta["dim"]), int(meta["nbits"])
        self.local = [LocalShard(self.shard_dir(i)) for i in range(self.shards)]
        self.remote = remote  # shard_actors.RayShards: searches go there
        self.progress: Callable[[str, int, int], None] | None = None

    def shard_dir(self, i: int) -> Path:
        return self.path / f"shard-{i:03d}"

    @classmethod
    def create(cls, path: Path, dim: int, shards: int = 2, nbits: int = 2) -> ShardedIndex:
        path = Path(path)
        if (path / "manifest.json").exists():
            raise InvalidInput(f"an index already exists at {path}")
        if not 1 <= shards <= 64:
            raise InvalidInput("shards must be between 1 and 64")
        if nbits not in (1, 2, 4) or dim * nbits % 8:
            raise InvalidInput(f"unsupported dim/nbits {dim}/{nbits}")
        durable.make_dirs(path)
        meta = {"format": FORMAT, "version": 1, "shards": shards, "dim": dim, "nbits": nbits}
        durable.write_json(path / "manifest.json", meta)
        return cls(path, meta)

    @classmethod
    def open(cls, path: Path) -> ShardedIndex:
        """Open the index; with ``MEMEX_RAY_ADDRESS`` set, its shards are served by actors."""
        path = Path(path)
        try:
            meta = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise IndexCorrupt(f"sharded index at {path} has no readable manifest: {exc}") from exc
        index = cls(path, meta)
        settings = current()
        if settings.ray_address:
            from indexer.distributed.shard_actors import RayShards

            index.remote = RayShards([index.shard_dir(i) for i in range(index.shards)],
                                     settings.ray_address, settings)
        return index

    # ---- writing -------------------------------------------------------------------------

    def _seed(self, add_ids: np.ndarray, add_vectors: list[np.ndarray]) -> Path:
        """The shared codec, trained by the first commit that adds passages."""
        seed = self.path / SEED
        if not (seed / "manifest.json").exists():
            if seed.exists():
                durable.remove(seed)  # a seed whose writing crashed
            codec = seed_codec(add_ids, add_vectors, self.nbits)
            durable.make_dirs(seed / "segments")
            durable.make_dirs(seed / "tombstones")
            codec.save(seed / "codecs" / "c000000")
            tokens = sum(len(v) for v in add_vectors)
            Manifest(dim=self.dim, nbits=self.nbits, codecs=["c000000"], codec_tokens=tokens).write(seed)
        return seed

    def commit(self, add_ids: np.ndarray, add_vectors: list[np.ndarray], delete_ids: np.ndarray,
               merge: bool = True, doc_keys: Sequence[str] | None = None) -> None:
        """Route each added passage to its document's shard; deletes go wherever the id lives."""
        add_ids = np.asarray(add_ids, dtype=np.int64)
        delete_ids = np.asarray(delete_ids, dtype=np.int64)
        if len(add_ids) and (doc_keys is None or len(doc_keys) != len(add_ids)):
            raise InvalidInput("a sharded index needs the document of each added passage")
        route = np.array([shard_of(k, self.shards) for k in doc_keys or []], dtype=np.int64)
        seed = self._seed(add_ids, add_vectors) if len(add_ids) else None
        for i, shard in enumerate(self.local):
            mine = np.flatnonzero(route == i)
            existing = shard.index()
            gone = delete_ids[np.isin(delete_ids, existing.passage_ids())] if existing else delete_ids[:0]
            if not len(mine) and not len(gone):
                continue
            index = shard.writable(self.dim, self.nbits, seed) if seed else existing
            assert index is not None  # deletes only reach shards that hold them
            index.progress = self.progress
            try:
                index.commit(add_ids[mine], [add_vectors[j] for j in mine], gone, merge=merge)
            finally:
                index.progress = None
            shard.committed()

    def _open_shards(self) -> list[PlaidIndex]:
        return [ix for ix in (s.index() for s in self.local) if ix is not None]

    def needs_merge(self) -> bool:
        return any(ix.needs_merge() for ix in self._open_shards())

    def merge(self, publish_lock: Callable[[], AbstractContextManager] | None = None) -> int:
        return sum(ix.merge(publish_lock) for ix in self._open_shards())

    def optimize(self, publish_lock: Callable[[], AbstractContextManager] | None = None) -> int:
        """Each shard on its own (it may retrain a codec on its own passages: docs/scale-out.md)."""
        return sum(ix.optimize(publish_lock) for ix in self._open_shards())

    # ---- reading -------------------------------------------------------------------------

    def search(self, queries: list[np.ndarray], k: int, allowed_ids: np.ndarray | None = None,
               **params: int) -> list[list[ScoredPassage]]:
        if k < 1:
            raise InvalidInput("k must be >= 1")
        knobs: dict[str, Any] = dict(params)  # PLAID's nprobe, candidates, decompress
        if self.remote is not None:
            per_shard = self.remote.search(queries, k, allowed_ids, knobs)
        else:
            per_shard = [ix.search(queries, k, allowed_ids, **knobs) for ix in self._open_shards()]
        return merge_top_k(per_shard, k) if per_shard else [[] for _ in queries]

    def passage_ids(self) -> np.ndarray:
        parts = [ix.passage_ids() for ix in self._open_shards()]
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)

    def nbytes(self) -> int:
        return sum(ix.nbytes() for ix in self._open_shards())


def commit_documents(index: MultiVectorIndex, add_ids: np.ndarray, add_vectors: list[np.ndarray],
                     delete_ids: np.ndarray, doc_keys: Sequence[str], merge: bool = True) -> None:
    """``index.commit``, telling a sharded index which document each added passage is from."""
    if isinstance(index, ShardedIndex):
        index.commit(add_ids, add_vectors, delete_ids, merge=merge, doc_keys=doc_keys)
    else:
        index.commit(add_ids, add_vectors, delete_ids, merge=merge)
