"""The PLAID query path over one segment, in torch, identical on CPU and CUDA.

Per query and codec (``query_tables``), once: centroid scores ``S.T = centroids @ Q.T``
[C, nq] and residual tables (each packed byte value at each byte position, dotted
with the query). Then per segment:

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

from dataclasses import dataclass

import torch

from indexer.index.plaid.segment import Segment


@dataclass(frozen=True)
class SearchParams:
    """Per-request knobs; defaults measured on stdlib-codesearch (bench/RESULTS-plaid.md): on the
    full corpus at 384-d, 4:768:160 agrees with the exhaustive oracle on 0.9913 and 0.9902 of
    top-10 lists on two builds over 1,000 queries (MRR@10 within 0.7% of the oracle's) at p50
    8.7-9.0 ms on one core; 128 exactly scored passages gave 0.987 on one build. Agreement is
    capped by ``decompress`` (stage_ceilings.py); latency grows ~2 ms per 64 of it."""

    nprobe: int = 4  # centroids probed per query token
    candidates: int = 768  # passages per segment kept by the probed-centroid score
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
        return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
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
        return cscores_t.topk(nprobe, dim=0).indices.flatten().unique()
    best = cscores_t[: n_blocks * block].unflatten(0, (n_blocks, block))
    while best.shape[1] > 1:
        half = best.shape[1] // 2
        best = torch.maximum(best[:, :half], best[:, half:])
    best_blocks = best[:, 0].topk(nprobe, dim=0).indices.T  # [nq, nprobe]
    cols = torch.arange(nq, device=cscores_t.device)[:, None]
    rows = (best_blocks[:, :, None] * block + torch.arange(block, device=cscores_t.device)).flatten(1)
    rows = torch.cat([rows, torch.arange(n_blocks * block, n, device=rows.device).expand(nq, -1)], 1)
    top = cscores_t[rows, cols].topk(nprobe, dim=1).indices  # [nq, nprobe] into ``rows``
    return rows.gather(1, top).flatten().unique()


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
    running count replace the sort (the query path's passages per segment).
    """
    if bound > 4 * len(items):
        return torch.unique(items, return_inverse=True)
    seen = torch.zeros(bound, dtype=torch.bool, device=items.device)
    seen[items] = True
    return seen.nonzero().squeeze(1), (torch.cumsum(seen, 0) - 1)[items]


def centroid_scores(t: QueryTables, seg: Segment, passages: torch.Tensor) -> torch.Tensor:
    """MaxSim of local ``passages`` [m] with each token vector replaced by its centroid -> [m].

    One ``embedding`` lookup per token reads its centroid's row of ``t.centroid``.
    """
    starts = seg.offsets[passages]
    pos, owner = gather_ranges(starts, seg.offsets[passages + 1] - starts)
    sim = torch.nn.functional.embedding(seg.codes[pos].int(), t.centroid)  # [T, nq]
    return maxsim_groups(sim, owner, len(passages))


def token_scores(t: QueryTables, seg: Segment, pos: torch.Tensor) -> torch.Tensor:
    """Scores [len(pos), nq] of the query with the decompressed token vectors at ``pos``.

    ``q . (c + r) / |c + r|``: the centroid's row of ``t.centroid``, plus the sum over
    residual bytes of their rows of ``t.residual`` (one ``embedding_bag``), over the
    token's stored norm. Reads 2 + nbytes table rows a token instead of building the
    [dim] vector and its product: 3x less time per token on CPU (docs/engine.md).
    """
    sim = torch.nn.functional.embedding(seg.codes[pos].int(), t.centroid)
    packed = seg.residuals.index_select(0, pos) + t.byte_offsets  # [T, nbytes] int32 table rows
    sim += torch.nn.functional.embedding_bag(packed, t.residual, mode="sum")
    return sim.div_(seg.norms[pos].float()[:, None])


def exact_scores(t: QueryTables, seg: Segment, passages: torch.Tensor) -> torch.Tensor:
    """MaxSim of the query with decompressed local ``passages`` [m] -> [m]."""
    starts = seg.offsets[passages]
    pos, owner = gather_ranges(starts, seg.offsets[passages + 1] - starts)
    return maxsim_groups(token_scores(t, seg, pos), owner, len(passages))


def probed_passages(t: QueryTables, seg: Segment, allowed: torch.Tensor | None,
                    nprobe: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Passages in the probed lists and their approximate scores (stages 1-2).

    Returns local passage indexes [m] int64 and, for each, the sum over query tokens
    of the best score among the probed centroids the passage holds [m] float32.
    """
    cscores_t, nq = t.centroid, t.centroid.shape[1]
    probe = probe_centroids(cscores_t[:, : t.n_tokens], nprobe)  # padding columns probe nothing
    starts = seg.ivf_offsets[probe]
    pos, which = gather_ranges(starts, seg.ivf_offsets[probe + 1] - starts)
    local = seg.ivf[pos].long()  # [E] passage of each (probed centroid, passage) pair
    if allowed is not None:
        keep = allowed[local]
        local, which = local[keep], which[keep]
    if len(local) == 0:
        return local, torch.empty(0, device=local.device)
    uniq, inv = distinct(local, len(seg))
    approx = torch.zeros(len(uniq), nq, device=local.device)
    approx.scatter_reduce_(0, inv[:, None].expand(-1, nq), cscores_t[probe][which], "amax")
    return uniq, approx.sum(1)


def search_segment(t: QueryTables, seg: Segment, allowed: torch.Tensor | None, k: int,
                   params: SearchParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` passages of one segment for one query.

    Parameters
    ----------
    t : the query's tables for the segment's codec.
    allowed : [n_passages] bool mask of live (and filter-passing) passages, or None.

    Returns
    -------
    scores [m] float32 and local passage indexes [m] int64, best first, m <= k.
    """
    uniq, approx = probed_passages(t, seg, allowed, params.nprobe)
    if len(uniq) == 0:
        return approx, uniq
    cand = uniq[approx.topk(min(params.candidates, len(uniq))).indices]
    if params.n_decompress(k) < len(cand):
        interaction = centroid_scores(t, seg, cand)
        cand = cand[interaction.topk(params.n_decompress(k)).indices]
    scores = exact_scores(t, seg, cand)
    top = scores.topk(min(k, len(cand)))
    return top.values, cand[top.indices]


def exhaustive_segment(t: QueryTables, seg: Segment, allowed: torch.Tensor | None, k: int,
                       batch: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """The oracle: exact MaxSim against every decompressed passage of the segment."""
    ids = torch.arange(len(seg), device=t.centroid.device)
    if allowed is not None:
        ids = ids[allowed]
    if len(ids) == 0:
        return torch.empty(0, device=ids.device), ids
    scores = torch.cat([exact_scores(t, seg, ids[s : s + batch]) for s in range(0, len(ids), batch)])
    top = scores.topk(min(k, len(ids)))
    return top.values, ids[top.indices]
