"""Which backbone layers, and which batch, the default's 64-d head should train on
(stdlib tuning set only).

The default head reads MiniLM's last hidden states. Lower layers keep more of a token's
surface form (identifiers), which code search leans on, and they cost nothing more to
compute: the backbone runs them anyway. This trains the default's recipe (64-d, every
token, idf-weighted queries, in-batch negatives, 300 steps) on the default's pairs with the
head reading one layer or several (each L2-normalised, concatenated), and scores exhaustive
MaxSim on ``stdlib --subset 3000 --dense`` (341 queries) beside raw 384-d MaxSim, alone and
fused with BM25 and the pooled term as ``mode=hybrid`` fuses them.

    PYTHONPATH=$PWD python -m bench.explore_head_inputs '[{"layers": [6]}, {"layers": [4, 6]}]'

A variant: ``layers`` (0 = embeddings, 6 = the last), optional ``batch`` (32), ``steps``
(300), ``lr`` (1e-3). The backbone's every layer is cached once per text set
(``bench/.cache/layers-*.npz``, several GB).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time

import numpy as np
import torch

from bench import backbone_cache
from bench.bench_default_encoder import saved_pairs, top
from bench.data import CACHE
from bench.metrics import metrics
from bench.oracle import maxsim_scores


@torch.inference_mode()
def all_layers(key: str, texts: list[str], max_tokens: int, query: bool
               ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per kept token, every layer's unit vector ([tokens, layers, 384] float16), the
    token lengths, and per text its token ids; cached under ``key``."""
    from indexer.encoding.encoder import ColBERTEncoder

    cache = CACHE / f"layers-{key}.npz"
    if not cache.exists():
        enc = ColBERTEncoder.load("bundled:minilm", runtime="torch", precision="fp32")
        special = torch.tensor([i for i in enc.tokenizer.all_special_ids
                                if i != enc.tokenizer.cls_token_id])
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list = [None] * len(texts)
        ids: list = [None] * len(texts)
        t0 = time.perf_counter()
        for b in range(0, len(order), 32):
            idx = order[b:b + 32]
            batch = enc.tokenize_batch([texts[i] for i in idx], max_tokens, "")
            states = torch.stack(enc.model(**batch, output_hidden_states=True).hidden_states, 2)
            keep = batch["attention_mask"].bool()
            if not query:
                keep &= ~torch.isin(batch["input_ids"], special)
            unit = torch.nn.functional.normalize(states, dim=-1)
            for row, i in enumerate(idx):
                out[i] = unit[row][keep[row]].numpy().astype(np.float16)
                ids[i] = batch["input_ids"][row][keep[row]].numpy()
            if (b // 32) % 20 == 0:
                print(f"  {key}: {b + len(idx)}/{len(texts)} ({time.perf_counter() - t0:.0f} s)",
                      flush=True)
        np.savez(cache.with_suffix(".tmp.npz"), vectors=np.concatenate(out),
                 lengths=[len(o) for o in out], ids=np.concatenate(ids))
        cache.with_suffix(".tmp.npz").rename(cache)
    z = np.load(cache)
    cuts = np.cumsum(z["lengths"])[:-1]
    return z["vectors"], z["lengths"], np.split(z["ids"], cuts)


class Bags:
    """One text set's cached layers, sliced per text and per chosen layers."""

    def __init__(self, key: str, texts: list[str], max_tokens: int, query: bool) -> None:
        self.vectors, lengths, self.ids = all_layers(key, texts, max_tokens, query)
        self.starts = np.concatenate([[0], np.cumsum(lengths)])

    def inputs(self, i: int, layers: list[int]) -> torch.Tensor:
        v = self.vectors[self.starts[i]:self.starts[i + 1], layers]
        return torch.from_numpy(v.reshape(len(v), -1).astype(np.float32))


def query_weights(ids: list[np.ndarray]) -> list[torch.Tensor]:
    """The default's idf weights per query token, rescaled to mean 1 (as it encodes)."""
    from indexer.encoding.encoder import ColBERTEncoder

    w = ColBERTEncoder.load("bundled:memex-colbert", runtime="torch").query_weights
    out = []
    for row in ids:
        x = w[torch.from_numpy(row)].float()
        out.append(x * len(x) / x.sum().clamp_min(1e-6))
    return out


def padded(bags: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(b) for b in bags)
    x = torch.zeros(len(bags), n, bags[0].shape[1])
    mask = torch.zeros(len(bags), n, dtype=torch.bool)
    for i, b in enumerate(bags):
        x[i, :len(b)], mask[i, :len(b)] = b, True
    return x, mask


def pca(last: torch.Tensor, dim: int) -> torch.Tensor:
    second = (last.double().T @ last.double()) / len(last)
    _, vecs = torch.linalg.eigh(second)
    return vecs[:, -dim:].flip(1).T.float()  # (dim, 384)


def fit(variant: dict, q_bags: Bags, d_bags: Bags, qw: list[torch.Tensor], n: int) -> torch.Tensor:
    layers, dim = variant["layers"], 64
    batch, steps, lr = variant.get("batch", 32), variant.get("steps", 300), variant.get("lr", 1e-3)
    random.seed(0)
    torch.manual_seed(0)
    last = torch.cat([d_bags.inputs(i, [6]) for i in range(min(256, n))])
    weight = torch.zeros(dim, 384 * len(layers))
    start = pca(last, dim)
    if 6 in layers:  # step 0 is the default's PCA start: the other layers' blocks begin at 0
        weight[:, 384 * layers.index(6):384 * (layers.index(6) + 1)] = start
    else:
        for j in range(len(layers)):
            weight[:, 384 * j:384 * (j + 1)] = start / len(layers)
    weight.requires_grad_(True)
    opt = torch.optim.AdamW([weight], lr=lr, weight_decay=0.0)
    order: list[int] = []
    for step in range(steps):
        warm = min(1.0, (step + 1) / 30)
        opt.param_groups[0]["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * step / steps))
        if len(order) < batch:
            order += random.sample(range(n), n)
        rows = [order.pop() for _ in range(batch)]
        q, qm = padded([q_bags.inputs(i, layers) for i in rows])
        d, dm = padded([d_bags.inputs(i, layers) for i in rows])
        qv = torch.nn.functional.normalize(q @ weight.T, dim=-1) * padded(
            [qw[i][:, None] for i in rows])[0]
        dv = torch.nn.functional.normalize(d @ weight.T, dim=-1)
        sims = torch.einsum("bqh,nth->bnqt", qv, dv).masked_fill(~dm[None, :, None, :], -1e4)
        scores = sims.max(-1).values.masked_fill(~qm[:, None, :], 0).sum(-1)
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(batch))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([weight], 1.0)
        opt.step()
    return weight.detach()


def project(bags: Bags, layers: list[int], weight: torch.Tensor | None, count: int,
            weights: list[torch.Tensor] | None = None) -> list[np.ndarray]:
    out = []
    for i in range(count):
        x = bags.inputs(i, layers)
        v = x if weight is None else torch.nn.functional.normalize(x @ weight.T, dim=-1)
        if weights is not None:
            v = v * weights[i][:, None]
        out.append(v.numpy())
    return out


def hybrid_mrr(key: str, texts: list[str], qtexts: list[str], spans: list, queries: list):
    """MRR@10 of exhaustive MaxSim fused with memex BM25 and the default's pooled term."""
    from bench.bench_default_encoder import hybrid
    from bench.bench_pooled_fusion import pooled_queries
    from indexer.bm25 import FUSION_DEPTH, BM25Index
    from indexer.encoding.encoder import ColBERTEncoder

    sparse = BM25Index.build(list(range(len(texts))), texts).search(qtexts, FUSION_DEPTH)
    default = ColBERTEncoder.load("bundled:memex-colbert", runtime="torch")
    doc_pooled = default.rotate_pooled(backbone_cache.load(key, texts, qtexts).doc_mean)
    query_pooled = default.rotate_pooled(pooled_queries("bundled:memex-colbert", qtexts))

    def fused(qs: list[np.ndarray], ds: list[np.ndarray]) -> float:
        dense = top(maxsim_scores(qs, ds), FUSION_DEPTH)
        ranked = hybrid(dense, sparse, query_pooled, doc_pooled, default.config.pooled_weight)
        return metrics([[spans[i] for i in r] for r in ranked], queries)["MRR@10"]

    return fused


def main() -> None:
    torch.set_num_threads(2)
    pairs, _ = saved_pairs(100)
    ps, queries, key = backbone_cache.load_set("stdlib", 3000, True)
    texts, qtexts = [p["text"] for p in ps], [q["text"] for q in queries]
    spans = [(p["path"], p["start"], p["end"]) for p in ps]
    train_q = Bags("pairs-100-queries", [e.query for e in pairs], 32, True)
    train_d = Bags("pairs-100-passages", [e.positive for e in pairs], 256, False)
    eval_q = Bags(f"{key}-queries", qtexts, 32, True)
    eval_d = Bags(f"{key}-passages", texts, 256, False)
    train_w, eval_w = query_weights(train_q.ids), query_weights(eval_q.ids)

    def mrr(qs: list[np.ndarray], ds: list[np.ndarray]) -> float:
        ranked = top(maxsim_scores(qs, ds), 10)
        return metrics([[spans[i] for i, _ in r] for r in ranked], queries)["MRR@10"]

    fused = hybrid_mrr(key, texts, qtexts, spans, queries)

    print(f"{len(pairs)} pairs; {key}: {len(texts)} passages, {len(qtexts)} queries", flush=True)
    raw_q, raw_d = project(eval_q, [6], None, len(qtexts)), project(eval_d, [6], None, len(texts))
    print(f"raw 384-d MaxSim over every token: {mrr(raw_q, raw_d):.4f}, hybrid "
          f"{fused(raw_q, raw_d):.4f}", flush=True)
    for variant in json.loads(sys.argv[1]):
        t = time.perf_counter()
        w = fit(variant, train_q, train_d, train_w, len(pairs))
        layers = variant["layers"]
        qs, ds = project(eval_q, layers, w, len(qtexts), eval_w), project(eval_d, layers, w, len(texts))
        print(f"{json.dumps(variant)}: MRR@10 {mrr(qs, ds):.4f}, hybrid {fused(qs, ds):.4f} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
