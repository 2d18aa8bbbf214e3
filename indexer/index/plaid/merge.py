"""Merge policies and the merge itself: segments rewritten without re-encoding.

A merge concatenates the live passages of its segments, drops tombstoned ones,
and rebuilds the inverted list. Segments under the target (current) codec are
copied code for code. Segments of an older codec (a refit happened since) are
compressed again under the target from the token vectors they were committed
with (``vectors.npy``, kept for this, as Lucene keeps raw vectors beside its
quantised ones), so a grown index ends where a fresh build with the same codec
would. A segment written without its originals is decoded and compressed again
(``DecodedRows``): that compounds two quantisation errors, measured in
``bench/RESULTS-plaid.md`` ("Grown indexes").
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import defaultdict
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from indexer.index.plaid.codec import Codec, decompress, token_norms
from indexer.index.plaid.manifest import SegmentEntry
from indexer.index.plaid.segment import write_segment


class MergePolicy(ABC):
    """Decides which segments to merge, given the manifest's segments and current codec."""

    @abstractmethod
    def select(self, segments: list[SegmentEntry], current: str) -> list[list[str]]:
        """Groups of segment names (each >= 1 segment) to rewrite as one under codec ``current``."""


class NoMerge(MergePolicy):
    def select(self, segments: list[SegmentEntry], current: str) -> list[list[str]]:
        return []


class MergeAll(MergePolicy):
    """One segment under the current codec (an operator's "optimize")."""

    def select(self, segments: list[SegmentEntry], current: str) -> list[list[str]]:
        if len(segments) == 1 and segments[0].codec == current and not segments[0].n_deleted:
            return []
        return [[s.name for s in segments]] if segments else []


