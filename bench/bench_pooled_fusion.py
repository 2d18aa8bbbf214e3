"""A pooled single-vector score as a third term of ``mode=hybrid``'s fusion (issue 17).

    python -m bench.bench_pooled_fusion --set stdlib --subset 1200          # tune (w_pool, w_bm25)
    python -m bench.bench_pooled_fusion --set code --subset 1200 --dense --only 0.1:0.3:a  # once

The default's candidates (PLAID's and BM25's top ``FUSION_DEPTH``) re-ranked by z-score
fusion of PLAID MaxSim, BM25 and a pooled cosine scored on every candidate:

- ``a``: the backbone's mean-pooled last hidden state (all-MiniLM-L6-v2's sentence
  embedding; passages over ``doc_max_tokens`` like the cached single-vector baseline,
  queries over ``query_max_tokens`` as the encoder would see them), stored int8;
- ``b``: the mean of a passage's (query's) head vectors, normalised: no new storage;
- ``c``: ``a``'s passage vectors stored as signs (1 bit a dimension, 48 B), the query's
  full vector scored against them.

Rows come in two forms, like ``bench_default_encoder``: the fp32 encoder (cached backbone
through the head) and, with ``--int8``, the encoder as memex runs it (int8 ONNX) end to end;
the int8 rows' pooled ``a`` is the fp32 backbone's, rounded to int8 per vector.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bench.bench_default_encoder import encoded, load_eval_inputs, plaid_top, show, top

WEIGHTS_POOL = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
WEIGHTS_BM25 = (0.1, 0.2)


def fuse3(dense: list[tuple[int, float]], sparse: list[tuple[int, float]], qvec: np.ndarray,
          dvecs: np.ndarray, w_bm25: float, w_pool: float, k: int = 10) -> list[int]:
    """``indexer.bm25.fuse`` with the pooled cosine of every candidate as its third term:
    (1 - w_pool) [(1 - w_bm25) z(MaxSim) + w_bm25 z(BM25)] + w_pool z(cosine)."""
    from indexer.bm25 import fuse

    cands = sorted({p for p, _ in dense} | {p for p, _ in sparse})
    pooled = dict(zip(cands, (dvecs[cands].astype(np.float64) @ qvec.astype(np.float64)).tolist()))
    return [p for p, _ in fuse(dense, sparse, w_bm25, k, pooled, w_pool)]


def int8_rows(x: np.ndarray) -> np.ndarray:
    """Symmetric per-row int8 rounding, dequantised (what a stored int8 vector scores as)."""
    scale = np.abs(x).max(1, keepdims=True) / 127.0
    return (np.round(x / scale).clip(-127, 127) * scale).astype(np.float32)


def sign_rows(x: np.ndarray) -> np.ndarray:
    """Each row's signs, scaled to unit length (what a 1-bit stored vector scores as)."""
    return (np.where(x >= 0, 1.0, -1.0) / np.sqrt(x.shape[1])).astype(np.float32)


def mean_unit(bags: list[np.ndarray]) -> np.ndarray:
    m = np.stack([b.mean(0) for b in bags])
    return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)


@torch.inference_mode()
def pooled_queries(encoder: str, qtexts: list[str]) -> np.ndarray:
    """Mean-pooled, normalised backbone output of each query at ``query_max_tokens``."""
    from indexer.encoding.encoder import ColBERTEncoder

    enc = ColBERTEncoder.load(encoder, runtime="torch", precision="fp32")
    out = []
    for i in range(0, len(qtexts), 32):
        batch = enc.tokenize_batch(qtexts[i:i + 32], enc.config.query_max_tokens, enc.config.query_marker)
        hidden = enc.model(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None]
        out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy())
    return np.concatenate(out)


def evaluate(name: str, subset: int | None, dense: bool, encoder: str, int8: bool,
             only: list[tuple[float, float, str]] | None) -> None:
    from indexer.bm25 import DEFAULT_BM25_WEIGHT, FUSION_DEPTH, fuse

    e = load_eval_inputs(name, subset, dense, encoder)
    rows, sparse, v = e.rows, e.sparse, e.vectors
    del rows["memex BM25"]
    qa = pooled_queries(encoder, e.qtexts)
    da = int8_rows(v.doc_mean)
    rows["pooled a alone (q at 32 tokens, int8)"] = [[i for i, _ in r] for r in top(qa @ da.T, 10)]
    forms = [("fp32", *e.projected())]
    if int8:
        forms.append(("int8", *encoded(e.key, encoder, e.texts, e.qtexts)[:2]))
    grid = only or [(wb, wp, s) for wb in WEIGHTS_BM25 for wp in WEIGHTS_POOL for s in "abc"
                    if wp or s == "a"]
    for form, docs, qs in forms:
        plaid, _ = plaid_top(docs, qs, FUSION_DEPTH)
        rows[f"{form} default hybrid w={DEFAULT_BM25_WEIGHT:g}"] = [
            [i for i, _ in fuse(d, s, DEFAULT_BM25_WEIGHT, 10)] for d, s in zip(plaid, sparse)]
        pooled = {"a": (qa, da), "b": (mean_unit(qs), mean_unit(docs)),
                  "c": (qa, sign_rows(v.doc_mean))}
        for wb, wp, sig in grid:
            q, d = pooled[sig]
            rows[f"{form} bm25 {wb:g} pool-{sig} {wp:g}"] = [
                fuse3(dr, sr, q[j], d, wb, wp) for j, (dr, sr) in enumerate(zip(plaid, sparse))]
    show(rows, e.spans, e.queries)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default="stdlib", choices=["stdlib", "code", "faq", "readme"])
    ap.add_argument("--subset", type=int)
    ap.add_argument("--dense", action="store_true")
    ap.add_argument("--encoder", default="bundled:memex-colbert")
    ap.add_argument("--int8", action="store_true", help="also the int8 ONNX encoder end to end")
    ap.add_argument("--only", nargs="*", help="W_BM25:W_POOL:a|b|c combinations instead of the grid")
    args = ap.parse_args()
    torch.set_num_threads(1)
    only = [(float(a), float(b), c) for a, b, c in (x.split(":") for x in args.only)] if args.only else None
    evaluate(args.set, args.subset, args.dense, args.encoder, args.int8, only)


if __name__ == "__main__":
    main()
