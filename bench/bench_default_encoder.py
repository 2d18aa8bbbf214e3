"""The default encoder (``bundled:memex-colbert``) against its references, on one set.

    python -m bench.backbone_cache code --subset 1200 --dense        # encode once (cached)
    python -m bench.bench_default_encoder --set code --subset 1200 --dense   # validation, once
    python -m bench.bench_default_encoder --set stdlib --subset 1200 --weights 0.2 0.3 0.4 0.5
    python -m bench.bench_default_encoder --set stdlib --subset 1200 --int8   # + the encoder as run
    python -m bench.bench_default_encoder --shard 0/3   # (1/3, 2/3, pca: one process each)
    python -m bench.bench_default_encoder --explore --variants '[{}, {"head_lr": 3e-3}]'
    python -m bench.bench_default_encoder --install 3   # build the default from the shards

Rows (MRR@10, Recall@10, and the ratio to each target's reference):

- ``bm25s stem``: bm25s with its Snowball stemmer on the same passages;
- ``single-vector MiniLM``: all-MiniLM-L6-v2 sentence embeddings, exhaustive cosine;
- ``raw MaxSim untrained``: exhaustive fp32 MaxSim over MiniLM's raw 384-d token
  vectors, with the skiplist (the encoder memex shipped before) and with every token
  (the fp32 truth of ``bench_compression``);
- ``trained, exhaustive fp32``: the same over the trained head's vectors (with the
  encoder's own skiplist setting, as every trained row; a head over several layers,
  which the cached last-layer pass cannot feed, encodes the set in fp32 itself);
- ``trained, PLAID``: the default engine (2 bits) over the trained vectors;
- ``hybrid``: PLAID + memex BM25 fused as ``mode=hybrid`` (top ``FUSION_DEPTH`` each);
- with ``--int8``: the same through the encoder as ``memex`` runs it (int8 ONNX on a CPU),
  the last of them the default end to end.

Every other neural row comes from one cached pass of the backbone
(``bench/backbone_cache.py``): the head is frozen-backbone, so its vectors are a
projection of the cached ones (an fp32 encoder). ``--explore`` trains recipe variants on
the training packages minus ``HOLDOUT`` and ranks each held-out query's positive among all
held-out positives, and, where its backbone cache exists, on the stdlib subset (passages
with the variant's skiplist setting, then with the other one: a head applied to documents
it was not trained on).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import backbone_cache, bench_bm25
from bench.data import CACHE
from bench.metrics import Query, metrics
from bench.oracle import maxsim_scores

HOLDOUT = ("alembic", "networkx", "onnx")  # packages left out of --explore's training


def project(bags: list[np.ndarray], weight: np.ndarray | None) -> list[np.ndarray]:
    """A head's vectors from the cached unit backbone vectors (normalise(W v))."""
    if weight is None:
        return bags
    out = []
    for b in bags:
        p = b @ weight.T
        out.append((p / np.linalg.norm(p, axis=1, keepdims=True)).astype(np.float32))
    return out


