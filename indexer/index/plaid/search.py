"""The PLAID query path over one segment, in torch, identical on CPU and CUDA.

1. centroid scores ``S.T = centroids @ Q.T`` [C, nq] (once per codec, by the caller);
2. probe: the ``nprobe`` best centroids of each query token; their inverted lists
   give the candidate passages;
3. approximate score of each candidate from centroid scores alone: for each
   query token, the best score among the probed centroids the passage holds,
   summed over query tokens; keep the ``candidates`` best (pruning);
4. centroid interaction (PLAID): MaxSim of those candidates with every token
   replaced by its centroid, read from ``S`` through the tokens' codes; keep the
   ``decompress`` best;
5. decompress only those passages' token vectors and score them by exact MaxSim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from indexer.index.plaid.codec import decompress
from indexer.index.plaid.segment import Segment


@dataclass(frozen=True)
class SearchParams:
    """Per-request knobs; defaults measured on stdlib-codesearch (bench/RESULTS-plaid.md): on the
    full corpus at 384-d, 1 core, decompressing 32 of 128 candidates after centroid interaction
    runs 2.9x faster than decompressing all 128 (p50 8.0 vs 23.3 ms) for -0.6% MRR@10."""

    nprobe: int = 4  # centroids probed per query token
    candidates: int = 128  # passages per segment kept by the probed-centroid score
    # of those, passages kept by centroid interaction, decompressed and scored exactly
    # (never fewer than k); None: candidates // 4, as PLAID
    decompress: int | None = None

    def n_decompress(self, k: int) -> int:
        return max(self.decompress or self.candidates // 4, k)


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


def gather_ranges(starts: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated ``arange(s, s + n)`` for each (s, n), and the range each item came from.

    >>> gather_ranges(torch.tensor([10, 3]), torch.tensor([2, 3]))
    (tensor([10, 11,  3,  4,  5]), tensor([0, 0, 1, 1, 1]))
    """
    owner = torch.repeat_interleave(torch.arange(len(starts), device=starts.device), lengths)
    firsts = torch.cumsum(lengths, 0) - lengths
    pos = torch.arange(int(lengths.sum()), device=starts.device) - firsts[owner] + starts[owner]
    return pos, owner


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


def centroid_scores(cscores_t: torch.Tensor, seg: Segment, passages: torch.Tensor) -> torch.Tensor:
    """MaxSim of local ``passages`` [m] with each token vector replaced by its centroid -> [m].

    ``cscores_t`` [C, nq] are the centroid scores, one contiguous row per centroid:
    one ``embedding`` lookup per token reads its row.
    """
    starts = seg.offsets[passages]
    pos, owner = gather_ranges(starts, seg.offsets[passages + 1] - starts)
    sim = torch.nn.functional.embedding(seg.codes[pos].int(), cscores_t)  # [T, nq]
    return maxsim_groups(sim, owner, len(passages))


def exact_scores(q: torch.Tensor, seg: Segment, codec: CodecTensors,
                 passages: torch.Tensor) -> torch.Tensor:
    """MaxSim of ``q`` [nq, dim] with decompressed local ``passages`` [m] -> [m]."""
    starts = seg.offsets[passages]
    pos, owner = gather_ranges(starts, seg.offsets[passages + 1] - starts)
    d = decompress(seg.codes[pos], seg.residuals[pos], codec.centroids, codec.table)  # [T, dim]
    return maxsim_groups(dot_t(d, q), owner, len(passages))


def search_segment(q: torch.Tensor, cscores_t: torch.Tensor, seg: Segment, codec: CodecTensors,
                   allowed: torch.Tensor | None, k: int,
                   params: SearchParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` passages of one segment for one query.

    Parameters
    ----------
    q : [nq, dim] float32 query token vectors.
    cscores_t : [C, nq] float32, ``centroids @ q.T`` of the segment's codec, contiguous.
    allowed : [n_passages] bool mask of live (and filter-passing) passages, or None.

    Returns
    -------
    scores [m] float32 and local passage indexes [m] int64, best first, m <= k.
    """
    empty = (torch.empty(0, device=q.device), torch.empty(0, dtype=torch.long, device=q.device))
    probe = cscores_t.topk(min(params.nprobe, len(cscores_t)), dim=0).indices.flatten().unique()
    starts = seg.ivf_offsets[probe]
    pos, which = gather_ranges(starts, seg.ivf_offsets[probe + 1] - starts)
    local = seg.ivf[pos].long()  # [E] passage of each (probed centroid, passage) pair
    if allowed is not None:
        keep = allowed[local]
        local, which = local[keep], which[keep]
    if len(local) == 0:
        return empty
    uniq, inv = distinct(local, len(seg))
    approx = torch.zeros(len(uniq), q.shape[0], device=q.device)
    approx.scatter_reduce_(0, inv[:, None].expand(-1, q.shape[0]), cscores_t[probe][which], "amax")
    cand = uniq[approx.sum(1).topk(min(params.candidates, len(uniq))).indices]
    if params.n_decompress(k) < len(cand):
        interaction = centroid_scores(cscores_t, seg, cand)
        cand = cand[interaction.topk(params.n_decompress(k)).indices]
    scores = exact_scores(q, seg, codec, cand)
    top = scores.topk(min(k, len(cand)))
    return top.values, cand[top.indices]


def exhaustive_segment(q: torch.Tensor, seg: Segment, codec: CodecTensors,
                       allowed: torch.Tensor | None, k: int,
                       batch: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """The oracle: exact MaxSim against every decompressed passage of the segment."""
    ids = torch.arange(len(seg), device=q.device)
    if allowed is not None:
        ids = ids[allowed]
    if len(ids) == 0:
        return torch.empty(0, device=q.device), ids
    scores = torch.cat([exact_scores(q, seg, codec, ids[s : s + batch]) for s in range(0, len(ids), batch)])
    top = scores.topk(min(k, len(ids)))
    return top.values, ids[top.indices]
