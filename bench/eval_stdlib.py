"""Quality and speed of memex search on the stdlib code-search set, next to its baselines.

    memex index bench/.cache/stdlib/tree --name stdlib      # with MEMEX_HOME=bench/.cache/home-plaid
    python -m bench.eval_stdlib --home bench/.cache/home-plaid \
        [--oracle-home bench/.cache/home-exact --oracle-queries 100]

``--set code`` (or ``readme``, ``faq``) takes a validation set's queries instead: index
``bench/.cache/validation/<set>/tree`` as the corpus first.

Every query goes through the library call the CLI and the server use
(``Corpora.search``), in each mode: ``colbert`` (MaxSim on the corpus's engine),
``bm25`` (bm25s over the same passages) and ``hybrid`` (RRF of both). A hit is a
returned passage of the query's file whose line span overlaps the target lines.

With ``--oracle-home`` (the same tree indexed with ``MEMEX_INDEX_ENGINE=exact``), the
run also reports the engine against the exhaustive float16 MaxSim oracle (top-10
overlap, MRR on the same queries) and a single-vector baseline: the mean of each
passage's stored token vectors, cosine-ranked (all queries).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.data import passage_spans, stdlib_queries
from bench.metrics import metrics, overlap
from indexer.corpus import Corpora


def pct(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms"


def run_modes(corpora: Corpora, name: str, queries: list[dict],
              modes: tuple[str, ...] = ("colbert", "bm25", "hybrid")) -> tuple[dict, dict]:
    ranked, seconds = {}, {}
    for mode in modes:
        corpora.search([name], [queries[0]["text"]], 10, mode=mode)  # warm caches (BM25 build)
        ranked[mode], seconds[mode] = [], []
        for q in queries:
            t0 = time.perf_counter()
            hits = corpora.search([name], [q["text"]], 10, mode=mode)[0]
            seconds[mode].append(time.perf_counter() - t0)
            ranked[mode].append([(h.path, h.start_line, h.end_line) for h in hits])
    return ranked, seconds


def engine_latency(corpora: Corpora, name: str, queries: list[dict]) -> tuple[list, list]:
    encoder, index = corpora.encoder, corpora.index(name)
    t_enc, t_search = [], []
    for q in queries:
        t0 = time.perf_counter()
        qv = encoder.encode_queries([q["text"]])
        t1 = time.perf_counter()
        index.search(qv, 10)
        t_search.append(time.perf_counter() - t1)
        t_enc.append(t1 - t0)
    return t_enc, t_search


def single_vector(oracle: Corpora, name: str, queries: list[dict]) -> list[list[tuple]]:
    """Mean-pooled stored token vectors of the exact index, cosine-ranked."""
    index = oracle.index(name)
    spans = passage_spans(oracle)
    ids, means = [], []
    for seg in index.segments:
        for i, pid in enumerate(seg.ids):
            if not seg.deleted[i]:
                ids.append(int(pid))
                means.append(np.asarray(seg.vectors[seg.offsets[i]:seg.offsets[i + 1]],
                                        np.float32).mean(0))
    mat = np.stack(means)
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    out = []
    for q in queries:
        qv = oracle.encoder.encode_queries([q["text"]])[0].mean(0)
        top = np.argsort(-(mat @ (qv / np.linalg.norm(qv))))[:10]
        out.append([spans[ids[i]] for i in top])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--oracle-home", type=Path, help="the same tree indexed by the exact engine")
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--set", default="stdlib", choices=["stdlib", "code", "faq", "readme"],
                    help="whose queries: the stdlib set's, or a validation set's "
                         "(bench/validation_sets.py; index its tree/ as --corpus)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--oracle-queries", type=int, default=100)
    ap.add_argument("--oracle-cache", type=Path, help="JSON of the oracle's rankings: read if it "
                    "exists, else written (the exact engine takes seconds per query)")
    ap.add_argument("--modes", default="colbert,bm25,hybrid",
                    help="comma-separated search modes to evaluate (colbert is always run)")
    args = ap.parse_args()
    modes = tuple(dict.fromkeys(["colbert", *args.modes.split(",")]))

    if args.set == "stdlib":
        queries = stdlib_queries()[: args.queries]
    else:
        from bench.validation_sets import load

        queries = load(args.set)[1][: args.queries]
    corpora = Corpora(args.home)
    info = corpora.info(args.corpus)
    engine = type(corpora.index(args.corpus)).__name__
    print(f"corpus: {info.documents} files, {info.passages} passages, {engine} index "
          f"{info.bytes_on_disk / 1e6:.0f} MB; encoder runtime {corpora.encoder.runtime} "
          f"{corpora.encoder.precision}")

    ranked, seconds = run_modes(corpora, args.corpus, queries, modes)
    t_enc, t_search = engine_latency(corpora, args.corpus, queries[:200])
    rows = [(f"memex {m}", metrics(ranked[m], queries)) for m in ("bm25", "colbert", "hybrid")
            if m in modes]
    oracle = Corpora(args.oracle_home) if args.oracle_home else None
    if oracle and "bm25" in modes:
        rows.insert(1, ("single-vector (mean)", metrics(single_vector(oracle, args.corpus,
                                                                      queries), queries)))
    print(f"\n{len(queries)} queries               R@10   MRR@10  nDCG@10")
    for name, m in rows:
        print(f"{name:<26} {m['R@10']:.3f}  {m['MRR@10']:.3f}   {m['nDCG@10']:.3f}")
    if "bm25" in modes:
        bm25 = rows[0][1]["MRR@10"]
        for name, m in rows[1:]:
            print(f"MRR@10 ratio {name} / BM25: {m['MRR@10'] / bm25:.2f}")
    print("\nlatency (library call, k=10): " +
          "; ".join(f"{m} {pct(seconds[m])}" for m in seconds))
    print(f"engine alone: query encoding {pct(t_enc)}; search excl. encoding {pct(t_search)}")

    if args.oracle_home:
        sub = queries[: args.oracle_queries]
        if args.oracle_cache and args.oracle_cache.exists():
            cached = json.loads(args.oracle_cache.read_text())
            exact_ranked = [[tuple(h) for h in hits] for hits in cached["ranked"][: len(sub)]]
            t_exact = cached["seconds"][: len(sub)]
        else:
            exact_ranked, t_exact = [], []
            for q in sub:
                t0 = time.perf_counter()
                hits = oracle.search([args.corpus], [q["text"]], 10, mode="colbert")[0]
                t_exact.append(time.perf_counter() - t0)
                exact_ranked.append([(h.path, h.start_line, h.end_line) for h in hits])
            if args.oracle_cache:
                args.oracle_cache.write_text(json.dumps({"ranked": exact_ranked, "seconds": t_exact}))
        agree = overlap(ranked["colbert"][: len(sub)], exact_ranked)
        mine, exact = metrics(ranked["colbert"][: len(sub)], sub), metrics(exact_ranked, sub)
        print(f"\nvs exact oracle on {len(sub)} queries: top-10 overlap {agree:.3f}; "
              f"MRR@10 {mine['MRR@10']:.3f} vs exact {exact['MRR@10']:.3f} "
              f"({(mine['MRR@10'] / exact['MRR@10'] - 1) * 100:+.1f}%); "
              f"exact latency {pct(t_exact)}; index size ratio "
              f"{info.bytes_on_disk / oracle.info(args.corpus).bytes_on_disk:.3f}")


if __name__ == "__main__":
    main()
