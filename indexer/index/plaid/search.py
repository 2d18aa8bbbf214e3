"""The PLAID query path over a group of segments of one codec, in torch, identical on CPU and CUDA.

Per query and codec (``query_tables``), once: centroid scores ``S.T = centroids @ Q.T``
[C, nq] and residual tables (each packed byte value at each byte position, dotted
with the query). Then per group of segments that share the codec (``SegmentGroup``):

1. probe: the ``nprobe`` best centroids of each query token; their inverted lists
   give the candidate passages;
2. approximate score of each candidate from centroid scores alone: for each
   query token, the best score among the probed centroids the passage holds,
   summed over query tokens; keep the ``candidates`` best (pruning);
3. centroid interaction (PLAID): MaxSim of those candidates with every token
   replaced by its centroid, read from ``S`` through the tokens' codes; keep the
   ``decompress`` best;
4. exact MaxSim of those passages over their decompressed token vectors, computed
   without building them: ``q . (c + r) / |c + r|`` is a row of ``S`` plus one
   table row per residual byte, over the token's stored norm (``token_scores``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from indexer.index.plaid.segment import Segment


@dataclass(frozen=True)
class PlaidSearchParams:
    """Per-request knobs; defaults measured on stdlib-codesearch (bench/RESULTS-plaid.md): on the
    full corpus at 384-d, 4:768:160 agrees with the exhaustive oracle on 0.9913 and 0.9902 of
    top-10 lists on two builds over 1,000 queries (MRR@10 within 0.7% of the oracle's) at p50
    8.7-9.0 ms on one core; 128 exactly scored passages gave 0.987 on one build. Agreement is
    capped by ``decompress`` (stage_ceilings.py); latency grows ~2 ms per 64 of it."""

    nprobe: int = 4  # centroids probed per query token
    candidates: int = 768  # passages per codec group kept by the probed-centroid score
    # of those, passages kept by centroid interaction and scored exactly (never fewer than k)
    decompress: int = 160

    def n_decompress(self, k: int) -> int:
        return max(self.decompress, k)


def _onednn_product() -> bool:
    """Whether oneDNN's fp32 product runs here and agrees with the plain one."""
    try:
        a = torch.linspace(-1, 1, 64 * 32).view(64, 32)  # fixed values: no draw from torch's global RNG
        b = torch.cos(torch.arange(16 * 32, dtype=torch.float32)).view(16, 32)
        out = torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
        return bool(torch.allclose(out, a @ b.T, atol=1e-4))
    except (AttributeError, RuntimeError):
        return False


ONEDNN = _onednn_product()


def dot_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` in float32 for a [n, dim], b [m, dim].

    On CPU through oneDNN (the kernel behind ``torch.compile``'s linear layers):
    for the query path's skinny products (m = 32 query tokens or a few thousand
    centroids) it ran 2.4-2.6x faster than torch's default BLAS on the test host,
    with the same float32 result (bench/RESULTS-plaid.md). Elsewhere, the plain product.
    """
    if ONEDNN and a.device.type == "cpu" and a.dtype == b.dtype == torch.float32:
        return cast(torch.Tensor, torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], ""))
    return a @ b.T


@dataclass
class CodecTensors:
    """A codec's arrays on the search device."""

    centroids: torch.Tensor  # [C, dim] float32
    table: torch.Tensor  # [256, 8 // nbits] float32, packed byte -> residual values


@dataclass
class QueryTables:
    """One query's products with one codec's parts, computed once per query and codec."""

    centroid: torch.Tensor  # [C, nq] ``centroids @ q.T``, one contiguous row per centroid
    residual: torch.Tensor  # [nbytes * 256, nq] row ``256 j + b``: q . (byte value b at byte j)
    byte_offsets: torch.Tensor  # [nbytes] int32, ``256 j``
    n_tokens: int  # the query's tokens: the first ``n_tokens`` of the ``nq`` columns


PAD_TOKENS = 16


def query_tables(q: torch.Tensor, codec: CodecTensors) -> QueryTables:
    """Tables for ``q`` [n, dim] float32 on ``codec``'s device (0.35 ms on one CPU core for
    16 query tokens, 4,096 centroids, 384-d, 2 bits; two thirds of it the centroid scores).

    The query is padded with zero vectors to a multiple of ``PAD_TOKENS`` columns: their
    scores are 0 everywhere, so every MaxSim sum is unchanged, and torch's CPU
    ``scatter_reduce``/``embedding_bag`` over [T, nq] rows run up to 2.9x faster at
    such widths (13 columns: 2.18 ms, 16: 0.74 ms; bench/RESULTS-plaid.md).
    """
    n, dim = q.shape
    q = torch.cat([q, q.new_zeros(-n % PAD_TOKENS, dim)])
    nq = len(q)
    per = codec.table.shape[1]  # dimensions per packed byte
    parts = q.T.reshape(dim // per, per, nq)  # [nbytes, per, nq]
    residual = torch.matmul(codec.table, parts).reshape(-1, nq)  # [nbytes, 256, nq] flattened
    offsets = torch.arange(dim // per, dtype=torch.int32, device=q.device) * 256
    return QueryTables(dot_t(codec.centroids, q), residual, offsets, n)


def probe_centroids(cscores_t: torch.Tensor, nprobe: int, block: int = 64) -> torch.Tensor:
    """Distinct ids of the ``nprobe`` best centroids of each query token, from ``cscores_t`` [C, nq].

    ``topk`` down 8,192 centroids took 0.28 ms on one CPU core, a fifth of a small
    query's search. The ``nprobe`` best of a column lie in its ``nprobe`` blocks of
    ``block`` rows (a power of two) with the highest maxima, so block maxima (halving
    with ``maximum``: ``amax`` over the middle axis is slow unless nq is 32) and two
    small top-k's find them in 0.04-0.1 ms (bench/RESULTS-plaid.md).
    """
    n, nq = cscores_t.shape
    nprobe = min(nprobe, n)
    n_blocks = n // block
    if n_blocks < 4 * nprobe or n * nq < 1 << 17:  # below, plain topk is as fast
        return cast(torch.Tensor, cscores_t.topk(nprobe, dim=0).indices.flatten().unique())
    best = cscores_t[: n_blocks * block].unflatten(0, (n_blocks, block))
    while best.shape[1] > 1:
        half = best.shape[1] // 2
        best = torch.maximum(best[:, :half], best[:, half:])
    best_blocks = best[:, 0].topk(nprobe, dim=0).indices.T  # [nq, nprobe]
    cols = torch.arange(nq, device=cscores_t.device)[:, None]
    rows = (best_blocks[:, :, None] * block + torch.arange(block, device=cscores_t.device)).flatten(1)
    rows = torch.cat([rows, torch.arange(n_blocks * block, n, device=rows.device).expand(nq, -1)], 1)
    top = cscores_t[rows, cols].topk(nprobe, dim=1).indices  # [nq, nprobe] into ``rows``
    return cast(torch.Tensor, rows.gather(1, top).flatten().unique())


def gather_ranges(starts: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated ``arange(s, s + n)`` for each (s, n), and the range each item came from.

    >>> gather_ranges(torch.tensor([10, 3]), torch.tensor([2, 3]))
    (tensor([10, 11,  3,  4,  5]), tensor([0, 0, 1, 1, 1]))
    """
    owner = torch.repeat_interleave(torch.arange(len(starts), device=starts.device), lengths)
    shift = starts - (torch.cumsum(lengths, 0) - lengths)  # position minus output index, per range
    return torch.arange(len(owner), device=starts.device) + shift[owner], owner


def maxsim_groups(sim: torch.Tensor, owner: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Sum over query tokens of the max over each group's rows.

    ``sim`` [n_rows, nq] scores of rows against query tokens, ``owner`` [n_rows]
    the group of each row; returns [n_groups] float32.
    """
    best = torch.full((n_groups, sim.shape[1]), float("-inf"), device=sim.device, dtype=sim.dtype)
    best.scatter_reduce_(0, owner[:, None].expand_as(sim), sim, "amax")
    return best.sum(1)


def distinct(items: torch.Tensor, bound: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(items, return_inverse=True)`` for int64 ``items`` in [0, bound).

    Where ``bound`` is not much larger than the item count, a presence mask and its
    running count replace the sort (the query path's passages per group).
    """
    if bound > 4 * len(items):
        return cast(tuple[torch.Tensor, torch.Tensor], torch.unique(items, return_inverse=True))
    seen = torch.zeros(bound, dtype=torch.bool, device=items.device)
    seen[items] = True
    return seen.nonzero().squeeze(1), (torch.cumsum(seen, 0) - 1)[items]


@dataclass
class SegmentGroup:
    """Segments of one codec searched as one: passage ``i`` of segment ``s`` is the group's
    passage ``bases[s] + i``. Candidates are chosen over the whole group, so the work of
    stages 2-5 does not grow with the number of segments (bench/RESULTS-plaid.md,
    "Grown indexes"); only the cheap per-segment gathers loop."""

    segments: list[Segment]
    bases: torch.Tensor  # [S + 1] int64 on the search device
    pids: np.ndarray  # [N] int64 external ids, segment after segment

    @classmethod
    def of(cls, segments: list[Segment], device: torch.device) -> SegmentGroup:
        sizes = [len(s) for s in segments]
        bases = torch.zeros(len(segments) + 1, dtype=torch.int64)
        bases[1:] = torch.cumsum(torch.tensor(sizes, dtype=torch.int64), 0)
        pids = np.concatenate([np.asarray(s.pids) for s in segments]) if segments else np.empty(0, np.int64)
        return cls(segments, bases.to(device), pids)

    def __len__(self) -> int:
        return len(self.pids)

    def _bounds(self, passages: torch.Tensor) -> list[int]:
        """Where each segment's passages start in sorted group ids ``passages``."""
        return torch.searchsorted(passages, self.bases).tolist()

    def tokens(self, passages: torch.Tensor, residuals: bool) -> tuple[torch.Tensor, ...]:
        """The tokens of sorted group passages: codes [T], owner [T] (index into ``passages``),
        and with ``residuals`` their packed bytes [T, nbytes] and norms [T]."""
        codes, owners, packed, norms = [], [], [], []
        bounds = self._bounds(passages)
        for i, seg in enumerate(self.segments):
            a, b = bounds[i], bounds[i + 1]
            if a == b:
                continue
            local = passages[a:b] - self.bases[i]
            starts = seg.offsets[local]
            pos, owner = gather_ranges(starts, seg.offsets[local + 1] - starts)
            codes.append(seg.codes[pos].int())
            owners.append(owner + a)
            if residuals:
                assert seg.norms is not None  # snapshot.load_snapshot fills in a format-1 segment's
                packed.append(seg.residuals.index_select(0, pos))
                norms.append(seg.norms[pos])
        cat = torch.cat
        if not residuals:
            return cat(codes), cat(owners)
        return cat(codes), cat(owners), cat(packed), cat(norms)


def _in_order(passages: torch.Tensor,
              score_sorted: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Scores of ``passages`` in their own order, from ``score_sorted(sorted passages)``."""
    ordered, order = passages.sort()
    out = torch.empty(len(passages), device=passages.device)
    out[order] = score_sorted(ordered)
    return out


def centroid_scores(t: QueryTables, group: SegmentGroup, passages: torch.Tensor) -> torch.Tensor:
    """MaxSim of group ``passages`` [m] with each token vector replaced by its centroid -> [m].

    One ``embedding`` lookup per token reads its centroid's row of ``t.centroid``.
    """
    def score(ordered: torch.Tensor) -> torch.Tensor:
        codes, owner = group.tokens(ordered, residuals=False)
        return maxsim_groups(torch.nn.functional.embedding(codes, t.centroid), owner, len(ordered))

    return _in_order(passages, score)


def token_scores(t: QueryTables, codes: torch.Tensor, packed: torch.Tensor,
                 norms: torch.Tensor) -> torch.Tensor:
    """Scores [T, nq] of the query with decompressed token vectors given by their parts.

    ``q . (c + r) / |c + r|``: the centroid's row of ``t.centroid``, plus the sum over
    residual bytes of their rows of ``t.residual`` (one ``embedding_bag``), over the
    token's stored norm. Reads 2 + nbytes table rows a token instead of building the
    [dim] vector and its product: 3x less time per token on CPU (docs/engine.md).
    """
    sim = torch.nn.functional.embedding(codes, t.centroid)
    sim += torch.nn.functional.embedding_bag(packed + t.byte_offsets, t.residual, mode="sum")
    return sim.div_(norms.float()[:, None])


def exact_scores(t: QueryTables, group: SegmentGroup, passages: torch.Tensor) -> torch.Tensor:
    """MaxSim of the query with decompressed group ``passages`` [m] -> [m]."""
    def score(ordered: torch.Tensor) -> torch.Tensor:
        codes, owner, packed, norms = group.tokens(ordered, residuals=True)
        return maxsim_groups(token_scores(t, codes, packed, norms), owner, len(ordered))

    return _in_order(passages, score)


def probed_passages(t: QueryTables, group: SegmentGroup, allowed: torch.Tensor | None,
                    nprobe: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Passages in the probed lists and their approximate scores (stages 1-2).

    The probe is shared by the group's segments (one codec). Returns group passage
    indexes [m] int64 and, for each, the sum over query tokens of the best score among
    the probed centroids the passage holds [m] float32.
    """
    cscores_t, nq = t.centroid, t.centroid.shape[1]
    probe = probe_centroids(cscores_t[:, : t.n_tokens], nprobe)  # padding columns probe nothing
    locals_, whiches = [], []
    for i, seg in enumerate(group.segments):
        starts = seg.ivf_offsets[probe]
        pos, which = gather_ranges(starts, seg.ivf_offsets[probe + 1] - starts)
        locals_.append(seg.ivf[pos].long() + group.bases[i])  # [E] passage of each (centroid, passage)
        whiches.append(which)
    local = torch.cat(locals_) if locals_ else torch.empty(0, dtype=torch.long, device=probe.device)
    which = torch.cat(whiches) if whiches else local
    if allowed is not None:
        keep = allowed[local]
        local, which = local[keep], which[keep]
    if len(local) == 0:
        return local, torch.empty(0, device=local.device)
    uniq, inv = distinct(local, len(group))
    approx = torch.zeros(len(uniq), nq, device=local.device)
    approx.scatter_reduce_(0, inv[:, None].expand(-1, nq), cscores_t[probe][which], "amax")
    return uniq, approx.sum(1)


def search_group(t: QueryTables, group: SegmentGroup, allowed: torch.Tensor | None, k: int,
                 params: PlaidSearchParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` passages of a group of segments (one codec) for one query.

    Parameters
    ----------
    t : the query's tables for the group's codec.
    allowed : [len(group)] bool mask of live (and filter-passing) passages, or None.

    Returns
    -------
    scores [m] float32 and group passage indexes [m] int64, best first, m <= k.
    When no more passages are allowed (live, and passing a filter) than the search would
    decompress anyway, all are scored exactly: probing could miss a passage none of whose
    tokens sit in a probed list, and a filtered search should not come back empty while
    passages pass the filter.
    """
    if allowed is not None and int(allowed.sum()) <= params.n_decompress(k):
        return exhaustive_group(t, group, allowed, k)
    uniq, approx = probed_passages(t, group, allowed, params.nprobe)
    if len(uniq) == 0:
        return approx, uniq
    cand = uniq[approx.topk(min(params.candidates, len(uniq))).indices]
    if params.n_decompress(k) < len(cand):
        interaction = centroid_scores(t, group, cand)
        cand = cand[interaction.topk(params.n_decompress(k)).indices]
    scores = exact_scores(t, group, cand)
    top = scores.topk(min(k, len(cand)))
    return top.values, cand[top.indices]


def exhaustive_group(t: QueryTables, group: SegmentGroup, allowed: torch.Tensor | None, k: int,
                     batch: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """The oracle: exact MaxSim against every decompressed passage of the group."""
    ids = torch.arange(len(group), device=t.centroid.device)
    if allowed is not None:
        ids = ids[allowed]
    if len(ids) == 0:
        return torch.empty(0, device=ids.device), ids
    scores = torch.cat([exact_scores(t, group, ids[s : s + batch]) for s in range(0, len(ids), batch)])
    top = scores.topk(min(k, len(ids)))
    return top.values, ids[top.indices]
