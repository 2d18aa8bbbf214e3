"""Nearest chunk keys: exact search in torch, or a faiss candidate index plus an exact re-rank.

Keys are unit vectors; the distance reported is the squared L2 distance
``2 - 2 cos`` (RETRO's metric). Exclusions are per query lists of row ranges
(a document's chunks are consecutive rows), applied as a mask in exact search
and as a filter on candidates, widening the candidate list where too many fall
out. Exact search, masks and re-ranking are torch, so the same code runs on a
GPU; a faiss index is moved to the GPU when faiss has GPU support.
"""

from __future__ import annotations

import math

import numpy as np

from indexer import durable
from indexer.errors import InvalidInput

EXACT_MAX_CHUNKS = 100_000  # above this the default index is IVF-PQ (see docs/retro.md)


def default_factory(num_chunks: int, dim: int) -> str:
    """Exact ("Flat") for small DBs; IVF with 4-bit fast-scan PQ beyond, re-ranked exactly.

    Two dimensions per 4-bit code (96 bytes for D=384): at 1M synthetic keys
    it reaches recall@2 0.99 with 128 re-ranked candidates where D/4 codes
    need 256 (bench/RESULTS-retro.md).

    >>> default_factory(10, 384), default_factory(1_000_000, 384)
    ('Flat', 'IVF1024,PQ192x4fs')
    """
    if num_chunks <= EXACT_MAX_CHUNKS:
        return "Flat"
    nlist = 2 ** round(math.log2(math.sqrt(num_chunks)))
    return f"IVF{nlist},PQ{dim // 2}x4fs"


def build_faiss(factory: str, keys: np.ndarray, ids: np.ndarray, seed: int = 0):
    """Train (on a sample of at most 64 keys per list) and fill a faiss index with ``ids``.

    Parameters
    ----------
    factory : faiss factory string other than "Flat"
    keys : float16/32 [N, D] unit keys; ids : int64 [N] chunk ids
    """
    import faiss

    dim = keys.shape[1]
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise InvalidInput(f"bad faiss factory string {factory!r}: {exc}") from exc
    try:
        faiss.extract_index_ivf(index)  # IVF indexes store ids themselves
    except RuntimeError:
        index = faiss.IndexIDMap2(index)
    if not index.is_trained:
        nlist = getattr(faiss.try_extract_index_ivf(index), "nlist", 256)
        rng = np.random.default_rng(seed)
        take = min(len(keys), max(64 * nlist, 10_000))
        sample = np.sort(rng.choice(len(keys), size=take, replace=False))
        try:
            index.train(np.ascontiguousarray(keys[sample], dtype=np.float32))
        except RuntimeError as exc:
            raise InvalidInput(f"cannot train faiss index {factory!r} on {take} keys: {exc}") from exc
    add_keys(index, keys, ids)
    return index


def add_keys(index, keys: np.ndarray, ids: np.ndarray, batch: int = 65_536) -> None:
    for s in range(0, len(keys), batch):
        index.add_with_ids(
            np.ascontiguousarray(keys[s : s + batch], dtype=np.float32), ids[s : s + batch]
        )


def remove_keys(index, ids: np.ndarray) -> bool:
    """Remove ``ids``; False when the index type cannot (HNSW): the caller rebuilds."""
    import faiss

    if len(ids) == 0:
        return True
    try:
        index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))
    except RuntimeError:
        return False
    return True


def set_search_params(index, nprobe: int, rerank: int) -> None:
    """IVF: visit ``nprobe`` lists; HNSW: a beam as wide as the re-rank list."""
    import faiss

    space = faiss.ParameterSpace()
    for name, value in (("nprobe", nprobe), ("efSearch", rerank)):
        try:
            space.set_index_parameter(index, name, value)
            return
        except RuntimeError:
            continue


def to_device(index, device: str):
    """The faiss index on ``device`` when faiss has GPU support, else unchanged."""
    import faiss

    if index is None or not device.startswith("cuda") or not hasattr(faiss, "StandardGpuResources"):
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError:  # a type faiss-gpu lacks (e.g. fast-scan PQ): stay on CPU
        return index


def to_cpu(index):
    import faiss

    return faiss.index_gpu_to_cpu(index) if "Gpu" in type(index).__name__ else index


def save(index, path) -> None:
    """Write the (CPU copy of the) index into a new version folder, fsynced."""
    import faiss

    faiss.write_index(to_cpu(index), str(path))
    durable.fsync_file(path)


Bans = list[list[tuple[int, int]]]  # per query: row ranges [start, end) to skip


