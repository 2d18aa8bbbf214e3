"""Quality and speed of memex search on the stdlib code-search set, next to BM25.

    python bench/eval_stdlib.py --home bench/.cache/home-auto [--index] [--queries 1000]

With ``--index`` the tree is (re-)indexed first, timed (passages/s). Then every query is
searched through the same library the CLI uses; a hit is a returned passage of the
query's file whose line span overlaps the target lines. Baselines over the same passages,
in the same run: BM25 (bm25s, English stemmer, path prepended as memex does) and a
single-vector baseline (the mean of each passage's stored token vectors).
"""

from __future__ import annotations

import argparse
import json
import tarfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select

from indexer.corpus import Corpora
from indexer.store import Document, Passage

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "stdlib-codesearch.tar.gz"
CACHE = Path(__file__).resolve().parent / ".cache" / "stdlib"


def extract() -> Path:
    if not (CACHE / "tree").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tarfile.open(DATA) as tar:
            tar.extractall(CACHE, filter="data")
    return CACHE


def metrics(ranked: list[list[tuple[str, int, int]]], queries: list[dict]) -> dict:
    """Recall@10, MRR@10, nDCG@10 (one relevant target per query)."""
    recall = mrr = ndcg = 0.0
    for hits, q in zip(ranked, queries):
        for rank, (path, start, end) in enumerate(hits[:10], 1):
            if path == q["path"] and start <= q["end_line"] and end >= q["start_line"]:
                recall += 1
                mrr += 1 / rank
                ndcg += 1 / np.log2(rank + 1)
                break
    n = len(queries)
    return {"R@10": recall / n, "MRR@10": mrr / n, "nDCG@10": ndcg / n}


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--index", action="store_true", help="index the tree first (timed)")
    ap.add_argument("--queries", type=int, default=1000)
    args = ap.parse_args()

    root = extract()
    queries = [json.loads(line) for line in open(root / "queries.jsonl")][: args.queries]
    corpora = Corpora(args.home)
    if args.index:
        if args.corpus not in corpora.names():
            corpora.create(args.corpus, str(root / "tree"))
        report = corpora.sync(args.corpus)
        print(f"indexing: {report.passages_added} passages in {report.seconds:.0f} s = "
              f"{report.passages_added / max(report.seconds, 1e-9):.1f} passages/s "
              f"(runtime {corpora.encoder.runtime} {corpora.encoder.precision})")
    info = corpora.info(args.corpus)
    print(f"corpus: {info.documents} files, {info.passages} passages, "
          f"index {info.bytes_on_disk / 1e6:.0f} MB")

    # memex (ColBERT, exact MaxSim), with timings split into encoding and search.
    encoder, index = corpora.encoder, corpora.index(args.corpus)
    with corpora.sessions() as s:
        rows = s.execute(select(Passage.id, Document.path, Passage.start_line, Passage.end_line,
                                Passage.text).join(Document, Passage.document_id == Document.id)
                         ).all()
    span = {pid: (path, a, b) for pid, path, a, b, _ in rows}
    ranked, t_encode, t_search, t_total = [], [], [], []
    for q in queries:
        t0 = time.perf_counter()
        qv = encoder.encode_queries([q["text"]])
        t1 = time.perf_counter()
        hits = index.search(qv, 10)[0]
        t2 = time.perf_counter()
        corpora.search([args.corpus], [q["text"]], 10)  # the full library call, hydration included
        t_total.append(time.perf_counter() - t2)
        t_encode.append(t1 - t0)
        t_search.append(t2 - t1)
        ranked.append([span[h.passage_id] for h in hits])
    colbert = metrics(ranked, queries)

    # BM25 over the same passages and text the encoder saw.
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    ids = [r[0] for r in rows]
    corpus_tokens = bm25s.tokenize([f"{r[1]}\n{r[4]}" for r in rows], stopwords="en",
                                   stemmer=stemmer, show_progress=False)
    bm25 = bm25s.BM25()
    bm25.index(corpus_tokens, show_progress=False)
    q_tokens = bm25s.tokenize([q["text"] for q in queries], stopwords="en", stemmer=stemmer,
                              show_progress=False)
    docs, _ = bm25.retrieve(q_tokens, k=10, show_progress=False, n_threads=1)
    bm25_m = metrics([[span[ids[i]] for i in row] for row in docs], queries)

    # Single-vector: mean of the stored token vectors per passage, cosine.
    pooled = {}
    for seg in index.segments:
        for i, pid in enumerate(seg.ids):
            if not seg.deleted[i]:
                v = np.asarray(seg.vectors[seg.offsets[i] : seg.offsets[i + 1]], np.float32)
                pooled[int(pid)] = v.mean(0)
    pids = np.array(list(pooled))
    mat = np.stack([pooled[p] for p in pids])
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    single = []
    for q in queries:
        qv = encoder.encode_queries([q["text"]])[0].mean(0)
        top = np.argsort(-(mat @ (qv / np.linalg.norm(qv))))[:10]
        single.append([span[int(pids[i])] for i in top])
    single_m = metrics(single, queries)

    print(f"\n{len(queries)} queries          R@10   MRR@10  nDCG@10")
    for name, m in [("BM25 (bm25s)", bm25_m), ("single-vector (mean)", single_m),
                    ("memex ColBERT exact", colbert)]:
        print(f"{name:<22} {m['R@10']:.3f}  {m['MRR@10']:.3f}   {m['nDCG@10']:.3f}")
    print(f"MRR@10 ratio memex/BM25: {colbert['MRR@10'] / bm25_m['MRR@10']:.2f}")
    print(f"\nlatency: query encoding {percentiles(t_encode)}; search excl. encoding "
          f"{percentiles(t_search)}; full library call {percentiles(t_total)}")


if __name__ == "__main__":
    main()
