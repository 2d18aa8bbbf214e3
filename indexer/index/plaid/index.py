"""``PlaidIndex``: the compressed, segmented ``MultiVectorIndex``.

Layout (see FORMAT.md): ``manifest.json``, ``codecs/<name>/``, ``segments/<name>/``,
``tombstones/<segment>.<generation>.npy``. A commit writes new files under
fresh names, then swaps the manifest; the in-memory snapshot is replaced only
after that, so a search running on the old snapshot finishes on it.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from indexer import durable
from indexer.errors import Conflict, InvalidInput
from indexer.index.base import MultiVectorIndex, ScoredPassage
from indexer.index.plaid import refit
from indexer.index.plaid.codec import Codec, token_norms
from indexer.index.plaid.manifest import (
    FaultHook,
    Manifest,
    MergeGuard,
    SegmentEntry,
    collect_garbage,
    merge_guard,
)
from indexer.index.plaid.merge import (
    MergeAll,
    MergePolicy,
    StackedRows,
    TieredMerge,
    merge_segments,
    write_sorted,
)
from indexer.index.plaid.originals import Rounded, form_of
from indexer.index.plaid.search import (
    PlaidSearchParams,
    exhaustive_group,
    query_tables,
    search_group,
)
from indexer.index.plaid.snapshot import Snapshot, load_snapshot

DEFAULT_KEEP_VECTORS = "int8"  # the form new indexes keep their originals in (originals.py)
# ...until a codec is trained on this many live tokens (Manifest.keep_vectors_below). Chosen on
# grown stdlib indexes: 2^18 refits as exactly as originals kept forever, at a quarter of the
# bytes; 2^15-2^17 lost 0.02-0.06 top-10 agreement with the fp32 truth (bench/RESULTS.md).
DEFAULT_KEEP_VECTORS_BELOW = 1 << 18

class PlaidIndex(MultiVectorIndex):
    """PLAID-style engine. Not safe for concurrent writers; any number of readers."""

    def __init__(self, path: Path, device: str | torch.device = "cpu",
                 merge_policy: MergePolicy | None = None, params: PlaidSearchParams | None = None) -> None:
        self.path = Path(path)
        self.device = torch.device(device)
        self.merge_policy = merge_policy or TieredMerge()
        self.params = params or PlaidSearchParams()
        self.fault_hook: FaultHook | None = None  # tests only: called at each commit stage
        # (stage, done, total) of a commit's slow parts: "codec" (k-means iterations),
        # "compress" (token vectors), then "commit" 0/1 (segment files, merges, manifest)
        self.progress: Callable[[str, int, int], None] | None = None
        self._lock = threading.Lock()
        self._snap = load_snapshot(self.path, self.device, Manifest.read(self.path))

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self._snap.manifest.dim

    @property
    def snapshot(self) -> Snapshot:
        """What a search started now reads: the committed manifest, codecs and segments."""
        return self._snap

    @classmethod
    def create(cls, path: Path, dim: int, nbits: int = 2, codec_from: Path | None = None,
               keep_vectors: bool | str = DEFAULT_KEEP_VECTORS,
               keep_vectors_below: int = DEFAULT_KEEP_VECTORS_BELOW, **kwargs: Any) -> PlaidIndex:
        """New empty index. ``codec_from``: reuse another index's current codec.
        ``keep_vectors``: store each segment's originals (``"int8"``: ``dim + 2`` bytes a
        token, see ``originals.py``; ``True``: float16, ``dim * 2``) so that a codec refit
        re-quantises them; without (``False``), a refit's migration decodes and loses ~7%
        MRR@10 (``bench/RESULTS.md``, "Compression vs the fp32 truth"). Int8 kept the
        float16 form's quality there at 56% of the index's bytes. ``keep_vectors_below``:
        keep them only under codecs trained on fewer live tokens (0: always), so that a
        large index holds codes and residuals alone (``Manifest.keep_vectors_below``)."""
        path = Path(path)
        if (path / "manifest.json").exists():
            raise Conflict(f"an index already exists at {path}")
        if nbits not in (1, 2, 4) or dim * nbits % 8:
            raise InvalidInput(f"unsupported dim/nbits {dim}/{nbits}")
        try:
            form_of(keep_vectors)
        except ValueError as e:
            raise InvalidInput(str(e)) from e
        if keep_vectors_below < 0:
            raise InvalidInput(f"keep_vectors_below must be >= 0, got {keep_vectors_below}")
        for sub in ("codecs", "segments", "tombstones"):
            durable.make_dirs(path / sub)
        manifest = Manifest(dim=dim, nbits=nbits, keep_vectors=keep_vectors,
                            keep_vectors_below=keep_vectors_below)
        if codec_from is not None:
            src = Manifest.read(Path(codec_from))
            codec = Codec.load(Path(codec_from) / "codecs" / src.codecs[-1])
            if codec.dim != dim or codec.nbits != nbits:
                raise InvalidInput("codec_from has another dim or nbits")
            codec.save(path / "codecs" / "c000000")
            manifest.codecs.append("c000000")
            manifest.codec_tokens = src.codec_tokens  # what it was trained on, if known
        manifest.write(path)
        return cls(path, **kwargs)

    @classmethod
    def open(cls, path: Path, **kwargs: Any) -> PlaidIndex:
        return cls(Path(path), **kwargs)

    # ---- reading -------------------------------------------------------------------------

    def passage_ids(self) -> np.ndarray:
        snap = self._snap
        ids = [np.asarray(s.pids)[~d.cpu().numpy()] for s, d in zip(snap.segments, snap.dead)]
        return np.sort(np.concatenate(ids)) if ids else np.empty(0, dtype=np.int64)

    def nbytes(self) -> int:
        snap, total = self._snap, (self.path / "manifest.json").stat().st_size
        total += sum(s.nbytes + (s.vectors.nbytes if s.vectors is not None else 0) for s in snap.segments)
        for name in snap.manifest.codecs:
            total += sum(f.stat().st_size for f in (self.path / "codecs" / name).iterdir())
        for e in snap.manifest.segments:
            if e.tombstones:
                total += (self.path / "tombstones" / e.tombstones).stat().st_size
        return total

    def search(  # type: ignore[override]  # the engine's knobs by name; the base takes **params
            self, queries: list[np.ndarray], k: int, allowed_ids: np.ndarray | None = None,
            nprobe: int | None = None, candidates: int | None = None, decompress: int | None = None,
            exhaustive: bool = False) -> list[list[ScoredPassage]]:
        """MaxSim top ``k`` per query. ``nprobe``/``candidates``/``decompress`` override the
        defaults for this call; ``exhaustive=True`` scores every decompressed passage (the oracle)."""
        if k < 1:
            raise InvalidInput("k must be >= 1")
        params = replace(self.params, **{n: v for n, v in (("nprobe", nprobe), ("candidates", candidates),
                                                           ("decompress", decompress)) if v})
        snap = self._snap
        masks = {}  # by codec: live (and allowed) passages of its group
        for name, (group, dead) in snap.groups.items():
            ok = ~dead
            if allowed_ids is not None:
                ok &= torch.from_numpy(np.isin(group.pids, allowed_ids)).to(self.device)
            masks[name] = ok
        out = []
        for q in queries:
            if q.ndim != 2 or q.shape[1] != self.dim:
                raise InvalidInput(f"query must be [n, {self.dim}], got {q.shape}")
            qt = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32)).to(self.device)
            scores, pids = [], []
            for name, (group, _) in snap.groups.items():
                tables = query_tables(qt, snap.codecs[name])
                if exhaustive:
                    s, found = exhaustive_group(tables, group, masks[name], k)
                else:
                    s, found = search_group(tables, group, masks[name], k, params)
                scores.append(s.cpu().numpy())
                pids.append(group.pids[found.cpu().numpy()])
            s_all = np.concatenate(scores) if scores else np.empty(0)
            p_all = np.concatenate(pids) if pids else np.empty(0, dtype=np.int64)
            order = np.lexsort((p_all, -s_all))[:k]  # ties broken by id: deterministic
            out.append([ScoredPassage(int(p_all[i]), float(s_all[i])) for i in order])
        return out

    # ---- writing -------------------------------------------------------------------------

    def commit(self, add_ids: np.ndarray, add_vectors: list[np.ndarray], delete_ids: np.ndarray,
               merge: bool = True) -> None:
        """Apply adds and deletes as one generation. ``merge=False`` leaves merging to a later
        ``merge()``: the corpus layer runs it after releasing its write lock, so a long merge
        never holds up the next write."""
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
            m.codecs = [c for c in m.codecs if c == m.codecs[-1] or any(s.codec == c for s in m.segments)]
            self._publish(m)
        if merge:
            self.merge()

    def needs_merge(self) -> bool:
        """Whether the merge policy selects anything now."""
        return bool(self._select(self.merge_policy, self._snap))

    def merge(self, publish_lock: Callable[[], AbstractContextManager[None]] | None = None,
              policy: MergePolicy | None = None) -> int:
        """Merge what ``policy`` selects (default: this index's policy; ``MergeAll()`` is an
        optimize) until it selects nothing. Returns the number of merges published.

        New segments are written holding no lock (searches and commits go on); only the
        manifest swap takes the index's lock and ``publish_lock`` (the corpus layer's
        cross-process writer lock). Passages deleted by a commit that landed meanwhile are
        tombstoned in the merged segment; a merge whose sources another merge replaced
        is dropped.
        """
        policy = policy or self.merge_policy
        published = 0
        while True:
            snap = self._snap
            groups = self._select(policy, snap)
            if not groups:
                return published
            built = []
            try:
                for group in groups:
                    built.append(self._build_merge(snap, set(group)))
                with (publish_lock or nullcontext)(), self._lock:
                    n = self._install(built)
            finally:
                for b in built:
                    b.guard.release()
            if not n:
                return published
            published += n

    @staticmethod
    def _select(policy: MergePolicy, snap: Snapshot) -> list[list[str]]:
        m = snap.manifest
        if not m.codecs:
            return []
        return policy.select(m.segments, m.codecs[-1])

    def optimize(self, publish_lock: Callable[[], AbstractContextManager[None]] | None = None) -> int:
        """Merge everything into one segment under one codec (``memex optimize``).

        When the current codec was trained on another corpus than today's and every segment
        kept its originals, a codec is first trained on today's (outside every lock, like a
        merge), so the result is the index a fresh build of the same passages writes.
        """
        snap = self._snap
        m = snap.manifest
        total = refit.live_tokens(self.path, m, snap.segments)
        key = refit.corpus_key(self.path, m, snap.segments)
        if not (m.segments and m.keep_vectors and key != m.codec_corpus
                and all(seg.vectors is not None for seg in snap.segments)):
            return self.merge(publish_lock, MergeAll())
        name = f"c{m.generation:06d}o{uuid.uuid4().hex[:8]}"
        guard = merge_guard(self.path / "codecs", name)
        built = None
        try:
            codec = refit.train_codec(self.path, m, snap.segments, None, total, self._stage("codec"))
            codec.save(self.path / "codecs" / name)
            built = self._build_merge(snap, {e.name for e in m.segments}, (name, codec, total))
            with (publish_lock or nullcontext)(), self._lock:
                done = self._install([built], new_codec=(name, total, key))
        finally:
            guard.release()
            if built:
                built.guard.release()
        return done + self.merge(publish_lock, MergeAll())

    def _build_merge(self, snap: Snapshot, group: set[str],
                     into: tuple[str, Codec, int] | None = None) -> BuiltMerge:
        """Write the merge of ``group`` (segment names) as a new, not yet published segment,
        under the current codec or ``into`` (a new codec's name, codec and training tokens)."""
        m = snap.manifest
        target, codec, tokens = into or (m.codecs[-1], Codec.load(self.path / "codecs" / m.codecs[-1]),
                                         m.codec_tokens)
        form = m.originals_form(tokens)
        name = f"s{m.generation:06d}m{uuid.uuid4().hex[:8]}"
        guard = merge_guard(self.path / "segments", name)
        parts, sources = [], {}
        for e, seg, dead in zip(m.segments, snap.segments, snap.dead):
            if e.name not in group:
                continue
            mask = dead.cpu().numpy().copy()
            assert seg.norms is not None  # load_snapshot fills in a format-1 segment's
            part: dict[str, Any] = {
                "pids": np.asarray(seg.pids), "doclens": np.asarray(seg.doclens), "dead": mask,
                "codes": seg.codes.cpu().numpy(), "residuals": seg.residuals.cpu().numpy(),
                "norms": seg.norms.cpu().numpy(), "vectors": seg.vectors}
            if e.codec != target:
                part["source"] = Codec.load(self.path / "codecs" / e.codec)
            parts.append(part)
            sources[e.name] = mask
        try:
            n, t = merge_segments(self.path / "segments" / name, target, codec, parts, form)
            if self.fault_hook:
                self.fault_hook("merged_segment_written")
        except BaseException:
            guard.release()
            raise
        return BuiltMerge(name, target, n, t, sources, guard)

    def _install(self, built: list[BuiltMerge], new_codec: tuple[str, int, str] | None = None) -> int:
        """Swap built merges into the manifest on disk (caller holds the locks); ``new_codec``
        (name, tokens and ``refit.corpus_key`` of what it was trained on) becomes current with them."""
        disk = Manifest.read(self.path)
        if disk != self._snap.manifest:  # another process (or thread) committed meanwhile
            self._snap = load_snapshot(self.path, self.device, disk, reuse=self._snap)
        snap = self._snap
        m = copy.deepcopy(snap.manifest)
        m.generation += 1
        if new_codec:
            m.codecs.append(new_codec[0])
            m.codec_tokens, m.codec_corpus = new_codec[1], new_codec[2]
        now = {e.name: (seg, dead) for e, seg, dead in zip(m.segments, snap.segments, snap.dead)}
        installed = 0
        for b in built:
            if not all(name in now for name in b.sources) or b.codec not in m.codecs:
                continue  # superseded: its folder is garbage once the guard is released
            gone = [np.asarray(now[name][0].pids)[now[name][1].cpu().numpy() & ~was_dead]
                    for name, was_dead in b.sources.items()]
            entry = SegmentEntry(b.name, b.codec, b.n, b.t) if b.n else None
            gone_ids = np.concatenate(gone)
            if entry and len(gone_ids):
                pids = np.load(self.path / "segments" / b.name / "pids.npy")
                rows = np.searchsorted(pids, np.sort(gone_ids)).astype(np.int32)
                entry.tombstones = f"{b.name}.{m.generation:06d}.npy"
                durable.write_npy(self.path / "tombstones" / entry.tombstones, rows)
                entry.n_deleted = len(rows)
            m.segments = [e for e in m.segments if e.name not in b.sources] + ([entry] if entry else [])
            installed += 1
        if installed:
            m.codecs = [c for c in m.codecs if c == m.codecs[-1] or any(s.codec == c for s in m.segments)]
            self._publish(m)
        return installed

    def _check_batch(self, ids: np.ndarray, vectors: list[np.ndarray]) -> None:
        if len(ids) != len(vectors):
            raise InvalidInput(f"{len(ids)} ids but {len(vectors)} vector bags")
        if len(np.unique(ids)) != len(ids):
            raise InvalidInput("duplicate ids in one commit")
        for v in vectors:
            if v.ndim != 2 or v.shape[1] != self.dim or len(v) == 0:
                raise InvalidInput(f"each bag must be [n >= 1, {self.dim}], got {v.shape}")

    def _stage(self, stage: str) -> Callable[[int, int], None] | None:
        progress = self.progress
        return (lambda done, total: progress(stage, done, total)) if progress else None

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

    def _add_segment(self, m: Manifest, ids: np.ndarray, vectors: list[np.ndarray]) -> None:
        # kept in the caller's dtype (float16 from a sync), not joined; as int8 stores them if so
        flat: StackedRows | Rounded = StackedRows(vectors)
        if form_of(m.keep_vectors) == "int8":
            flat = Rounded(flat)
        doclens = np.array([len(v) for v in vectors], dtype=np.int32)
        cname = refit.codec_for(self.path, m, self._snap.segments, ids, doclens, flat,
                                self._stage("codec"))
        codec = Codec.load(self.path / "codecs" / cname)
        form = m.originals_form(m.codec_tokens)
        # StackedRows reads like the [T, dim] array it stands for, block by block
        codes, residuals = codec.compress(cast(np.ndarray, flat), progress=self._stage("compress"))
        if self.progress:
            self.progress("commit", 0, 1)
        norms = token_norms(torch.from_numpy(codes), torch.from_numpy(residuals),
                            torch.from_numpy(codec.centroids), torch.from_numpy(codec.decode_table()))
        name = f"s{m.generation:06d}"
        write_sorted(self.path / "segments" / name, cname, len(codec.centroids), ids, doclens,
                     codes, residuals, norms, flat if form else None, form or "float16")
        m.segments.append(SegmentEntry(name, cname, len(ids), len(codes)))
        if self.fault_hook:
            self.fault_hook("segment_written")

    def _publish(self, m: Manifest) -> None:
        m.write(self.path, self.fault_hook)
        self._snap = load_snapshot(self.path, self.device, m, reuse=self._snap)
        collect_garbage(self.path, m)


@dataclass
class BuiltMerge:
    """A merged segment written but not yet in the manifest."""

    name: str
    codec: str
    n: int  # live passages written
    t: int  # their tokens
    sources: dict[str, np.ndarray]  # merged segment -> its tombstone mask when the merge read it
    guard: MergeGuard
