"""When a PLAID index retrains its codec, and on which sample.

A commit keeps the current codec while it fits the corpus; else it trains a new one on
the corpus as it will be after the commit (``codec_for``). The sample depends on the
corpus's content alone (``token_hash``), not on the order it was committed in, so a
grown index retrained by ``optimize`` gets the codec a fresh build of the same
passages gets. Functions of the index folder ``path``, a manifest and the open segments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.index.plaid.codec import Codec, n_centroids_for
from indexer.index.plaid.manifest import Manifest, SegmentEntry
from indexer.index.plaid.merge import DecodedRows, StackedRows
from indexer.index.plaid.originals import Int8Rows, Rounded
from indexer.index.plaid.segment import Segment

REFIT_RATIO = 1.5  # retrain when new vectors' residual MSE exceeds the codec's training MSE by this
REFIT_MIN_TOKENS = 4096  # ...and the commit brings at least this many tokens to train on
REFIT_MIN_SHARE = 0.25  # ...and at least this share of the corpus (else later growth refits)
# Refit when the corpus holds this many times the tokens the codec was trained on. 35 adds on the
# stdlib subset: at 4x MRR@10 -4.9% from a one-shot build, at 2x -1.0% for 5% more bytes
# written (bench/RESULTS-plaid.md, "Grown indexes").
REFIT_GROWTH = 2
TRAIN_POINTS_PER_CENTROID = 64  # k-means sample size; 32 raised held-out residual MSE by 13% on stdlib

NewRows = tuple[np.ndarray, np.ndarray, StackedRows | Rounded]  # ids, doclens, token rows of a commit
StageProgress = Callable[[int, int], None]


def codec_for(path: Path, m: Manifest, segments: Sequence[Segment], ids: np.ndarray,
              doclens: np.ndarray, flat: StackedRows | Rounded, progress: StageProgress | None) -> str:
    """The current codec while it fits the corpus; else a new one (saved, appended to ``m``)
    trained on the corpus as it will be after this commit (``corpus_sample``).

    A refit happens when the corpus has outgrown the codec (``REFIT_GROWTH`` times the
    tokens it was trained on), or when a commit that is a large share of the corpus fits
    it badly (new content). So a corpus grown by small
    adds sees O(log n) refits; each is followed by a merge that moves the older segments
    to the new codec.
    """
    total = live_tokens(path, m, segments) + len(flat)
    if m.codecs:
        current = Codec.load(path / "codecs" / m.codecs[-1])
        sized_for = m.codec_tokens or (len(current.centroids) // 2) ** 2  # older manifests
        outgrown = total >= REFIT_GROWTH * sized_for and total >= REFIT_MIN_TOKENS
        big = len(flat) >= max(REFIT_MIN_TOKENS, REFIT_MIN_SHARE * total)
        if not outgrown and not (big and current.fit(sample_rows(flat, 16384)) > REFIT_RATIO):
            return m.codecs[-1]
    codec = train_codec(path, m, segments, (ids, doclens, flat), total, progress)
    name = f"c{m.generation:06d}"
    codec.save(path / "codecs" / name)
    m.codecs.append(name)
    m.codec_tokens, m.codec_corpus = total, corpus_key(path, m, segments, (ids, doclens))
    return name


def train_codec(path: Path, m: Manifest, segments: Sequence[Segment], new: NewRows | None,
                total: int, progress: StageProgress | None) -> Codec:
    """A codec for the live passages plus ``new``, ``total`` tokens."""
    n_centroids = n_centroids_for(total)
    sample = corpus_sample(path, m, segments, new, TRAIN_POINTS_PER_CENTROID * n_centroids / total)
    return Codec.train(sample, m.nbits, n_centroids, seed=0, progress=progress)


def corpus_sample(path: Path, m: Manifest, segments: Sequence[Segment], new: NewRows | None,
                  rate: float) -> np.ndarray:
    """The tokens whose ``token_hash`` is below ``rate``, over the live passages and ``new``,
    in (passage id, position) order. Rows are the segments' originals (decoded where a
    segment kept none)."""
    keys, rows = [], []
    sources: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, Any]] = \
        [] if new is None else [(new[0], new[1], None, new[2])]
    segs = {s.name: s for s in segments}
    for e in m.segments:  # m's tombstones: this commit's replacements are already dead there
        seg = segs[e.name]
        sources.append((np.asarray(seg.pids), np.asarray(seg.doclens), dead_mask(path, e),
                        originals(path, e, seg)))
    for pids, doclens, dead, source in sources:
        h, key = token_hash(pids, doclens)
        picked = h < rate
        if dead is not None:
            picked &= np.repeat(~dead, doclens)
        at = np.flatnonzero(picked)
        keys.append(key[at])
        rows.append(np.asarray(source[at], dtype=np.float32))
    order = np.argsort(np.concatenate(keys), kind="stable")
    return np.concatenate(rows)[order]


def dead_mask(path: Path, e: SegmentEntry) -> np.ndarray:
    """Tombstone mask of segment ``e`` as the manifest entry names it (bool [n_passages])."""
    mask = np.zeros(e.n_passages, dtype=bool)
    if e.tombstones:
        mask[np.load(path / "tombstones" / e.tombstones)] = True
    return mask


def live_tokens(path: Path, m: Manifest, segments: Sequence[Segment]) -> int:
    """Exact token count of ``m``'s live passages (what a fresh build of them would hold)."""
    segs = {s.name: s for s in segments}
    return sum(int(np.asarray(segs[e.name].doclens)[~dead_mask(path, e)].sum()) for e in m.segments)


