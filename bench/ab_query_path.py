"""A/B of the PLAID query path: this tree's ``search_segment`` against another commit's.

    python -m bench.ab_query_path --home bench/.cache/home-plaid --base 956d157 \
        --configs 4:128:32 4:128:64 [--exhaustive-cache bench/.cache/exhaustive200.json]

Both versions run in one process on the same index and the same query vectors,
interleaved pass by pass (best of ``--passes``), so a noisy machine affects both
alike. The base commit's ``indexer/index/plaid/search.py`` is loaded from git; where
it has ``query_tables``, that and its ``search_segment`` replace this tree's; before, its
centroid scores are computed the way that commit did (``q @ centroids.T``, or
``dot_t(centroids, q)`` where it took ``cscores_t``; commits before the per-query
tables took ``(q, cscores, seg, codec, ...)``). With an
oracle cache from ``sweep_stdlib.py --exhaustive`` the top-10 overlap is printed too.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import indexer.index.plaid.index as plaid_index
from bench.data import passage_spans, stdlib_queries
from bench.metrics import metrics, overlap
from indexer.corpus import Corpora


def load_base(rev: str):
    """The query-path module of commit ``rev``, imported under another name."""
    source = subprocess.run(["git", "show", f"{rev}:indexer/index/plaid/search.py"], check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "search_base.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("search_base", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["search_base"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--base", required=True, help="git revision whose query path is the baseline")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--configs", nargs="+", default=["4:128:32"])
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--exhaustive-cache", type=Path)
    args = ap.parse_args()

    base = load_base(args.base)
    current = plaid_index.search_segment, plaid_index.query_tables

    current_q = {}

    def baseline(tables, seg, allowed, k, params):
        q, codec = current_q["q"], index._snap.codecs[seg.codec]
        if "cscores_t" in inspect.signature(base.search_segment).parameters:  # [C, nq], as dot_t
            return base.search_segment(q, base.dot_t(codec.centroids, q), seg, codec, allowed, k, params)
        return base.search_segment(q, q @ codec.centroids.T, seg, codec, allowed, k, params)

    if hasattr(base, "query_tables"):  # same signatures as this tree's: both functions swap
        baseline_path = base.search_segment, base.query_tables
    else:  # older: the base computes its own centroid scores; this tree's tables go unused
        baseline_path = baseline, plaid_index.query_tables

    queries = stdlib_queries()
    corpora = Corpora(args.home)
    index, spans = corpora.index(args.corpus), passage_spans(corpora)
    # all queries in one call, as sweep_stdlib.py does: int8 activations depend on the batch
    vectors = corpora.encoder.encode_queries([q["text"] for q in queries])[: args.queries]
    queries = queries[: args.queries]
    oracle = [[tuple(h) for h in r] for r in json.loads(args.exhaustive_cache.read_text())["ranked"]] \
        if args.exhaustive_cache else []
    print(f"{args.home}: {len(vectors)} queries; base {args.base} vs this tree")
    for config in args.configs:
        nprobe, candidates, decompress = (int(v) for v in config.split(":"))
        kw = {"nprobe": nprobe, "candidates": candidates, "decompress": decompress}
        p50s, ranked = {"base": [], "this": []}, {}
        for _ in range(args.passes):
            for name, fns in (("base", baseline_path), ("this", current)):
                plaid_index.search_segment, plaid_index.query_tables = fns
                for qv in vectors[:10]:
                    current_q["q"] = torch.from_numpy(np.ascontiguousarray(qv, dtype=np.float32))
                    index.search([qv], 10, **kw)
                seconds, hits = [], []
                for qv in vectors:
                    current_q["q"] = torch.from_numpy(np.ascontiguousarray(qv, dtype=np.float32))
                    t0 = time.perf_counter()
                    found = index.search([qv], 10, **kw)[0]
                    seconds.append(time.perf_counter() - t0)
                    hits.append([spans[h.passage_id] for h in found])
                p50s[name].append(float(np.percentile(seconds, 50) * 1000))
                ranked[name] = hits
        plaid_index.search_segment, plaid_index.query_tables = current
        same = np.mean([a == b for a, b in zip(ranked["base"], ranked["this"])])
        line = (f"{config}: p50 base {min(p50s['base']):.2f} ms, this {min(p50s['this']):.2f} ms "
                f"(ratio {min(p50s['base']) / min(p50s['this']):.2f}x); identical top-10 {same:.3f}; "
                f"MRR@10 {metrics(ranked['this'], queries)['MRR@10']:.4f}")
        if oracle:
            agree = overlap(ranked["this"], oracle)
            line += f"; overlap with the exhaustive oracle {agree:.4f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