class TieredMerge(MergePolicy):
    """The default: log-structured tiers (Lucene's and tantivy's log merge policy), across codecs.

    Segments are binned by ``floor(log_factor(live tokens))``, every segment under
    ``floor_tokens`` in the lowest bin; when a bin holds ``factor`` segments they merge
    into one of the next tier. So each passage is rewritten O(log n) times and a
    corpus holds at most ``(factor - 1)`` segments per tier, O(log n) in all, whatever
    the sequence of adds, updates and deletes. Small segments (a sync of a few
    files) merge as soon as ``factor`` of them exist. Segments of an older codec
    migrate to the current one together, in one group, at the first merge after a
    refit; a segment with more than ``max_deleted`` of its passages tombstoned is
    rewritten alone to reclaim space.
    """

    def __init__(self, factor: int = 4, max_deleted: float = 0.3, floor_tokens: int = 1 << 14) -> None:
        self.factor = factor
        self.max_deleted = max_deleted
        self.floor_tokens = floor_tokens

    def select(self, segments: list[SegmentEntry], current: str) -> list[list[str]]:
        stale = [s.name for s in segments if s.codec != current]
        groups = [stale] if stale else []
        tiers: dict[int, list[str]] = defaultdict(list)
        for s in segments:
            if s.codec != current:
                continue
            if s.n_passages and s.n_deleted / s.n_passages > self.max_deleted:
                groups.append([s.name])
                continue
            live_tokens = max(s.n_tokens * s.n_live // max(s.n_passages, 1), self.floor_tokens)
            tiers[int(math.log(live_tokens, self.factor) + 1e-9)].append(s.name)
        groups += [names for names in tiers.values() if len(names) >= self.factor]
        return groups


class DecodedRows:
    """Token vectors of an older codec's segment, decoded block by block on demand:
    ``Codec.compress`` and codec training read them like a ``[T, dim]`` array
    without the float32 copy of a whole segment (4.6 GB for stdlib) ever existing."""

    def __init__(self, codes: np.ndarray, residuals: np.ndarray, codec: Codec) -> None:
        self.codes, self.residuals = codes, residuals
        self.centroids = torch.from_numpy(codec.centroids)
        self.table = torch.from_numpy(codec.decode_table())
        self.shape = (len(codes), codec.dim)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        codes = torch.from_numpy(np.asarray(self.codes[rows]).astype(np.int64))
        packed = torch.from_numpy(np.ascontiguousarray(self.residuals[rows]))
        return decompress(codes, packed, self.centroids, self.table).numpy()


def live_tokens(doclens: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """Positions of the tokens of live passages, in order.

    >>> live_tokens(np.array([2, 1, 3]), np.array([False, True, False])).tolist()
    [0, 1, 3, 4, 5]
    """
    keep = np.repeat(~dead, doclens)
    return np.flatnonzero(keep)


def merge_segments(out: Path, target: str, codec: Codec, parts: list[dict[str, Any]],
                   form: str | None = "float16") -> tuple[int, int]:
    """Write the live passages of ``parts`` as one segment at ``out``, under codec ``target``.

    Each part is a dict of arrays ``pids, doclens, codes, residuals, norms``, ``dead``
    (bool [n_passages]) and ``vectors`` (its originals [T, dim], or None), plus
    ``source`` (its ``Codec``) when that is not ``target``, re-quantised from its originals
    if it kept them. The result keeps originals only if every part had them, stored in
    ``form`` (None: none). Passages are sorted by id, so merging segments of one codec
    gives the same bytes as a fresh build of the same passages with that codec.
    Returns (n_passages, n_tokens).
    """
    pids, doclens, codes, residuals, norms, originals = [], [], [], [], [], []
    for p in parts:
        live = ~p["dead"]
        tok = live_tokens(p["doclens"], p["dead"])
        pids.append(p["pids"][live])
        doclens.append(p["doclens"][live])
        vectors = p["vectors"]
        originals.append(None if vectors is None else TokenRows(vectors, tok))
        if "source" not in p:
            codes.append(p["codes"][tok])
            residuals.append(p["residuals"][tok])
            norms.append(p["norms"][tok])  # a stored byte reads back and re-quantises to itself
            continue
        again = originals[-1] or DecodedRows(p["codes"][tok], p["residuals"][tok], p["source"])
        c, r = codec.compress(cast(np.ndarray, again))  # read like an array, block by block
        codes.append(c)
        residuals.append(r)
        norms.append(token_norms(torch.from_numpy(c.astype(np.int64)), torch.from_numpy(r),
                                 torch.from_numpy(codec.centroids), torch.from_numpy(codec.decode_table())))
    pid, dl = np.concatenate(pids), np.concatenate(doclens)
    cd, rs = np.concatenate(codes), np.concatenate(residuals)
    kept = StackedRows(originals) if form and all(o is not None for o in originals) and len(cd) else None
    write_sorted(out, target, len(codec.centroids), pid, dl, cd, rs, np.concatenate(norms), kept,
                 form or "float16")
    return len(pid), len(cd)


def write_sorted(out: Path, codec: str, n_centroids: int, pids: np.ndarray, doclens: np.ndarray,
                 codes: np.ndarray, residuals: np.ndarray, norms: np.ndarray,
                 vectors: Any = None, form: str = "float16") -> None:
    """Write a segment with its passages reordered by external id (``vectors``: the
    originals of the tokens in the given order, read block by block, or None; kept in
    ``form``)."""
    order = np.argsort(pids, kind="stable")
    offsets = np.zeros(len(doclens) + 1, dtype=np.int64)
    np.cumsum(doclens, out=offsets[1:])
    lens = doclens[order].astype(np.int64)
    tok = np.repeat(offsets[:-1][order] - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
    write_segment(out, codec, n_centroids, pids[order], doclens[order], codes[tok], residuals[tok],
                  norms[tok], None if vectors is None else TokenRows(vectors, tok), form)


class TokenRows:
    """Rows ``tok`` of ``rows`` (anything sliceable or indexable by sorted arrays), read lazily."""

    def __init__(self, rows: Any, tok: np.ndarray) -> None:
        self.rows, self.tok = rows, tok
        self.shape = (len(tok), rows.shape[1])
        self.ndim = 2
        self.dtype = np.dtype(getattr(rows, "dtype", np.float16))

    def __len__(self) -> int:
        return len(self.tok)

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        picked = self.tok[rows]
        order = np.argsort(picked, kind="stable")  # sources read sorted rows fastest (mmaps)
        out = np.empty((len(picked), self.shape[1]), dtype=self.dtype)
        out[order] = self.rows[picked[order]]
        return out


class StackedRows:
    """The rows of several ``[n_i, dim]`` arrays read as one ``[sum n_i, dim]`` array without
    joining them: a first sync of the stdlib tree would copy 2.3 GB (~5 s) just to compress
    it block by block, draw the codec's sample and keep its originals."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts
        self.offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in parts], out=self.offsets[1:])
        self.shape = (int(self.offsets[-1]), parts[0].shape[1])
        self.ndim = 2
        self.dtype = np.dtype(getattr(parts[0], "dtype", np.float32))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        """A slice of rows, or the rows at indexes ``rows`` (any order)."""
        if isinstance(rows, slice):
            start, stop, _ = rows.indices(len(self))
            first = int(np.searchsorted(self.offsets, start, side="right")) - 1
            out = []
            for i in range(first, len(self.parts)):
                lo, hi = self.offsets[i], self.offsets[i + 1]
                if lo >= stop:
                    break
                out.append(np.asarray(self.parts[i][max(start - lo, 0) : min(stop, hi) - lo]))
            return np.concatenate(out) if out else np.empty((0, self.shape[1]), self.dtype)
        if len(rows) == 0:
            return np.empty((0, self.shape[1]), self.dtype)
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        starts = np.r_[0, np.flatnonzero(np.diff(part)) + 1]  # runs of rows in one part
        ends = np.r_[starts[1:], len(rows)]
        return np.concatenate([np.asarray(self.parts[part[a]][rows[a:b] - self.offsets[part[a]]])
                               for a, b in zip(starts, ends)])
