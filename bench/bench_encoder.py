"""Encoder throughput and quality: PyTorch fp32 vs ONNX Runtime fp32 / int8, same passages.

Passages are 30-line windows (stride 15, file path prepended) of the stdlib
code-search tree. The subset is the target files of ``--queries`` random
queries, all their windows. Each chunk of passages is encoded by every runtime
in turn (interleaved, so load from other processes on this shared machine hits
all of them alike); passages/s is over the whole subset. Quality: token cosine
and MaxSim ranking agreement with torch fp32, and MRR@10 / Recall@10 of
exhaustive MaxSim over the subset (hit = a passage of the target file whose
line span overlaps the target's).

    python bench/bench_encoder.py --queries 60
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.encode_guard import spearman  # noqa: E402
from indexer.encode_onnx import OnnxBackend, default_threads  # noqa: E402
from indexer.encode_runtime import configure  # noqa: E402
from indexer.encoder import ColBERTEncoder  # noqa: E402

DATA = Path("/work/shared/data/stdlib-codesearch.tar.gz")
CACHE = Path(__file__).resolve().parent / ".cache" / "stdlib"


def load_corpus() -> tuple[Path, list[dict]]:
    if not (CACHE / "queries.jsonl").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tarfile.open(DATA) as tar:
            tar.extractall(CACHE, filter="data")
    queries = [json.loads(line) for line in (CACHE / "queries.jsonl").read_text().splitlines()]
    return CACHE / "tree", queries


def windows(tree: Path, rel: str, size: int = 30, stride: int = 15) -> list[dict]:
    """30-line windows of one file: text (path prepended) and 1-based line span."""
    lines = (tree / rel).read_text(errors="replace").splitlines()
    out = []
    for start in range(0, max(1, len(lines) - size + stride), stride):
        chunk = lines[start : start + size]
        out.append({"path": rel, "start": start + 1, "end": start + len(chunk),
                    "text": rel + "\n" + "\n".join(chunk)})
    return out


def query_scores(query_vecs: list[np.ndarray], doc_vecs: list[np.ndarray]) -> np.ndarray:
    """(n_queries, n_docs) MaxSim scores; all queries' tokens go through one matmul per doc."""
    stacked = torch.from_numpy(np.concatenate(query_vecs)).float()  # (sum q_tokens, dim)
    owner = torch.repeat_interleave(torch.tensor([len(q) for q in query_vecs]))  # (sum q_tokens,)
    cols = []
    for d in doc_vecs:
        best = (stacked @ torch.from_numpy(d).float().T).max(dim=1).values  # (sum q_tokens,)
        cols.append(torch.zeros(len(query_vecs)).index_add_(0, owner, best))
    return torch.stack(cols, dim=1).numpy()


def mrr_recall(scores: np.ndarray, queries: list[dict], passages: list[dict], k: int = 10):
    rr, hits = [], []
    for qi, q in enumerate(queries):
        top = np.argsort(-scores[qi])[:k]
        ranks = [r for r, pi in enumerate(top) if passages[pi]["path"] == q["path"]
                 and passages[pi]["start"] <= q["end_line"] and q["start_line"] <= passages[pi]["end"]]
        rr.append(1.0 / (ranks[0] + 1) if ranks else 0.0)
        hits.append(bool(ranks))
    return float(np.mean(rr)), float(np.mean(hits))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=100, help="random queries; their target files form the subset")
    ap.add_argument("--max-passages", type=int, default=1200,
                    help="cap: all windows that answer a query + random other windows of those files (0: all)")
    ap.add_argument("--chunk", type=int, default=256, help="passages per interleaved round")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    tree, all_queries = load_corpus()
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
    runtimes = [("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8"),
                ("torch", "fp32, 1 thread"), ("onnx", "int8, 1 thread"), ("onnx", f"int8, {cores} threads")]
    backends = {}
    for rt, prec in runtimes[:3]:  # export/validate once up front; switching later is free
        t = time.perf_counter()
        configure(encoder, rt, prec)
        backends[(rt, prec)] = (encoder.backend, encoder.agreement)
        print(f"setup {rt}/{prec}: {time.perf_counter() - t:.1f}s (first run exports + validates; "
              f"later loads reuse the cache) guard={encoder.agreement}")
    int8 = backends[("onnx", "int8")][0]
    backends[runtimes[3]] = (None, None)
    backends[runtimes[4]] = (OnnxBackend(int8.directory, "int8", threads=1), None)
    backends[runtimes[5]] = (OnnxBackend(int8.directory, "int8", threads=cores), None)
    print(f"threads by default: torch {cores}, onnx {default_threads()} (load average "
          f"{os.getloadavg()[0]:.1f}); rows below also pin 1 and {cores}")

    embed_time = {r: 0.0 for r in runtimes}
    inner = encoder._embed

    def timed_embed(batch):
        t = time.perf_counter()
        out = inner(batch)
        embed_time[current[0]] += time.perf_counter() - t
        return out

    current = [runtimes[0]]  # which runtime the encoder's _embed is timed for
    encoder._embed = timed_embed
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

    print("\n| runtime | precision | MRR@10 | Recall@10 | ΔMRR vs fp32 | cosine mean | cosine p5 | top-1 agree | Spearman | top-10 overlap |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    qtexts = [q.get("query") or q["text"] for q in queries]
    ref_scores = None
    for r in [r for r in runtimes if vectors[r]]:
        encoder.backend = backends[r][0]
        qv = encoder.encode_queries(qtexts)
        dv = [v.astype(np.float32) for v in vectors[r]]
        scores = query_scores(qv, dv)
        mrr, rec = mrr_recall(scores, queries, passages)
        if ref_scores is None:
            ref_scores, ref_mrr, ref_dv = scores, mrr, dv
        # the guard's figures, over the whole subset (scores computed once per runtime)
        cos = np.concatenate([(a * b).sum(axis=1) for a, b in zip(ref_dv, dv)])
        top1 = np.mean(ref_scores.argmax(axis=1) == scores.argmax(axis=1))
        rho = np.mean([spearman(a, b) for a, b in zip(ref_scores, scores)])
        k = min(10, len(dv))
        overlap = np.mean([len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) / k
                           for a, b in zip(ref_scores, scores)])
        print(f"| {r[0]} | {r[1]} | {mrr:.4f} | {rec:.4f} | {100 * (mrr - ref_mrr) / ref_mrr:+.2f}% "
              f"| {cos.mean():.4f} | {np.percentile(cos, 5):.4f} | {top1:.3f} "
              f"| {rho:.4f} | {overlap:.3f} |", flush=True)


if __name__ == "__main__":
    main()