def corpus_key(path: Path, m: Manifest, segments: Sequence[Segment],
               new: tuple[np.ndarray, np.ndarray] | None = None) -> str:
    """Which passages ``m`` holds live, plus ``new`` (ids, lengths) about to be added (ids and
    lengths, however they are split into segments), as a digest: a codec trained on them
    needs no retrain."""
    segs = {s.name: s for s in segments}
    pids = [np.empty(0, np.int64)] + ([np.asarray(new[0], np.int64)] if new else [])
    lens = [np.empty(0, np.int64)] + ([np.asarray(new[1], np.int64)] if new else [])
    for e in m.segments:
        live = ~dead_mask(path, e)
        pids.append(np.asarray(segs[e.name].pids, dtype=np.int64)[live])
        lens.append(np.asarray(segs[e.name].doclens, dtype=np.int64)[live])
    pid, length = np.concatenate(pids), np.concatenate(lens)
    order = np.argsort(pid, kind="stable")
    return hashlib.sha256(pid[order].tobytes() + length[order].tobytes()).hexdigest()


def originals(path: Path, e: SegmentEntry, seg: Segment) -> np.ndarray | Int8Rows | DecodedRows:
    """A segment's token vectors as committed; decoded from its codes when it kept none."""
    if seg.vectors is not None:
        return seg.vectors
    return DecodedRows(seg.codes.cpu().numpy(), seg.residuals.cpu().numpy(),
                       Codec.load(path / "codecs" / e.codec))


def sample_rows(rows: StackedRows | Rounded, n: int) -> np.ndarray:
    """``n`` rows picked at random (seed 0), in order."""
    rng = np.random.default_rng(0)
    picked = np.sort(rng.choice(len(rows), min(n, len(rows)), replace=False))
    return np.asarray(rows[picked], dtype=np.float32)


def token_hash(pids: np.ndarray, doclens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per token of passages ``pids`` (with ``doclens`` tokens each): a fixed pseudo-random
    number in [0, 1) from its passage id and position (splitmix64), and an int64 sort key.

    >>> h, key = token_hash(np.array([7, 3]), np.array([2, 1]))
    >>> key.tolist(), bool(((h >= 0) & (h < 1)).all())
    ([458752, 458753, 196608], True)
    """
    owner = np.repeat(pids.astype(np.int64), doclens)
    pos = np.arange(len(owner), dtype=np.int64) - np.repeat(np.cumsum(doclens) - doclens, doclens)
    x = owner.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + pos.astype(np.uint64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53), owner * 65536 + pos
