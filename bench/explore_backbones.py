"""Would another backbone's raw token vectors reach what MiniLM-L6's cannot? (issue 17, prose)

    python -m bench.explore_backbones faq|readme|stdlib|code [--subset N [--dense]] \\
        --backbone DIR [DIR ...]

For the bundled MiniLM and each Hugging Face directory given, on one set: the
single-vector baseline (mean-pooled, normalised), raw fp32 MaxSim over every token and
that MaxSim fused with memex BM25 at the default weight. These are upper bounds on what
a head over the backbone would be trained towards, not a product's figures. Next to
them: bm25s on the same passages, and the backbone's query encoding time (p50, torch
fp32, one thread, first 50 queries one at a time). Vectors are cached per backbone in
``bench/.cache/`` (``backbone_cache``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench import backbone_cache, bench_bm25
from bench.bench_default_encoder import top
from bench.metrics import metrics
from bench.oracle import maxsim_scores


def query_ms(backbone: str, queries: list[str], n: int = 50) -> float:
    """p50 milliseconds of one query through the backbone (tokenizer + forward)."""
    from indexer.encoding.encoder import ColBERTEncoder, EncoderConfig

    enc = ColBERTEncoder.load(backbone, runtime="torch", precision="fp32")
    limit = EncoderConfig().query_max_tokens
    times = []
    with torch.inference_mode():
        for q in queries[:n] * 2:  # the first pass warms up
            t = time.perf_counter()
            enc.model(**enc.tokenizer([q], truncation=True, max_length=limit, return_tensors="pt"))
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times[len(times) // 2:])


def main() -> None:
    from indexer.bm25 import DEFAULT_BM25_WEIGHT, FUSION_DEPTH, BM25Index, fuse

    ap = argparse.ArgumentParser()
    ap.add_argument("set", choices=["stdlib", "code", "faq", "readme"])
    ap.add_argument("--subset", type=int)
    ap.add_argument("--dense", action="store_true")
    ap.add_argument("--backbone", nargs="+", default=[], help="Hugging Face model directories")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ps, queries, key = backbone_cache.load_set(args.set, args.subset, args.dense)
    texts, qtexts = [p["text"] for p in ps], [q["text"] for q in queries]
    spans = [(p["path"], p["start"], p["end"]) for p in ps]
    sparse = BM25Index.build(list(range(len(texts))), texts).search(qtexts, FUSION_DEPTH)
    rows = {"bm25s stem": bench_bm25.rank_with(bench_bm25.bm25s_terms(None), texts, qtexts),
            "memex BM25": [[i for i, _ in h[:10]] for h in sparse]}
    for backbone in [None, *args.backbone]:
        name = backbone.rstrip("/").rsplit("/", 1)[-1] if backbone else "MiniLM-L6 (bundled)"
        v = backbone_cache.load(key, texts, qtexts, skip_punctuation=False, backbone=backbone)
        ms = query_ms(backbone or "bundled:minilm", qtexts)
        print(f"{name}: {v.docs[0].shape[1]}-d, query {ms:.1f} ms (torch fp32, one thread)")
        rows[f"{name}: single-vector"] = [[i for i, _ in r]
                                          for r in top(v.query_mean @ v.doc_mean.T, 10)]
        dense = top(maxsim_scores(v.queries, v.docs), FUSION_DEPTH)
        rows[f"{name}: raw MaxSim, every token"] = [[i for i, _ in r[:10]] for r in dense]
        rows[f"{name}: raw MaxSim + BM25 at {DEFAULT_BM25_WEIGHT:g}"] = [
            [i for i, _ in fuse(d, s, DEFAULT_BM25_WEIGHT, 10)] for d, s in zip(dense, sparse)]
    m = {label: metrics([[spans[i] for i in r] for r in ranked], queries)["MRR@10"]
         for label, ranked in rows.items()}
    bm25s, raw = m["bm25s stem"], m["MiniLM-L6 (bundled): raw MaxSim, every token"]
    print(f"{'ranking':52s} {'MRR@10':>7s}  {'bm25s':>6s}  {'MiniLM raw':>10s}")
    for label, mrr in m.items():
        print(f"{label:52s} {mrr:7.4f}  {mrr / bm25s:5.2f}x  {mrr / raw:9.2f}x")


if __name__ == "__main__":
    main()
