"""``PlaidIndex``: the compressed, segmented ``MultiVectorIndex``.

Layout (see FORMAT.md): ``manifest.json``, ``codecs/<name>/``, ``segments/<name>/``,
``tombstones/<segment>.<generation>.npy``. A commit writes new files under
fresh names, then swaps the manifest; the in-memory snapshot is replaced only
after that, so a search running on the old snapshot finishes on it.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from indexer import durable
from indexer.errors import Conflict, InvalidInput
from indexer.index.base import MultiVectorIndex, ScoredPassage
from indexer.index.plaid.codec import Codec, n_centroids_for, token_norms
from indexer.index.plaid.manifest import FaultHook, Manifest, SegmentEntry, collect_garbage
from indexer.index.plaid.merge import MergePolicy, TieredMerge, merge_segments, write_sorted
from indexer.index.plaid.search import (CodecTensors, SearchParams, exhaustive_segment, query_tables,
                                        search_segment)
from indexer.index.plaid.segment import Segment, read_tombstones

REFIT_RATIO = 1.5  # retrain when new vectors' residual MSE exceeds the codec's training MSE by this
REFIT_MIN_TOKENS = 4096  # ...and the commit brings at least this many tokens to train on
TRAIN_POINTS_PER_CENTROID = 64  # k-means sample size; 32 raised held-out residual MSE by 13% on stdlib


@dataclass
class Snapshot:
    """Everything one search needs, immutable once built."""

    manifest: Manifest
    codecs: dict[str, CodecTensors]
    segments: list[Segment]
    dead: list[torch.Tensor]  # per segment, bool [n_passages] tombstones


class PlaidIndex(MultiVectorIndex):
    """PLAID-style engine. Not safe for concurrent writers; any number of readers."""

    def __init__(self, path: Path, device: str | torch.device = "cpu",
                 merge_policy: MergePolicy | None = None, params: SearchParams | None = None) -> None:
        self.path = Path(path)
        self.device = torch.device(device)
        self.merge_policy = merge_policy or TieredMerge()
        self.params = params or SearchParams()
        self.fault_hook: FaultHook | None = None  # tests only: called at each commit stage
        self._lock = threading.Lock()
        self._snap = self._load(Manifest.read(self.path))

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self._snap.manifest.dim

    @classmethod
    def create(cls, path: Path, dim: int, nbits: int = 2, codec_from: Path | None = None,
               **kwargs) -> "PlaidIndex":
        """New empty index. ``codec_from``: reuse another index's current codec."""
        path = Path(path)
        if (path / "manifest.json").exists():
            raise Conflict(f"an index already exists at {path}")
        if nbits not in (1, 2, 4) or dim * nbits % 8:
            raise InvalidInput(f"unsupported dim/nbits {dim}/{nbits}")
        for sub in ("codecs", "segments", "tombstones"):
            durable.make_dirs(path / sub)
        manifest = Manifest(dim=dim, nbits=nbits)
        if codec_from is not None:
            src = Manifest.read(Path(codec_from))
            codec = Codec.load(Path(codec_from) / "codecs" / src.codecs[-1])
            if codec.dim != dim or codec.nbits != nbits:
                raise InvalidInput("codec_from has another dim or nbits")
            codec.save(path / "codecs" / "c000000")
            manifest.codecs.append("c000000")
        manifest.write(path)
        return cls(path, **kwargs)

    @classmethod
    def open(cls, path: Path, **kwargs) -> "PlaidIndex":
        return cls(Path(path), **kwargs)

    # ---- reading -------------------------------------------------------------------------

    def _load(self, m: Manifest, reuse: Snapshot | None = None) -> Snapshot:
        old_segs = {s.name: s for s in reuse.segments} if reuse else {}
        codecs = dict(reuse.codecs) if reuse else {}
        for name in m.codecs:
            if name not in codecs:
                c = Codec.load(self.path / "codecs" / name)
                codecs[name] = CodecTensors(torch.from_numpy(c.centroids).to(self.device),
                                            torch.from_numpy(c.decode_table()).to(self.device))
        segments, dead = [], []
        for e in m.segments:
            seg = old_segs.get(e.name) or Segment.open(self.path / "segments" / e.name, self.device)
            if seg.norms is None:  # a format-1 segment: computed once per open (~1 s per 3M tokens)
                c = codecs[e.codec]
                seg.norms = torch.from_numpy(token_norms(seg.codes.cpu(), seg.residuals.cpu(),
                                                         c.centroids.cpu(), c.table.cpu())).to(self.device)
            mask = read_tombstones(self.path / "tombstones" / e.tombstones, e.n_passages) \
                if e.tombstones else np.zeros(e.n_passages, dtype=bool)
            segments.append(seg)
            dead.append(torch.from_numpy(mask).to(self.device))
        return Snapshot(m, {n: codecs[n] for n in m.codecs}, segments, dead)

    def passage_ids(self) -> np.ndarray:
        snap = self._snap
        ids = [np.asarray(s.pids)[~d.cpu().numpy()] for s, d in zip(snap.segments, snap.dead)]
        return np.sort(np.concatenate(ids)) if ids else np.empty(0, dtype=np.int64)

    def nbytes(self) -> int:
        snap, total = self._snap, (self.path / "manifest.json").stat().st_size
        total += sum(s.nbytes for s in snap.segments)
        for name in snap.manifest.codecs:
            total += sum(f.stat().st_size for f in (self.path / "codecs" / name).iterdir())
        for e in snap.manifest.segments:
            if e.tombstones:
                total += (self.path / "tombstones" / e.tombstones).stat().st_size
        return total

    def search(self, queries: list[np.ndarray], k: int, allowed_ids: np.ndarray | None = None,
               nprobe: int | None = None, candidates: int | None = None,
               decompress: int | None = None, exhaustive: bool = False) -> list[list[ScoredPassage]]:
        """MaxSim top ``k`` per query. ``nprobe``/``candidates``/``decompress`` override the
        defaults for this call; ``exhaustive=True`` scores every decompressed passage (the oracle)."""
        if k < 1:
            raise InvalidInput("k must be >= 1")
        params = replace(self.params, **{n: v for n, v in (("nprobe", nprobe), ("candidates", candidates),
                                                           ("decompress", decompress)) if v})
        snap = self._snap
        masks = []
        for seg, dead in zip(snap.segments, snap.dead):
            ok = ~dead
            if allowed_ids is not None:
                ok &= torch.from_numpy(np.isin(np.asarray(seg.pids), allowed_ids)).to(self.device)
            masks.append(ok)
        out = []
        for q in queries:
            if q.ndim != 2 or q.shape[1] != self.dim:
                raise InvalidInput(f"query must be [n, {self.dim}], got {q.shape}")
            qt = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32)).to(self.device)
            tables = {name: query_tables(qt, c) for name, c in snap.codecs.items()}
            scores, pids = [], []
            for seg, ok in zip(snap.segments, masks):
                if exhaustive:
                    s, local = exhaustive_segment(tables[seg.codec], seg, ok, k)
                else:
                    s, local = search_segment(tables[seg.codec], seg, ok, k, params)
                scores.append(s.cpu().numpy())
                pids.append(np.asarray(seg.pids)[local.cpu().numpy()])
            s_all = np.concatenate(scores) if scores else np.empty(0)
            p_all = np.concatenate(pids) if pids else np.empty(0, dtype=np.int64)
            order = np.lexsort((p_all, -s_all))[:k]  # ties broken by id: deterministic
            out.append([ScoredPassage(int(p_all[i]), float(s_all[i])) for i in order])
        return out

    # ---- writing -------------------------------------------------------------------------

    def commit(self, add_ids: np.ndarray, add_vectors: list[np.ndarray], delete_ids: np.ndarray) -> None:
        add_ids = np.asarray(add_ids, dtype=np.int64)
        delete_ids = np.asarray(delete_ids, dtype=np.int64)
        self._check_batch(add_ids, add_vectors)
        with self._lock:
            m = copy.deepcopy(self._snap.manifest)
            collect_garbage(self.path, m)  # leftovers of a failed commit
            m.generation += 1
            self._tombstone(m, np.union1d(delete_ids, add_ids))
            if len(add_ids):
                self._add_segment(m, add_ids, add_vectors)
            self._merge(m, self.merge_policy.select(m.segments))
            self._publish(m)

    def merge(self, policy: MergePolicy | None = None) -> None:
        """Run a merge now: ``policy`` (default: everything that shares a codec into one)."""
        with self._lock:
            m = copy.deepcopy(self._snap.manifest)
            collect_garbage(self.path, m)
            m.generation += 1
            if policy is None:
                groups = [[s.name for s in m.segments if s.codec == c] for c in m.codecs]
                groups = [g for g in groups if len(g) > 1 or any(
                    s.n_deleted for s in m.segments if s.name in g)]
            else:
                groups = policy.select(m.segments)
            self._merge(m, groups)
            self._publish(m)

    def _check_batch(self, ids: np.ndarray, vectors: list[np.ndarray]) -> None:
        if len(ids) != len(vectors):
            raise InvalidInput(f"{len(ids)} ids but {len(vectors)} vector bags")
        if len(np.unique(ids)) != len(ids):
            raise InvalidInput("duplicate ids in one commit")
        for v in vectors:
            if v.ndim != 2 or v.shape[1] != self.dim or len(v) == 0:
                raise InvalidInput(f"each bag must be [n >= 1, {self.dim}], got {v.shape}")

    def _tombstone(self, m: Manifest, ids: np.ndarray) -> None:
        """Mark ``ids`` dead wherever they live (unknown ids are ignored)."""
        for e, seg, dead in zip(m.segments, self._snap.segments, self._snap.dead):
            hit = np.isin(np.asarray(seg.pids), ids) & ~dead.cpu().numpy()
            if not hit.any():
                continue
            all_dead = np.flatnonzero(dead.cpu().numpy() | hit).astype(np.int32)
            e.tombstones = f"{e.name}.{m.generation:06d}.npy"
            durable.write_npy(self.path / "tombstones" / e.tombstones, all_dead)
            e.n_deleted = len(all_dead)
        if self.fault_hook:
            self.fault_hook("tombstones_written")

    def _codec_for(self, m: Manifest, flat: "StackedRows") -> str:
        """The current codec if it still fits ``flat``; else a new one trained on it."""
        rng = np.random.default_rng(m.generation)
        n_centroids = n_centroids_for(len(flat))
        n_sample = min(len(flat), TRAIN_POINTS_PER_CENTROID * n_centroids)
        picked = np.sort(rng.choice(len(flat), n_sample, replace=False))
        sample = np.asarray(flat[picked], dtype=np.float32)
        if m.codecs:
            current = Codec.load(self.path / "codecs" / m.codecs[-1])
            if len(flat) < REFIT_MIN_TOKENS or current.fit(sample[:16384]) <= REFIT_RATIO:
                return m.codecs[-1]
        codec = Codec.train(sample, m.nbits, n_centroids, seed=m.generation)
        name = f"c{m.generation:06d}"
        codec.save(self.path / "codecs" / name)
        m.codecs.append(name)
        return name

    def _add_segment(self, m: Manifest, ids: np.ndarray, vectors: list[np.ndarray]) -> None:
        flat = StackedRows(vectors)  # kept in the caller's dtype (float16 from a sync), not joined
        cname = self._codec_for(m, flat)
        codec = Codec.load(self.path / "codecs" / cname)
        codes, residuals = codec.compress(flat)
        norms = token_norms(torch.from_numpy(codes), torch.from_numpy(residuals),
                            torch.from_numpy(codec.centroids), torch.from_numpy(codec.decode_table()))
        doclens = np.array([len(v) for v in vectors], dtype=np.int32)
        name = f"s{m.generation:06d}"
        write_sorted(self.path / "segments" / name, cname, len(codec.centroids), ids, doclens,
                     codes, residuals, norms)
        m.segments.append(SegmentEntry(name, cname, len(ids), len(codes)))
        if self.fault_hook:
            self.fault_hook("segment_written")

    def _merge(self, m: Manifest, groups: list[list[str]]) -> None:
        by_name = {s.name: s for s in self._snap.segments}  # norms of format-1 ones filled in by _load
        for i, group in enumerate(groups):
            entries = [e for e in m.segments if e.name in group]
            parts = []
            for e in entries:
                seg = by_name.get(e.name) or Segment.open(self.path / "segments" / e.name, torch.device("cpu"))
                dead = np.zeros(e.n_passages, dtype=bool)
                if e.tombstones:
                    dead[np.load(self.path / "tombstones" / e.tombstones)] = True
                parts.append({"pids": np.asarray(seg.pids), "doclens": np.asarray(seg.doclens), "dead": dead,
                              "codes": seg.codes.cpu().numpy(), "residuals": seg.residuals.cpu().numpy(),
                              "norms": seg.norms.cpu().numpy()})
            codec = entries[0].codec
            n_cent = len(Codec.load(self.path / "codecs" / codec).centroids)
            name = f"s{m.generation:06d}m{i}"
            n, t = merge_segments(self.path / "segments" / name, codec, n_cent, parts)
            if self.fault_hook:
                self.fault_hook("merged_segment_written")
            m.segments = [e for e in m.segments if e.name not in group]
            if n:
                m.segments.append(SegmentEntry(name, codec, n, t))
        m.codecs = [c for c in m.codecs if c == m.codecs[-1] or any(s.codec == c for s in m.segments)]

    def _publish(self, m: Manifest) -> None:
        m.write(self.path, self.fault_hook)
        self._snap = self._load(m, reuse=self._snap)
        collect_garbage(self.path, m)


