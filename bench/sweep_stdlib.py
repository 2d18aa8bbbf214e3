"""Search-parameter sweep of a PLAID index on the stdlib code-search set.

    python -m bench.sweep_stdlib --home bench/.cache/home-base \
        --oracle-cache bench/.cache/oracle100.json --configs 4:128:128 4:128:32

Each config is ``nprobe:candidates:decompress``; the first is the baseline the others
are compared with, measured in the same run. Queries are encoded once up front, so
the latencies are ``PlaidIndex.search`` alone (one query per call, k=10);
``--with-encoding`` adds encoding + search per query for the first config. Quality:
MRR@10 and R@10 over all queries, and top-10 overlap with the exact float16 oracle's
rankings cached by ``eval_stdlib.py --oracle-cache`` (its first queries).

``--exhaustive N`` adds the issue's oracle: the engine's own exhaustive MaxSim over
every decompressed passage (``search(exhaustive=True)``) for the first N queries,
cached in ``--exhaustive-cache``; each config then reports its top-10 overlap with
it and its MRR@10 on those N queries next to the oracle's. The gap to this oracle
is what pruning costs; the gap between it and the float oracle is quantization.
``--hybrid`` adds each config's MRR@10 through ``Corpora.search(mode="hybrid")``, whose
dense half searches at that config.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.data import passage_spans, stdlib_queries
from bench.metrics import metrics, overlap
from indexer.corpus import Corpora
from indexer.index.plaid.codec import decompress
from indexer.index.plaid.search import dot_t, gather_ranges


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--oracle-cache", type=Path)
    ap.add_argument("--configs", nargs="+", default=["4:128:128"])
    ap.add_argument("--exhaustive", type=int, default=0, help="queries scored by the exhaustive oracle")
    ap.add_argument("--exhaustive-cache", type=Path,
                    help="JSON of its rankings: read if present, else written")
    ap.add_argument("--hybrid", action="store_true",
                    help="also MRR@10 of mode=hybrid (Corpora.search, the dense part at each config)")
    ap.add_argument("--with-encoding", action="store_true",
                    help="also time each query encoded alone, then searched (first config)")
    args = ap.parse_args()

    queries = stdlib_queries()[: args.queries]
    corpora = Corpora(args.home)
    index, spans = corpora.index(args.corpus), passage_spans(corpora)
    vectors = corpora.encoder.encode_queries([q["text"] for q in queries])
    oracle = [[tuple(h) for h in r] for r in json.loads(args.oracle_cache.read_text())["ranked"]] \
        if args.oracle_cache and args.oracle_cache.exists() else []
    print(f"{args.home}: {index.nbytes() / 1e6:.0f} MB, {len(queries)} queries, "
          f"{len(oracle)} with oracle rankings")
    full = exhaustive_rankings(index, spans, vectors[: args.exhaustive], args.exhaustive_cache)
    if full:
        print("exhaustive oracle over decompressed vectors: "
              f"MRR@10 {metrics(full, queries[:len(full)])['MRR@10']:.4f} "
              f"on the first {len(full)} queries")
    print("nprobe cand decomp |  MRR@10   R@10  overlap@10 |  p50 ms  p95 ms | p50 ratio"
          + (" | vs exhaustive: overlap@10  MRR@10" if full else ""))
    base = None
    for config in args.configs:
        nprobe, candidates, decompress = (int(v) for v in config.split(":"))
        kw = {"nprobe": nprobe, "candidates": candidates, "decompress": decompress}
        for qv in vectors[:20]:  # warm page cache and allocator
            index.search([qv], 10, **kw)
        ranked, seconds = [], []
        for qv in vectors:
            t0 = time.perf_counter()
            hits = index.search([qv], 10, **kw)[0]
            seconds.append(time.perf_counter() - t0)
            ranked.append([spans[h.passage_id] for h in hits])
        m = metrics(ranked, queries)
        agree_exact = overlap(ranked, oracle) if oracle else float("nan")
        p50, p95 = np.percentile(np.array(seconds) * 1000, [50, 95])
        base = base or p50
        line = (f"{nprobe:6d} {candidates:4d} {decompress:6d} |  {m['MRR@10']:.4f} {m['R@10']:.4f}"
                f"  {agree_exact:.3f}      | {p50:7.2f} {p95:7.2f} | {p50 / base:.2f}")
        if full:
            agree = overlap(ranked, full)
            line += f"     | {agree:.4f}  {metrics(ranked[:len(full)], queries[:len(full)])['MRR@10']:.4f}"
        if args.hybrid:
            fused = corpora.search([args.corpus], [q["text"] for q in queries], 10,
                                   mode="hybrid", **kw)
            spans_of = [[(h.path, h.start_line, h.end_line) for h in r] for r in fused]
            line += f" | hybrid MRR@10 {metrics(spans_of, queries)['MRR@10']:.4f}"
        print(line, flush=True)
    if args.with_encoding:
        with_encoding(corpora, index, [q["text"] for q in queries], args.configs[0])


def with_encoding(corpora: Corpora, index, texts: list[str], config: str) -> None:
    """p50/p95 of query encoding alone and of encoding + search, one query per call."""
    kw = dict(zip(("nprobe", "candidates", "decompress"), (int(v) for v in config.split(":"))))
    encode_s, total_s = [], []
    for text in texts:
        t0 = time.perf_counter()
        q = corpora.encoder.encode_queries([text])
        t1 = time.perf_counter()
        index.search(q, 10, **kw)
        encode_s.append(t1 - t0)
        total_s.append(time.perf_counter() - t0)
    for name, xs in (("query encoding", encode_s), ("encoding + search", total_s)):
        p50, p95 = np.percentile(np.array(xs) * 1000, [50, 95])
        print(f"{config} {name}: p50 {p50:.2f} ms, p95 {p95:.2f} ms")


def exhaustive_rankings(index, spans: dict, vectors: list, cache: Path | None,
                        block: int = 1024) -> list[list]:
    """Top-10 spans of the engine's exhaustive scan for each of ``vectors`` (cached).

    The same scores as ``search(exhaustive=True)`` (the engine's decompression and
    MaxSim), computed for all queries at once: each block of passages is
    decompressed once instead of once per query.
    """
    if cache and cache.exists():
        ranked = json.loads(cache.read_text())["ranked"]
        if len(ranked) >= len(vectors):
            return [[tuple(h) for h in r] for r in ranked[: len(vectors)]]
    if not vectors:
        return []
    q = torch.from_numpy(np.concatenate(vectors).astype(np.float32))  # [all query tokens, dim]
    lengths = torch.tensor([len(v) for v in vectors])
    to_query = torch.repeat_interleave(torch.eye(len(vectors)), lengths, dim=0)  # [all tokens, n_queries]
    best_s = torch.full((len(vectors), 10), float("-inf"))
    best_p = torch.full((len(vectors), 10), -1, dtype=torch.long)
    snap = index._snap
    for seg, dead in zip(snap.segments, snap.dead):
        live = torch.nonzero(~dead).squeeze(1)
        for s in range(0, len(live), block):
            passages = live[s : s + block]
            starts = seg.offsets[passages]
            pos, owner = gather_ranges(starts, seg.offsets[passages + 1] - starts)
            codec = snap.codecs[seg.codec]
            d = decompress(seg.codes[pos], seg.residuals[pos], codec.centroids, codec.table, seg.norms[pos])
            scores = _maxsim_all(dot_t(d, q), owner, len(passages)) @ to_query  # [block, n_queries]
            pids = torch.from_numpy(np.asarray(seg.pids)[passages.numpy()]).expand(len(vectors), -1)
            top = torch.cat([best_s, scores.T], 1).topk(10, dim=1)
            best_s, best_p = top.values, torch.cat([best_p, pids], 1).gather(1, top.indices)
        print(f"  exhaustive oracle: segment {seg.name} done", flush=True)
    ranked = [[spans[int(p)] for p in row] for row in best_p]
    check = [spans[h.passage_id] for h in index.search([vectors[0]], 10, exhaustive=True)[0]]
    assert check == ranked[0], "batched oracle disagrees with search(exhaustive=True)"
    if cache:
        cache.write_text(json.dumps({"ranked": ranked}))
    return ranked


def _maxsim_all(sim: torch.Tensor, owner: torch.Tensor, n_groups: int) -> torch.Tensor:
    """[n_groups, n_query_tokens]: each group's best score per query token."""
    best = torch.full((n_groups, sim.shape[1]), float("-inf"))
    return best.scatter_reduce_(0, owner[:, None].expand_as(sim), sim, "amax")

if __name__ == "__main__":
    main()