def _mask_bans(scores, rows, bans: Bans):
    """Set scores of banned rows to -inf; ``scores`` [q, m] over ``rows`` [m] or [q, m]."""
    import torch

    for qi, ranges in enumerate(bans):
        r = rows if rows.dim() == 1 else rows[qi]
        for start, end in ranges:
            scores[qi].masked_fill_((r >= start) & (r < end), -torch.inf)
    return scores


def exact_search(queries, keys, k: int, bans: Bans, device: str = "cpu", block: int = 262_144):
    """Exhaustive top-``k`` by inner product, skipping banned rows.

    Parameters
    ----------
    queries : float32 [q, D]; keys : float16/32 [N, D] (numpy or torch)

    Returns
    -------
    rows : int64 [q, k] (-1 where fewer than k rows are allowed); dist : float32 [q, k]
    """
    import torch

    q = torch.as_tensor(np.asarray(queries, dtype=np.float32), device=device)
    best_s = torch.full((len(q), 0), -torch.inf, device=device)
    best_r = torch.zeros((len(q), 0), dtype=torch.long, device=device)
    for start in range(0, len(keys), block):
        part = torch.as_tensor(np.asarray(keys[start : start + block], dtype=np.float32), device=device)
        rows = torch.arange(start, start + len(part), device=device)
        s = _mask_bans(q @ part.T, rows, bans)  # (q, block)
        s, i = torch.topk(s, min(k, s.shape[1]), dim=1)
        best_s = torch.cat([best_s, s], 1)
        best_r = torch.cat([best_r, rows[i]], 1)
        best_s, j = torch.topk(best_s, min(k, best_s.shape[1]), dim=1)
        best_r = torch.gather(best_r, 1, j)
    return _finish(best_s, best_r, k)


def _finish(scores, rows, k: int):
    """Scores -> squared L2 distances; rows of -inf scores (banned or missing) -> -1."""
    import torch

    rows = rows.masked_fill(torch.isinf(scores), -1)
    dist = (2.0 - 2.0 * scores).clamp(min=0.0)
    out_r = np.full((len(rows), k), -1, dtype=np.int64)
    out_d = np.full((len(rows), k), np.inf, dtype=np.float32)
    out_r[:, : rows.shape[1]] = rows.cpu().numpy()
    out_d[:, : rows.shape[1]] = dist.cpu().numpy()
    out_d[out_r < 0] = np.inf
    return out_r, out_d


def _dot(queries: np.ndarray, cand: np.ndarray, device: str):
    """Scores [t, f] of queries [t, D] with their candidates [t, f, D].

    On CPU numpy's einsum: for these small products torch's thread pool costs
    more than the arithmetic (measured 0.4 ms vs 8-10 ms on the shared 2-core box).
    """
    import torch

    if device == "cpu":
        return torch.from_numpy(np.einsum("td,tfd->tf", queries, cand))
    q = torch.as_tensor(queries, device=device)
    return torch.bmm(torch.as_tensor(cand, device=device), q[:, :, None])[:, :, 0]


def approx_search(
    index,
    row_of_id,
    queries,
    keys,
    k: int,
    bans: Bans,
    num_rows: int,
    rerank: int = 128,
    device: str = "cpu",
):
    """faiss candidates (``rerank`` per query), banned rows dropped, exact re-rank on ``keys``.

    Queries left with fewer than ``k`` allowed candidates ask faiss again for
    four times as many, until the index is exhausted. ``row_of_id`` maps chunk
    ids (int64 array) to rows. Returns like ``exact_search``.
    """
    import torch

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    out_r = np.full((len(queries), k), -1, dtype=np.int64)
    out_d = np.full((len(queries), k), np.inf, dtype=np.float32)
    todo = np.arange(len(queries))
    fetch = max(rerank, k)
    while len(todo):
        _, ids = index.search(queries[todo], min(fetch, num_rows))
        rows = torch.as_tensor(row_of_id(ids))  # (t, fetch), -1 for empty slots
        cand = np.asarray(keys[rows.clamp(min=0).numpy()], dtype=np.float32)  # (t, fetch, D)
        s = _dot(queries[todo], cand, device)  # (t, fetch)
        s = s.masked_fill(rows.to(device) < 0, -torch.inf)
        s = _mask_bans(s, rows.to(device), [bans[i] for i in todo])
        allowed = torch.isfinite(s).sum(1).cpu().numpy()
        s, j = torch.topk(s, min(k, s.shape[1]), dim=1)
        r, d = _finish(s, torch.gather(rows.to(device), 1, j), k)
        done = (allowed >= k) | (fetch >= num_rows)
        out_r[todo[done]], out_d[todo[done]] = r[done], d[done]
        todo = todo[~done]
        fetch *= 4
    return out_r, out_d