class StackedRows:
    """The rows of passages' token-vector arrays, read as one ``[T, dim]`` array
    without joining them: a first sync of the stdlib tree would copy 2.3 GB (~5 s)
    just to compress it block by block and draw the codec's sample."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = parts
        self.offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in parts], out=self.offsets[1:])
        self.shape = (int(self.offsets[-1]), parts[0].shape[1])
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        """A slice of rows, or the rows at sorted indexes ``rows``."""
        if isinstance(rows, slice):
            start, stop, _ = rows.indices(len(self))
            first = int(np.searchsorted(self.offsets, start, side="right")) - 1
            out = []
            for i in range(first, len(self.parts)):
                lo, hi = self.offsets[i], self.offsets[i + 1]
                if lo >= stop:
                    break
                out.append(self.parts[i][max(start - lo, 0) : min(stop, hi) - lo])
            return np.concatenate(out) if out else np.empty((0, self.shape[1]), self.parts[0].dtype)
        if len(rows) == 0:
            return np.empty((0, self.shape[1]), self.parts[0].dtype)
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        starts = np.r_[0, np.flatnonzero(np.diff(part)) + 1]  # runs of rows in one part
        ends = np.r_[starts[1:], len(rows)]
        return np.concatenate([self.parts[part[a]][rows[a:b] - self.offsets[part[a]]]
                               for a, b in zip(starts, ends)])