def top(scores: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    return [[(int(i), float(row[i])) for i in np.argsort(-row, kind="stable")[:k]]
            for row in scores]


def plaid_top(docs: list[np.ndarray], queries: list[np.ndarray], k: int,
              nbits: int = 2) -> tuple[list[list[tuple[int, float]]], int]:
    """The default engine's top ``k`` and its bytes on disk."""
    from indexer.index import create_index

    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        index = create_index(Path(tmp) / "index", docs[0].shape[1], "plaid", nbits)
        index.commit(np.arange(len(docs), dtype=np.int64), docs, np.array([], np.int64))
        hits = index.search(queries, k)
        size = index.nbytes()
    return [[(h.passage_id, h.score) for h in row] for row in hits], size


def head_weight(encoder: str) -> tuple[np.ndarray | None, bool]:
    """The encoder's head (None: raw vectors, or a head over several layers, which the
    cached last-layer pass cannot feed) and its skiplist setting."""
    enc = load_fp32(encoder)
    if enc.projection is None or enc.config.head_layers:
        return None, enc.config.skip_punctuation
    return enc.projection.weight.detach().numpy(), enc.config.skip_punctuation


def load_fp32(encoder: str):
    from indexer.encoding.encoder import ColBERTEncoder

    enc = ColBERTEncoder.load(encoder, runtime="torch", precision="fp32")
    if enc.config.markers or enc.config.query_augmentation:
        raise SystemExit("the cached backbone pass holds no markers: cannot project this encoder")
    return enc


def query_token_weights(encoder: str, qtexts: list[str]) -> list[np.ndarray] | None:
    """Per query, the weights ``encode_queries`` scales its token vectors by (None: the
    encoder has none), so cached backbone vectors project as the encoder encodes."""
    import torch

    from indexer.encoding.encoder import weigh_query_tokens

    enc = load_fp32(encoder)
    if enc.query_weights is None:
        return None
    out = []
    for text in qtexts:
        batch = enc.tokenize_batch([text], enc.config.query_max_tokens, enc.config.query_marker)
        ones = torch.ones(1, batch["input_ids"].shape[1], 1)
        out.append(weigh_query_tokens(ones, batch["input_ids"], batch["attention_mask"].bool(),
                                      enc.query_weights)[0, :, 0].numpy())
    return out


def encoded(key: str, encoder: str, texts: list[str], qtexts: list[str],
            runtime: str | None = None, precision: str | None = None
            ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
    """Passages and queries through ``encoder`` as ``memex`` loads it (int8 ONNX on a CPU;
    or ``runtime``, ``precision``), and their pooled vectors, cached per set, encoder
    fingerprint and int8 recipe (``MEMEX_ENCODER_INT8_RECIPE``)."""
    from indexer.encoding.encoder import ColBERTEncoder

    enc = ColBERTEncoder.load(encoder, runtime=runtime, precision=precision)
    recipe = getattr(enc.backend, "recipe", None)  # int8 ONNX: which layers stayed fp32
    cache = CACHE / (f"encoded-{key}-{enc.runtime}-{enc.precision}{'-' + recipe if recipe else ''}"
                     f"-{enc.fingerprint}-pooled.npz")
    if not cache.exists():
        t = time.perf_counter()
        docs, doc_pooled = enc.encode_documents_and_pooled(texts, dtype=np.float16)
        qs, query_pooled = enc.encode_queries_and_pooled(qtexts)
        print(f"encoded {len(texts)} passages ({enc.runtime} {enc.precision}) in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        np.savez(cache.with_suffix(".tmp.npz"), doc=np.concatenate(docs),
                 doc_len=[len(d) for d in docs], query=np.concatenate(qs),
                 query_len=[len(q) for q in qs], doc_pooled=doc_pooled,
                 query_pooled=query_pooled)
        cache.with_suffix(".tmp.npz").rename(cache)
    z = np.load(cache)
    split = backbone_cache.split_bags
    return (split(z["doc"], z["doc_len"]), split(z["query"], z["query_len"]), z["doc_pooled"],
            z["query_pooled"])


def hybrid(dense: list[list[tuple[int, float]]], sparse: list[list[tuple[int, float]]],
           query_pooled: np.ndarray, doc_pooled: np.ndarray, pooled_weight: float,
           k: int = 10, bm25_weight: float | None = None) -> list[list[int]]:
    """``mode=hybrid`` as ``indexer/corpus/search.py`` runs it: BM25 at the default
    weight (or ``bm25_weight``), and the pooled term from the passages' stored sign bits."""
    from indexer import pooled
    from indexer.bm25 import DEFAULT_BM25_WEIGHT, fuse

    packed = pooled.pack(doc_pooled)
    out = []
    for q, d, s in zip(query_pooled, dense, sparse):
        cands = sorted({p for p, _ in d} | {p for p, _ in s})
        scores = dict(zip(cands, pooled.scores(q, [packed[c] for c in cands]).tolist()))
        w = DEFAULT_BM25_WEIGHT if bm25_weight is None else bm25_weight
        out.append([p for p, _ in fuse(d, s, w, k, scores, pooled_weight)])
    return out


@dataclass
class EvalInputs:
    """One evaluation subset with its cached backbone vectors, its BM25 candidates and the
    baseline rankings every encoder comparison prints (shared by the fusion benchmarks)."""

    key: str
    texts: list[str]
    qtexts: list[str]
    spans: list[tuple[str, int, int]]
    queries: list[Query]
    vectors: Any  # backbone_cache.load(..., skip_punctuation=True)
    every: list[np.ndarray]  # passage vectors keeping every token
    weight: np.ndarray | None  # the encoder's head
    skip: bool  # the encoder's skiplist setting
    head_layers: tuple[int, ...]  # what the head reads (several: the cache cannot feed it)
    query_weights: list[np.ndarray] | None  # per query, its tokens' weights (None: unweighted)
    sparse: list[list[tuple[int, float]]]  # memex BM25, top FUSION_DEPTH
    rows: dict[str, list[list[int]]]  # baseline rankings, top 10

    def projected(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Passages and queries through the encoder's head, passages with its own skiplist."""
        if self.head_layers:
            raise SystemExit(f"the head reads layers {list(self.head_layers)}; the cached pass "
                             "holds the last one (bench_default_encoder encodes such a head)")
        docs = self.vectors.docs if self.skip else self.every
        queries = project(self.vectors.queries, self.weight)
        if self.query_weights is not None:
            queries = [q * w[:, None] for q, w in zip(queries, self.query_weights)]
        return project(docs, self.weight), queries


def load_eval_inputs(name: str, subset: int | None, dense: bool, encoder: str) -> EvalInputs:
    from indexer.bm25 import FUSION_DEPTH, BM25Index

    ps, queries, key = backbone_cache.load_set(name, subset, dense)
    texts, qtexts = [p["text"] for p in ps], [q["text"] for q in queries]
    w, skip = head_weight(encoder)
    v = backbone_cache.load(key, texts, qtexts, skip_punctuation=True)
    every = backbone_cache.load(key, texts, qtexts, skip_punctuation=False).docs
    print(f"{key}: {len(ps)} passages, {len(queries)} queries; encoder {encoder} "
          f"(skip_punctuation {skip})")
    rows: dict[str, list[list[int]]] = {}
    rows["bm25s stem"] = bench_bm25.rank_with(bench_bm25.bm25s_terms(None), texts, qtexts)
    sparse = BM25Index.build(list(range(len(texts))), texts).search(qtexts, FUSION_DEPTH)
    rows["memex BM25"] = [[i for i, _ in h[:10]] for h in sparse]
    rows["single-vector MiniLM"] = [[i for i, _ in r] for r in top(v.query_mean @ v.doc_mean.T, 10)]
    rows["raw MaxSim untrained (384-d fp32)"] = [
        [i for i, _ in r] for r in top(maxsim_scores(v.queries, v.docs), 10)]
    rows["raw MaxSim untrained, every token"] = [
        [i for i, _ in r] for r in top(maxsim_scores(v.queries, every), 10)]
    spans = [(p["path"], p["start"], p["end"]) for p in ps]
    return EvalInputs(key, texts, qtexts, spans, queries, v, every, w, skip,
                      load_fp32(encoder).config.head_layers, query_token_weights(encoder, qtexts),
                      sparse, rows)


def evaluate(name: str, subset: int | None, dense: bool, encoder: str,
             weights: list[float], int8: bool = False) -> None:
    from indexer.bm25 import DEFAULT_BM25_WEIGHT, FUSION_DEPTH, fuse

    t = time.perf_counter()
    e = load_eval_inputs(name, subset, dense, encoder)
    key, texts, qtexts, sparse, rows = e.key, e.texts, e.qtexts, e.sparse, e.rows
    fp32 = load_fp32(encoder)
    pooled_weight = fp32.config.pooled_weight
    if fp32.config.head_layers:  # the cached pass holds the last layer: encode in fp32
        docs, qs, doc_pooled, query_pooled = encoded(key, encoder, texts, qtexts, "torch", "fp32")
    else:
        docs, qs = e.projected()
        if pooled_weight > 0:  # fp32 backbone's pooled vectors (the cached pass), as stored
            from bench.bench_pooled_fusion import pooled_queries

            query_pooled = fp32.rotate_pooled(pooled_queries(encoder, qtexts))
            doc_pooled = fp32.rotate_pooled(e.vectors.doc_mean)
    exhaustive = top(maxsim_scores(qs, docs), FUSION_DEPTH)
    rows[f"trained, exhaustive fp32 ({docs[0].shape[1]}-d)"] = [[i for i, _ in r[:10]] for r in exhaustive]
    plaid, nbytes = plaid_top(docs, qs, FUSION_DEPTH)
    rows["trained, PLAID 2-bit"] = [[i for i, _ in r[:10]] for r in plaid]
    for wt in sorted({DEFAULT_BM25_WEIGHT, *weights}):
        tag = " (default)" if wt == DEFAULT_BM25_WEIGHT else ""
        rows[f"hybrid PLAID w={wt:g}{tag}"] = [[i for i, _ in fuse(d, s, wt, 10)]
                                              for d, s in zip(plaid, sparse)]
        rows[f"hybrid exhaustive w={wt:g}"] = [[i for i, _ in fuse(d, s, wt, 10)]
                                               for d, s in zip(exhaustive, sparse)]
    if pooled_weight > 0:
        rows[f"hybrid exhaustive w={DEFAULT_BM25_WEIGHT:g} + pooled {pooled_weight:g}"] = hybrid(
            exhaustive, sparse, query_pooled, doc_pooled, pooled_weight)
        rows[f"hybrid PLAID w={DEFAULT_BM25_WEIGHT:g} + pooled {pooled_weight:g}"] = hybrid(
            plaid, sparse, query_pooled, doc_pooled, pooled_weight)
    if int8:  # the default end to end: the encoder as memex runs it, then PLAID and BM25
        docs8, qs8, dpool8, qpool8 = encoded(key, encoder, texts, qtexts)
        rows["int8 encoder, exhaustive"] = [[i for i, _ in r] for r in top(maxsim_scores(qs8, docs8), 10)]
        plaid8, _ = plaid_top(docs8, qs8, FUSION_DEPTH)
        rows["int8 encoder, PLAID 2-bit"] = [[i for i, _ in r[:10]] for r in plaid8]
        rows["int8 hybrid PLAID, BM25 only"] = [
            [i for i, _ in fuse(d, s, DEFAULT_BM25_WEIGHT, 10)] for d, s in zip(plaid8, sparse)]
        rows["int8 hybrid PLAID (the default)"] = hybrid(plaid8, sparse, qpool8, dpool8,
                                                         pooled_weight)
        for wt in weights:
            rows[f"int8 hybrid PLAID, BM25 at {wt:g}"] = hybrid(plaid8, sparse, qpool8, dpool8,
                                                                pooled_weight, bm25_weight=wt)
    print(f"(took {time.perf_counter() - t:.0f} s; PLAID index {nbytes / len(texts):.0f} B/passage)")
    show(rows, e.spans, e.queries)


def show(rows: dict[str, list[list[int]]], spans: list, queries: list[Query]) -> None:
    m = {label: metrics([[spans[i] for i in r] for r in ranked], queries)
         for label, ranked in rows.items()}
    refs = {"bm25s": m["bm25s stem"]["MRR@10"], "1-vec": m["single-vector MiniLM"]["MRR@10"],
            "raw": m["raw MaxSim untrained (384-d fp32)"]["MRR@10"],
            "raw-all": m["raw MaxSim untrained, every token"]["MRR@10"]}
    print(f"{'ranking':40s} {'R@10':>6s} {'MRR@10':>7s}  " + "  ".join(f"{k:>6s}" for k in refs))
    for label, x in m.items():
        ratios = "  ".join(f"{x['MRR@10'] / r:5.2f}x" for r in refs.values())
        print(f"{label:40s} {x['R@10']:6.3f} {x['MRR@10']:7.4f}  {ratios}")


def explore(variants: list[dict[str, Any]], per_package: int, shards: int) -> None:
    """Train each variant on the non-held-out pairs; MRR@10 of held-out pairs (and stdlib)."""
    from indexer.training.default_encoder import RECIPE
    from indexer.training.loop import fit
    from indexer.training.model import maxsim

    every, _ = saved_pairs(per_package)
    held = [e for e in every if e.positive.split("/", 1)[0] in HOLDOUT]
    train_ex = [e for e in every if e.positive.split("/", 1)[0] not in HOLDOUT]
    print(f"{len(train_ex)} training pairs, {len(held)} held out ({', '.join(HOLDOUT)})")
    cache = load_shards(per_package, shards)
    reuse_pca_heads()
    stdlib = stdlib_vectors()
    for overrides in variants:
        cfg = replace(RECIPE, **overrides)
        t = time.perf_counter()
        model, stats = fit(cfg, train_ex, frozen_cache=cache)
        model.cache = cache  # fit lets go of it; the held-out pairs read it too
        with torch.no_grad():
            q, qm = model.encode_queries([e.query for e in held])
            d, dm = model.encode_documents([e.positive for e in held])
            scores = maxsim(q, qm, d, dm).numpy()
        ranks = (scores > np.diag(scores)[:, None]).sum(1)
        mrr = float(np.mean(np.where(ranks < 10, 1 / (ranks + 1), 0)))
        line = f"{json.dumps(overrides):50s} held-out MRR@10 {mrr:.4f}"
        if stdlib:
            skip, weight = model.encoder.config.skip_punctuation, model.head.weight.detach().numpy()
            line += (f"  stdlib {stdlib_mrr(stdlib, weight, skip):.4f} "
                     f"(other skiplist {stdlib_mrr(stdlib, weight, not skip):.4f})")
        print(f"{line}  loss {stats['first_loss']:.3f}->{stats['last_loss']:.3f} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)


def load_shards(per_package: int, shards: int) -> dict:
    cache: dict = {}
    for i in range(shards):
        cache.update(torch.load(CACHE / f"default-frozen-{per_package}.{i}of{shards}.pt"))
    return cache


def saved_pairs(per_package: int) -> tuple[list, dict]:
    """``default_encoder.examples(per_package)``, mined once into ``bench/.cache``."""
    from indexer.training.data import Example
    from indexer.training.default_encoder import examples

    path = CACHE / f"default-pairs-{per_package}.json"
    if not path.exists():
        ex, data = examples(per_package=per_package)
        path.write_text(json.dumps({"data": data, "pairs": [[e.query, e.positive] for e in ex]}))
    saved = json.loads(path.read_text())
    return [Example(query=q, positive=p) for q, p in saved["pairs"]], saved["data"]


def shard(part: str, per_package: int) -> None:
    """Backbone outputs of every ``n``-th of ``train.warm_cache``'s batches (``part`` =
    ``i/n``), or with ``part`` = ``pca`` the recipe's PCA head: the build's encoding
    spread over processes, each batch as the build itself forms it."""
    from indexer.encoding.encoder import ColBERTEncoder
    from indexer.training.default_encoder import RECIPE
    from indexer.training.model import TrainableColBERT, pca_head

    ex, _ = saved_pairs(per_package)
    enc = ColBERTEncoder.load(RECIPE.base, runtime="torch", precision="fp32")
    if part == "pca":
        if RECIPE.skip_punctuation is not None:
            enc.config = replace(enc.config, skip_punctuation=RECIPE.skip_punctuation)
        head = pca_head(enc, [e.positive for e in ex][:RECIPE.pca_passages], RECIPE.dim)
        n = min(len(ex), RECIPE.pca_passages)
        torch.save(head.weight.detach(), pca_file(RECIPE.dim, n, enc.config.skip_punctuation))
        return
    i, n = map(int, part.split("/"))
    enc.projection = torch.nn.Linear(enc.model.config.hidden_size, RECIPE.dim, bias=False)
    model = TrainableColBERT(enc)
    model.cache_frozen_layers(0)
    queries = sorted({e.query for e in ex}, key=len)
    passages = sorted({e.positive for e in ex}, key=len)
    batches = [(model.encode_queries, queries[j:j + 32]) for j in range(0, len(queries), 32)]
    batches += [(model.encode_documents, passages[j:j + 32]) for j in range(0, len(passages), 32)]
    t = time.perf_counter()
    with torch.no_grad():
        for k, (encode, texts) in enumerate(batches[i::n]):
            encode(texts)
            if k % 10 == 0:
                print(f"  shard {part}: {k}/{len(batches[i::n])} ({time.perf_counter() - t:.0f} s)",
                      flush=True)
    torch.save(model.cache, CACHE / f"default-frozen-{per_package}.{i}of{n}.pt")


def install(per_package: int, shards: int) -> None:
    from indexer import durable
    from indexer.models import default_cache_dir
    from indexer.training.default_encoder import DIRECTORY, build

    cache = load_shards(per_package, shards)
    reuse_pca_heads()  # `--shard pca` computed it from the same passages
    target = default_cache_dir() / DIRECTORY
    with durable.exclusive_lock(default_cache_dir() / ".memex-colbert-build"):
        t = time.perf_counter()
        info = build(target, per_package=per_package, frozen_cache=cache,
                     mined=saved_pairs(per_package))
    print(f"built {target} in {time.perf_counter() - t:.0f} s: {info['stats']}")


def reuse_pca_heads() -> None:
    """Variants of one dim share their PCA start: ``--shard pca``'s for the recipe's, else
    computed once per process (it costs a full forward pass of ``pca_passages`` passages)."""
    import importlib

    train_module = importlib.import_module("indexer.training.loop")  # not the function
    compute, memo = train_module.pca_head, {}

    def pca_head(encoder, passages: list[str], dim: int) -> torch.nn.Linear:
        skip = encoder.config.skip_punctuation
        key = (dim, skip, tuple(passages))
        saved = pca_file(dim, len(passages), skip)
        if key not in memo and saved.exists():
            memo[key] = torch.load(saved)
        if key not in memo:
            memo[key] = compute(encoder, passages, dim).weight.detach().clone()
        head = torch.nn.Linear(memo[key].shape[1], dim, bias=False)
        head.weight.data = memo[key].clone()
        return head

    train_module.pca_head = pca_head


def pca_file(dim: int, passages: int, skip_punctuation: bool) -> Path:
    return CACHE / f"default-pca-{dim}-{passages}{'' if skip_punctuation else '-every'}.pt"


def stdlib_vectors(subset: int = 1200) -> tuple | None:
    """Spans, queries, and the cached vectors with and without the skiplist."""
    if not (CACHE / f"backbone-stdlib-{subset}.npz").exists():
        return None
    ps, queries, key = backbone_cache.load_set("stdlib", subset)
    texts, qtexts = [p["text"] for p in ps], [q["text"] for q in queries]
    v = {skip: backbone_cache.load(key, texts, qtexts, skip) for skip in (True, False)}
    return [(p["path"], p["start"], p["end"]) for p in ps], queries, v


def stdlib_mrr(stdlib: tuple, weight: np.ndarray | None, skip_punctuation: bool) -> float:
    spans, queries, vs = stdlib
    v = vs[skip_punctuation]
    ranked = top(maxsim_scores(project(v.queries, weight), project(v.docs, weight)), 10)
    return metrics([[spans[i] for i, _ in r] for r in ranked], queries)["MRR@10"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default="code", choices=["stdlib", "code", "faq", "readme"])
    ap.add_argument("--subset", type=int, help="about N passages of whole files (seed 0)")
    ap.add_argument("--dense", action="store_true", help="backbone_cache.dense_subset")
    ap.add_argument("--encoder", default="bundled:memex-colbert")
    ap.add_argument("--weights", type=float, nargs="*", default=[], help="more BM25 weights")
    ap.add_argument("--int8", action="store_true", help="also through the encoder as memex "
                    "runs it (int8 ONNX; encodes the set once, cached)")
    ap.add_argument("--explore", action="store_true", help="train recipe variants instead")
    ap.add_argument("--per-package", type=int, default=100)
    ap.add_argument("--shards", type=int, default=3, help="--shard parts --explore reads")
    ap.add_argument("--variants", default='[{}]', help="JSON list of TrainConfig overrides")
    ap.add_argument("--shard", metavar="I/N|pca", help="encode one part of the build's texts")
    ap.add_argument("--install", type=int, metavar="N", help="build bundled:memex-colbert into "
                    "the model cache from N --shard parts (`memex models`, encoding spread out)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.shard:
        shard(args.shard, args.per_package)
    elif args.install:
        install(args.per_package, args.install)
    elif args.explore:
        explore(json.loads(args.variants), args.per_package, args.shards)
    else:
        evaluate(args.set, args.subset, args.dense, args.encoder, args.weights, args.int8)


if __name__ == "__main__":
    main()
