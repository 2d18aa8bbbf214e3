"""Search-parameter sweep of a PLAID index on the stdlib code-search set.

    python bench/sweep_stdlib.py --home bench/.cache/home-base \
        --oracle-cache bench/.cache/oracle100.json --configs 4:128:128 4:128:32

Each config is ``nprobe:candidates:decompress``; the first is the baseline the others
are compared with, measured in the same run. Queries are encoded once up front, so
the latencies are ``PlaidIndex.search`` alone (one query per call, k=10). Quality:
MRR@10 and R@10 over all queries, and top-10 overlap with the exact float16 oracle's
rankings cached by ``eval_stdlib.py --oracle-cache`` (its first queries).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from eval_stdlib import _spans, extract, metrics
from indexer.corpus import Corpora


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--oracle-cache", type=Path)
    ap.add_argument("--configs", nargs="+", default=["4:128:128"])
    args = ap.parse_args()

    queries = [json.loads(line) for line in open(extract() / "queries.jsonl")][: args.queries]
    corpora = Corpora(args.home)
    index, spans = corpora.index(args.corpus), _spans(corpora)
    vectors = corpora.encoder.encode_queries([q["text"] for q in queries])
    oracle = json.loads(args.oracle_cache.read_text())["ranked"] \
        if args.oracle_cache and args.oracle_cache.exists() else []
    print(f"{args.home}: {index.nbytes() / 1e6:.0f} MB, {len(queries)} queries, "
          f"{len(oracle)} with oracle rankings")
    print("nprobe cand decomp |  MRR@10   R@10  overlap@10 |  p50 ms  p95 ms | p50 ratio")
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
        overlap = np.mean([len(set(a) & {tuple(h) for h in b}) / 10
                           for a, b in zip(ranked, oracle)]) if oracle else float("nan")
        p50, p95 = np.percentile(np.array(seconds) * 1000, [50, 95])
        base = base or p50
        print(f"{nprobe:6d} {candidates:4d} {decompress:6d} |  {m['MRR@10']:.4f} {m['R@10']:.4f}"
              f"  {overlap:.3f}      | {p50:7.2f} {p95:7.2f} | {p50 / base:.2f}", flush=True)


if __name__ == "__main__":
    main()
