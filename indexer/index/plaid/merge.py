"""Merge policies and the merge itself: segments rewritten without re-encoding.

A merge concatenates the live passages of segments that share a codec (their
codes and packed residuals are copied as they are), drops tombstoned ones, and
rebuilds the inverted list. Segments with different codecs are never merged:
their codes mean different things.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import defaultdict
from pathlib import Path

import numpy as np

from indexer.index.plaid.manifest import SegmentEntry
from indexer.index.plaid.segment import write_segment


class MergePolicy(ABC):
    """Decides, after each commit, which segments to merge."""

    @abstractmethod
    def select(self, segments: list[SegmentEntry]) -> list[list[str]]:
        """Groups of segment names (each >= 1 segment, one codec per group) to rewrite as one."""


class NoMerge(MergePolicy):
    def select(self, segments: list[SegmentEntry]) -> list[list[str]]:
        return []


class TieredMerge(MergePolicy):
    """The default: log-structured tiers, like Lucene's and tantivy's log merge policy.

    Segments of one codec are binned by ``floor(log_factor(live tokens))``; when a
    tier holds ``factor`` segments they merge into one of the next tier, so each
    passage is rewritten O(log n) times and a corpus has O(factor * log n)
    segments. A segment with more than ``max_deleted`` of its passages
    tombstoned is rewritten alone to reclaim space.
    """

    def __init__(self, factor: int = 8, max_deleted: float = 0.3) -> None:
        self.factor = factor
        self.max_deleted = max_deleted

    def select(self, segments: list[SegmentEntry]) -> list[list[str]]:
        tiers: dict[tuple[str, int], list[str]] = defaultdict(list)
        groups: list[list[str]] = []
        for s in segments:
            if s.n_passages and s.n_deleted / s.n_passages > self.max_deleted:
                groups.append([s.name])
                continue
            live_tokens = max(s.n_tokens * s.n_live // max(s.n_passages, 1), 1)
            tiers[(s.codec, int(math.log(live_tokens, self.factor)))].append(s.name)
        groups += [names for names in tiers.values() if len(names) >= self.factor]
        return groups


def merge_segments(out: Path, codec: str, n_centroids: int, parts: list[dict]) -> tuple[int, int]:
    """Write the live passages of ``parts`` as one segment at ``out``.

    Each part is a dict of numpy arrays ``pids, doclens, codes, residuals, norms`` and
    ``dead`` (bool [n_passages]). Passages are sorted by id, so merging gives the
    same bytes as a fresh build of the same passages with the same codec.
    Returns (n_passages, n_tokens).
    """
    pids, doclens, codes, residuals, norms = [], [], [], [], []
    for p in parts:
        live = ~p["dead"]
        offsets = np.zeros(len(p["doclens"]) + 1, dtype=np.int64)
        np.cumsum(p["doclens"], out=offsets[1:])
        tok = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in np.flatnonzero(live)] or
                             [np.empty(0, dtype=np.int64)])
        pids.append(p["pids"][live])
        doclens.append(p["doclens"][live])
        codes.append(p["codes"][tok])
        residuals.append(p["residuals"][tok])
        norms.append(p["norms"][tok])
    pid, dl = np.concatenate(pids), np.concatenate(doclens)
    cd, rs = np.concatenate(codes), np.concatenate(residuals)
    write_sorted(out, codec, n_centroids, pid, dl, cd, rs, np.concatenate(norms))
    return len(pid), len(cd)


def write_sorted(out: Path, codec: str, n_centroids: int, pids: np.ndarray, doclens: np.ndarray,
                 codes: np.ndarray, residuals: np.ndarray, norms: np.ndarray) -> None:
    """Write a segment with its passages reordered by external id."""
    order = np.argsort(pids, kind="stable")
    offsets = np.zeros(len(doclens) + 1, dtype=np.int64)
    np.cumsum(doclens, out=offsets[1:])
    lens = doclens[order].astype(np.int64)
    tok = np.repeat(offsets[:-1][order] - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
    write_segment(out, codec, n_centroids, pids[order], doclens[order], codes[tok], residuals[tok],
                  norms[tok])
