"""Encoder throughput and quality: PyTorch fp32 vs ONNX Runtime fp32 / int8 recipes, same passages.

Passages are 30-line windows (stride 15, file path prepended) of the stdlib
code-search tree. The subset is the target files of ``--queries`` random
queries, all their windows. Each chunk of passages is encoded by every runtime
in turn (interleaved, so load from other processes on this shared machine hits
all of them alike); passages/s is over the whole subset. Quality: token cosine
and MaxSim ranking agreement with torch fp32, and MRR@10 / Recall@10 of
exhaustive MaxSim over the subset (hit = a passage of the target file whose
line span overlaps the target's). int8 runs once per recipe of
``encode_onnx.INT8_RECIPES``.

    python -m bench.bench_encoder --queries 100 --seed 0 --json bench/.cache/enc-s0.json
    python -m bench.bench_encoder --pool bench/.cache/enc-s*.json   # pooled over seeds

``--pool`` averages per-query reciprocal ranks over all the runs' queries and
gives a paired bootstrap 95% interval of each runtime's ΔMRR against fp32 and
of each int8 recipe's against int8 with everything quantized.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from bench.data import stdlib, stdlib_queries, windows
from bench.metrics import reciprocal_ranks
from bench.oracle import maxsim_scores
from indexer.encoding.encoder import ColBERTEncoder
from indexer.encoding.guard import spearman
from indexer.encoding.onnx import INT8_RECIPES, OnnxBackend, default_threads, int8_recipe
from indexer.encoding.runtime import configure


def mrr_recall(scores: np.ndarray, queries: list[dict], passages: list[dict], k: int = 10):
    """Per-query reciprocal rank and hit@k (numpy arrays, one entry per query)."""
    ranked = [[(passages[i]["path"], passages[i]["start"], passages[i]["end"]) for i in np.argsort(-row)[:k]]
              for row in scores]
    rr = reciprocal_ranks(ranked, queries, k)
    return rr, (rr > 0).astype(float)


def pool(paths: list[str], rounds: int = 2000) -> None:
    """Pooled figures of several ``--json`` runs: throughput ratios and ΔMRR with a bootstrap CI."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    names = [n for n in runs[0]["runtimes"] if all(n in r["runtimes"] for r in runs)]
    print(f"{len(runs)} runs: {sum(r['queries'] for r in runs)} queries, "
          f"{sum(r['passages'] for r in runs)} passages (seeds {[r['seed'] for r in runs]})")
    base = names[0]
    print("\n| runtime | passages/s (pooled) | × " + base + " | per run |")
    print("|---|---|---|---|")
    total = {n: sum(r["runtimes"][n]["seconds"] for r in runs) for n in names}
    count = sum(r["passages"] for r in runs)
    for n in [n for n in names if "queries" not in n]:  # a query variant has its row's speed
        per_run = ", ".join(f"{r['runtimes'][base]['seconds'] / r['runtimes'][n]['seconds']:.2f}×"
                            for r in runs)
        print(f"| {n} | {count / total[n]:.1f} | {total[base] / total[n]:.2f}× | {per_run} |")
    rr = {n: np.concatenate([r["runtimes"][n]["rr"] for r in runs]) for n in names}
    hit = {n: np.concatenate([r["runtimes"][n]["hit"] for r in runs]) for n in names}

    def overlap(name: str) -> float:  # absent from runs written before it was recorded
        found = [r["runtimes"][name].get("overlap") for r in runs]
        return float(np.mean(np.concatenate(found))) if all(found) else float("nan")

    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(rr[base]), size=(rounds, len(rr[base])))

    def delta(new: np.ndarray, ref: np.ndarray) -> str:
        """ΔMRR of ``new`` against ``ref`` in % of the fp32 MRR, with its bootstrap 95% interval."""
        d = 100 * (new.mean() - ref.mean()) / rr[base].mean()
        boot = 100 * (new[draws].mean(axis=1) - ref[draws].mean(axis=1)) / rr[base][draws].mean(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        return f"{d:+.2f}% [{lo:+.2f}%, {hi:+.2f}%]"

    plain = next((n for n in names if "int8" in n), base)  # the first int8 recipe: all quantized
    print(f"\n| runtime | MRR@10 | Recall@10 | ΔMRR vs {base} [95% CI, paired bootstrap] "
          f"| per run ΔMRR | queries better / worse | top-10 overlap | ΔMRR vs {plain} [95% CI] |")
    print("|---|---|---|---|---|---|---|---|")
    for n in names:
        ref, new = rr[base], rr[n]
        per_run = ", ".join(
            f"{100 * (np.mean(r['runtimes'][n]['rr']) / np.mean(r['runtimes'][base]['rr']) - 1):+.2f}%"
            for r in runs)
        print(f"| {n} | {new.mean():.4f} | {hit[n].mean():.4f} | {delta(new, ref)} | {per_run} "
              f"| {(new > ref).sum()} / {(new < ref).sum()} | {overlap(n):.3f} "
              f"| {delta(new, rr[plain]) if 'int8' in n else ''} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=100,
                    help="random queries; their target files form the subset")
    ap.add_argument("--max-passages", type=int, default=1200,
                    help="cap: all windows that answer a query + random other windows of those files "
                         "(0: all)")
    ap.add_argument("--chunk", type=int, default=256, help="passages per interleaved round")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write per-query figures here (input of --pool)")
    ap.add_argument("--pool", nargs="+", metavar="JSON", help="only pool earlier --json runs")
    args = ap.parse_args()
    if args.pool:
        pool(args.pool)
        return

    tree, all_queries = stdlib() / "tree", stdlib_queries()
    queries = random.Random(args.seed).sample(all_queries, args.queries)
    files = sorted({q["path"] for q in queries})
    passages = [w for rel in files for w in windows(tree, rel)]
    if args.max_passages and len(passages) > args.max_passages:
        # keep every window that answers a query; fill up with other windows of the same files
        def answers(p):
            return any(p["path"] == q["path"] and p["start"] <= q["end_line"]
                       and q["start_line"] <= p["end"] for q in queries)
        positives = [p for p in passages if answers(p)]
        others = [p for p in passages if not answers(p)]
        fill = max(0, args.max_passages - len(positives))
        passages = positives + random.Random(args.seed).sample(others, min(fill, len(others)))
    texts = [p["text"] for p in passages]
    print(f"{len(queries)} queries, {len(files)} files, {len(passages)} passages")

    encoder = ColBERTEncoder.load(runtime="torch")
    cores = torch.get_num_threads()
    main_rows = [("torch", "fp32", None), ("onnx", "fp32", None)]
    main_rows += [("onnx", f"int8 {recipe}", recipe) for recipe in INT8_RECIPES]
    runtimes = [(rt, prec) for rt, prec, _ in main_rows]
    backends = {}
    for rt, prec, recipe in main_rows:  # export/validate once up front; switching later is free
        t = time.perf_counter()
        configure(encoder, rt, prec.split()[0], recipe=recipe)
        backends[(rt, prec)] = (encoder.backend, encoder.agreement)
        print(f"setup {rt}/{prec}: {time.perf_counter() - t:.1f}s (first run exports + validates; "
              f"later loads reuse the cache) guard={encoder.agreement}")
    if cores > 1:  # with several cores, also pin 1 and all threads for both runtimes
        int8 = backends[("onnx", f"int8 {int8_recipe()}")][0]  # the default recipe
        thread_rows = [("torch", "fp32, 1 thread"), ("onnx", f"int8 {int8.recipe}, 1 thread"),
                       ("onnx", f"int8 {int8.recipe}, {cores} threads")]
        backends[thread_rows[0]] = (None, None)
        for row, threads in zip(thread_rows[1:], (1, cores)):
            backends[row] = (OnnxBackend(int8.directory, "int8", threads, int8.recipe), None)
        runtimes += thread_rows
    print(f"threads by default: torch {cores}, onnx {default_threads()} (load average "
          f"{os.getloadavg()[0]:.1f})")

    embed_time = {r: 0.0 for r in runtimes}
    inner = encoder.embed_batch

    def timed_embed(batch):
        t = time.perf_counter()
        out = inner(batch)
        embed_time[current[0]] += time.perf_counter() - t
        return out

    current = [runtimes[0]]  # which runtime the encoder's embed_batch is timed for
    encoder.embed_batch = timed_embed
    wall = {r: 0.0 for r in runtimes}
    vectors = {r: [] for r in runtimes}
    for r in runtimes:  # warm-up (thread pools, allocator), not timed
        encoder.backend = backends[r][0]
        encoder.encode_documents(texts[:4])
    embed_time = {r: 0.0 for r in runtimes}
    for start in range(0, len(texts), args.chunk):
        chunk = texts[start : start + args.chunk]
        for r in runtimes:
            encoder.backend = backends[r][0]
            current[0] = r
            torch.set_num_threads(1 if "1 thread" in r[1] else cores)
            t = time.perf_counter()
            out = encoder.encode_documents(chunk, batch_size=args.batch_size)
            wall[r] += time.perf_counter() - t
            if "thread" not in r[1]:  # same vectors as the default-thread row
                vectors[r].extend(v.astype(np.float16) for v in out)  # halves memory
        done = start + len(chunk)
        print(f"  {done}/{len(texts)}  " + "  ".join(
            f"{r[0]}/{r[1]} {done / wall[r]:.1f}/s" for r in runtimes), flush=True)

    base = wall[runtimes[0]]
    best_torch = min(wall[r] for r in runtimes if r[0] == "torch")
    print("\n| runtime | precision | passages/s | × torch fp32 (default threads) | × fastest torch fp32 "
          "| time outside the model |")
    print("|---|---|---|---|---|---|")
    for r in runtimes:
        print(f"| {r[0]} | {r[1]} | {len(texts) / wall[r]:.1f} | {base / wall[r]:.2f}× "
              f"| {best_torch / wall[r]:.2f}× "
              f"| {100 * (1 - embed_time[r] / wall[r]):.1f}% |")

    print("\n| runtime | precision | MRR@10 | Recall@10 | ΔMRR vs fp32 | cosine mean | cosine p5 "
          "| top-1 agree | Spearman | top-10 overlap |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    qtexts = [q.get("query") or q["text"] for q in queries]
    ref_scores = None
    report = {"seed": args.seed, "queries": len(queries), "passages": len(texts), "runtimes": {}}
    # int8 rows again with queries encoded by torch fp32: queries are few and short, so the
    # index could be int8 while the (already loaded) fp32 model encodes queries at search time
    rows = [(r, r[1], backends[r][0]) for r in runtimes if vectors[r]]
    rows += [(r, f"{r[1]}, fp32 queries", None) for r in runtimes if vectors[r] and "int8" in r[1]]
    for r, label, query_backend in rows:
        encoder.backend = query_backend
        qv = encoder.encode_queries(qtexts)
        dv = [v.astype(np.float32) for v in vectors[r]]
        scores = maxsim_scores(qv, dv)
        rr, hit = mrr_recall(scores, queries, passages)
        mrr, rec = float(rr.mean()), float(hit.mean())
        if ref_scores is None:
            ref_scores, ref_mrr, ref_dv = scores, mrr, dv
        # the guard's figures, over the whole subset (scores computed once per runtime)
        cos = np.concatenate([(a * b).sum(axis=1) for a, b in zip(ref_dv, dv)])
        top1 = np.mean(ref_scores.argmax(axis=1) == scores.argmax(axis=1))
        rho = np.mean([spearman(a, b) for a, b in zip(ref_scores, scores)])
        k = min(10, len(dv))
        overlap = [len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) / k
                   for a, b in zip(ref_scores, scores)]
        report["runtimes"][f"{r[0]} {label}"] = {
            "seconds": wall[r], "rr": rr.tolist(), "hit": hit.tolist(), "overlap": overlap,
            "guard": backends[r][1]}
        print(f"| {r[0]} | {label} | {mrr:.4f} | {rec:.4f} | {100 * (mrr - ref_mrr) / ref_mrr:+.2f}% "
              f"| {cos.mean():.4f} | {np.percentile(cos, 5):.4f} | {top1:.3f} "
              f"| {rho:.4f} | {np.mean(overlap):.3f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report))


if __name__ == "__main__":
    main()
