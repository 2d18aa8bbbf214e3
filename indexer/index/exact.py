"""Exact multi-vector index: float16 token vectors, exhaustive MaxSim.

The oracle for the compressed engine, and the default until it lands. Layout
(see ``docs/FORMAT.md``): each commit writes one immutable segment
(``seg-<n>.ids.npy``, ``seg-<n>.offsets.npy``, ``seg-<n>.vectors.npy``) plus
per-segment tombstones, then swaps ``manifest.json`` atomically. Readers hold
the manifest they opened, so a commit never changes what they see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer import durable
from indexer.errors import IndexCorrupt, InvalidInput
from indexer.index.base import MultiVectorIndex, ScoredPassage

FORMAT_VERSION = 1
SCORE_BLOCK_TOKENS = 1 << 20  # token vectors scored per block: bounds peak memory


@dataclass
class _Segment:
    name: str
    ids: np.ndarray  # int64 [n]
    offsets: np.ndarray  # int64 [n + 1], token offsets into vectors
    vectors: np.ndarray  # float16 [n_tokens, dim], memory-mapped
    deleted: np.ndarray  # bool [n]


class ExactIndex(MultiVectorIndex):
    def __init__(self, path: Path, dim: int, generation: int, segments: list[_Segment]) -> None:
        self.path = path
        self.dim = dim
        self.generation = generation
        self.segments = segments

    @classmethod
    def create(cls, path: Path, dim: int) -> ExactIndex:
        durable.make_dirs(path)
        if (path / "manifest.json").exists():
            raise InvalidInput(f"an index already exists at {path}")
        manifest = {"format": "exact", "version": FORMAT_VERSION, "dim": dim,
                    "generation": 0, "segments": []}
        durable.write_json(path / "manifest.json", manifest)
        return cls(path, dim, 0, [])

    @classmethod
    def open(cls, path: Path) -> ExactIndex:
        try:
            manifest = json.loads((path / "manifest.json").read_text())
            dim = int(manifest["dim"])
            segments = []
            for entry in manifest["segments"]:
                name = entry["name"]
                ids = np.load(path / f"{name}.ids.npy")
                offsets = np.load(path / f"{name}.offsets.npy")
                vectors = np.load(path / f"{name}.vectors.npy", mmap_mode="r")
                deleted = np.zeros(len(ids), dtype=bool)
                if entry.get("tombstones"):
                    deleted = np.load(path / entry["tombstones"])
                if (len(offsets) != len(ids) + 1 or offsets[-1] != vectors.shape[0]
                        or vectors.shape[1] != dim or len(deleted) != len(ids)):
                    raise IndexCorrupt(f"segment {name} of {path} has inconsistent shapes")
                segments.append(_Segment(name, ids, offsets, vectors, deleted))
        except FileNotFoundError as exc:
            raise IndexCorrupt(f"index at {path} is missing a file: {exc.filename}") from exc
        except (ValueError, KeyError, OSError) as exc:
            raise IndexCorrupt(f"index at {path} cannot be read: {exc}") from exc
        return cls(path, dim, int(manifest["generation"]), segments)

    def commit(self, add_ids: np.ndarray, add_vectors: list[np.ndarray], delete_ids: np.ndarray,
               merge: bool = True) -> None:
        add_ids = np.asarray(add_ids, dtype=np.int64)
        if len(add_ids) != len(add_vectors):
            raise InvalidInput("add_ids and add_vectors differ in length")
        for v in add_vectors:
            if v.ndim != 2 or v.shape[1] != self.dim:
                raise InvalidInput(f"vectors must be [n, {self.dim}], got {v.shape}")
        generation = self.generation + 1
        remove = np.union1d(np.asarray(delete_ids, dtype=np.int64), add_ids)
        entries, segments = [], []
        for seg in self.segments:
            hit = np.isin(seg.ids, remove) & ~seg.deleted
            deleted = seg.deleted | hit
            if deleted.all():
                continue  # nothing live: drop the segment from the manifest
            entry: dict[str, str | None] = {"name": seg.name, "tombstones": None}
            if deleted.any():
                tombstones = f"{seg.name}.del-{generation}.npy"
                entry["tombstones"] = tombstones
                durable.write_npy(self.path / tombstones, deleted, fresh=True)
            entries.append(entry)
            segments.append(_Segment(seg.name, seg.ids, seg.offsets, seg.vectors, deleted))
        if len(add_ids):
            name = f"seg-{generation}"
            lengths = np.array([len(v) for v in add_vectors], dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            vectors = np.concatenate(add_vectors).astype(np.float16, copy=False) if len(add_vectors) else \
                np.zeros((0, self.dim), np.float16)
            durable.write_npy(self.path / f"{name}.ids.npy", add_ids, fresh=True)
            durable.write_npy(self.path / f"{name}.offsets.npy", offsets, fresh=True)
            durable.write_npy(self.path / f"{name}.vectors.npy", vectors, fresh=True)
            entries.append({"name": name, "tombstones": None})
            segments.append(_Segment(name, add_ids, offsets, vectors, np.zeros(len(add_ids), bool)))
        manifest = {"format": "exact", "version": FORMAT_VERSION, "dim": self.dim,
                    "generation": generation, "segments": entries}
        durable.write_json(self.path / "manifest.json", manifest)  # fsyncs the new files' names too
        self.generation, self.segments = generation, segments
        self._remove_unreferenced(entries)

    def _remove_unreferenced(self, entries: list[dict[str, Any]]) -> None:
        """Delete files no manifest names; readers that mmap them keep their inode."""
        keep = {"manifest.json"}
        for e in entries:
            keep |= {f"{e['name']}.ids.npy", f"{e['name']}.offsets.npy", f"{e['name']}.vectors.npy"}
            if e["tombstones"]:
                keep.add(e["tombstones"])
        durable.remove_all([f for f in self.path.iterdir()
                            if f.name not in keep and not f.name.endswith(".tmp")])

    def search(self, queries: list[np.ndarray], k: int, allowed_ids: np.ndarray | None = None,
               **params: int) -> list[list[ScoredPassage]]:
        results: list[list[ScoredPassage]] = []
        for q in queries:
            q = np.asarray(q, dtype=np.float32)
            all_ids, all_scores = [], []
            for seg in self.segments:
                live = ~seg.deleted
                if allowed_ids is not None:
                    live &= np.isin(seg.ids, allowed_ids)
                if not live.any():
                    continue
                scores = maxsim_segment(q, seg.vectors, seg.offsets)
                all_ids.append(seg.ids[live])
                all_scores.append(scores[live])
            if not all_ids:
                results.append([])
                continue
            ids, scores = np.concatenate(all_ids), np.concatenate(all_scores)
            top = np.argsort(-scores, kind="stable")[:k]
            results.append([ScoredPassage(int(ids[i]), float(scores[i])) for i in top])
        return results

    def passage_ids(self) -> np.ndarray:
        live = [seg.ids[~seg.deleted] for seg in self.segments]
        return np.sort(np.concatenate(live)) if live else np.zeros(0, np.int64)

    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())

    def vectors_of(self, passage_id: int) -> np.ndarray:
        """The stored float16 vectors of one live passage (for tests and the oracle)."""
        for seg in self.segments:
            where = np.nonzero((seg.ids == passage_id) & ~seg.deleted)[0]
            if len(where):
                i = where[0]
                return np.asarray(seg.vectors[seg.offsets[i] : seg.offsets[i + 1]])
        raise KeyError(passage_id)


def maxsim_segment(query: np.ndarray, vectors: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """MaxSim of one query against every passage of a segment.

    query [q, dim] float32, vectors [n_tokens, dim], offsets [n + 1] -> scores [n].

    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    >>> v = np.array([[1, 0], [0.6, 0.8], [0, 1]], dtype=np.float16)
    >>> [round(float(s), 2) for s in maxsim_segment(q, v, np.array([0, 2, 3]))]
    [1.8, 1.0]
    """
    n = len(offsets) - 1
    best = np.full((query.shape[0], n), -np.inf, dtype=np.float32)
    lengths = np.diff(offsets)
    owner = np.repeat(np.arange(n), lengths)  # passage of each token
    for start in range(0, int(offsets[-1]), SCORE_BLOCK_TOKENS):
        block = np.asarray(vectors[start : start + SCORE_BLOCK_TOKENS], dtype=np.float32)
        sims = query @ block.T  # (q, block_tokens)
        _segment_max(best, sims, owner[start : start + len(block)])
    best[:, lengths == 0] = 0.0
    return np.asarray(best.sum(axis=0))


def _segment_max(best: np.ndarray, sims: np.ndarray, owner: np.ndarray) -> None:
    """best[:, p] = max(best[:, p], max of sims[:, tokens of p]) for the passages in ``owner``."""
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    block_max = np.maximum.reduceat(sims, starts, axis=1)  # (q, passages in block)
    cols = owner[starts]
    best[:, cols] = np.maximum(best[:, cols], block_max)
