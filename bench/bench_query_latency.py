"""Query latency of the default encoder against the one issue 17 was filed with, one core.

    OMP_NUM_THREADS=1 python -m bench.bench_query_latency --set stdlib --subset 1200

Issue 17's bar: "query latency no worse than today's (p50, one core, search and encoding
measured separately)". "Today's" is the default when it was filed, ``bundled:minilm``
(raw 384-d MiniLM token vectors, punctuation skiplist); the default now is
``bundled:memex-colbert`` (the same backbone, a 64-d head). For each encoder:

- **encoding**: one query at a time through the encoder as ``memex`` loads it
  (``ColBERTEncoder.load(name)``: the fastest validated runtime, int8 ONNX on a CPU),
  ``MEMEX_ENCODER_THREADS=1``; an int8 runtime uses the old encoder's recipe at filing
  (``AT_FILING_RECIPE``) and the product's recipe for the new one (``--recipes`` sets both:
  ``--recipes X X`` compares the two encoders alone);
- **search**: the default engine (PLAID, 2 bits, default search parameters) over the
  set's passages, given the encoded query, top ``FUSION_DEPTH`` (what ``mode=hybrid``
  asks the dense side for). The index holds the passages' fp32 vectors from the cached
  backbone pass (``bench/backbone_cache.py``) projected through the encoder's head with
  the encoder's own skiplist setting (a head over several layers, which the cached pass
  cannot feed, encodes the passages itself); the memex BM25 half of hybrid is the same for
  both encoders and is timed once;
- **pooled term**, for a new encoder with one (``pooled_weight``): what hybrid search adds
  to read and score its candidates' pooled vectors, over a corpus of the set's passages.

Both encoders run in one process, interleaved query by query (the order alternating),
so load on the machine affects both alike; the p50 of every pass is printed (its spread is the noise), then
the p50 over all passes and the ratio new / old.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench import backbone_cache
from bench.bench_default_encoder import project
from bench.data import CACHE

AT_FILING_RECIPE = "ffn-down-fp32-first1"  # the int8 recipe of the default when 17 was filed


def load_encoder(name: str, recipe: str | None):
    from indexer.encoding.encoder import ColBERTEncoder

    enc = ColBERTEncoder.load(name, recipe=recipe)
    return enc, (None if enc.projection is None else enc.projection.weight.detach().numpy())


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="stdlib", choices=["stdlib", "code", "faq", "readme"])
    ap.add_argument("--subset", type=int, default=1200)
    ap.add_argument("--dense", action="store_true", help="backbone_cache.dense_subset")
    ap.add_argument("--encoders", nargs=2, default=["bundled:minilm", "bundled:memex-colbert"],
                    metavar=("OLD", "NEW"))
    ap.add_argument("--recipes", nargs=2, default=[AT_FILING_RECIPE, None], metavar=("OLD", "NEW"),
                    help="int8 recipes (an int8 runtime only); NEW defaults to the product's")
    ap.add_argument("--passes", type=int, default=10)
    args = ap.parse_args()
    os.environ["MEMEX_ENCODER_THREADS"] = "1"
    torch.set_num_threads(1)
    from indexer.bm25 import FUSION_DEPTH, BM25Index
    from indexer.index.plaid import PlaidIndex

    ps, queries, key = backbone_cache.load_set(args.set, args.subset, args.dense)
    texts, qtexts = [p["text"] for p in ps], [q["text"] for q in queries]
    print(f"{key}: {len(ps)} passages, {len(qtexts)} queries; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        setups = []
        for k, (encoder_name, recipe) in enumerate(zip(args.encoders, args.recipes)):
            enc, weight = load_encoder(encoder_name, recipe)
            name = f"{encoder_name} ({enc.backend.recipe or enc.precision})" if enc.backend \
                else encoder_name
            if enc.config.head_layers:  # the cached pass holds the last layer: encode anew
                docs = enc.encode_documents(texts)
            else:
                v = backbone_cache.load(key, texts, qtexts, enc.config.skip_punctuation)
                docs = project(v.docs, weight)
            index = PlaidIndex.create(Path(tmp) / str(k), docs[0].shape[1])
            index.commit(np.arange(len(docs), dtype=np.int64), [d.astype(np.float16) for d in docs],
                         np.array([], np.int64))
            encoded = [enc.encode_queries([q])[0] for q in qtexts]  # also warms the runtime
            index.search(encoded[:8], FUSION_DEPTH)
            print(f"{name}: {enc.runtime} {enc.precision}, {enc.dim}-d, "
                  f"{sum(len(d) for d in docs) / len(docs):.0f} tokens a passage, "
                  f"{index.nbytes() / len(docs):.0f} B/passage", flush=True)
            setups.append((name, enc, index, encoded))
        bm25 = BM25Index.build(list(range(len(texts))), texts)
        times: dict[tuple[str, str], list[float]] = {}
        for p in range(args.passes):
            pass_times: dict[tuple[str, str], list[float]] = {}
            for i, q in enumerate(qtexts):  # both encoders per query, in alternating order
                for name, enc, index, encoded in setups[::1 if (i + p) % 2 else -1]:
                    pass_times.setdefault((name, "encode"), []).append(
                        timed(enc.encode_queries, [q]))
                    pass_times.setdefault((name, "search"), []).append(
                        timed(index.search, [encoded[i]], FUSION_DEPTH))
                pass_times.setdefault(("bm25", "search"), []).append(
                    timed(bm25.search, [q], FUSION_DEPTH))
            for k, v in pass_times.items():
                times.setdefault(k, []).extend(v)
            print(f"pass {p + 1}: " + "; ".join(
                f"{name} encode {np.median(pass_times[(name, 'encode')]) * 1e3:.2f} ms search "
                f"{np.median(pass_times[(name, 'search')]) * 1e3:.2f} ms" for name, *_ in setups)
                + f"; BM25 {np.median(pass_times[('bm25', 'search')]) * 1e3:.2f} ms", flush=True)
        old, new = (name for name, *_ in setups)
        pooled = pooled_term_times(setups[1][1], texts, qtexts, Path(tmp), args.passes)
    print(f"p50 over {args.passes} passes x {len(qtexts)} queries, 1 thread "
          f"(load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())}):")
    for part in ("encode", "search"):
        a, b = np.median(times[(old, part)]) * 1e3, np.median(times[(new, part)]) * 1e3
        print(f"  {part:6s}  {old} {a:.2f} ms  {new} {b:.2f} ms  ratio new/old {b / a:.2f}x")
    print(f"  BM25 search (same for both) {np.median(times[('bm25', 'search')]) * 1e3:.2f} ms")
    if pooled:
        a, b, c = (np.median(x) * 1e3 for x in (times[(old, "search")], times[(new, "search")],
                                                  pooled))
        print(f"  {new}'s pooled term (read + score the hybrid candidates) {c:.2f} ms; search "
              f"+ pooled {b + c:.2f} ms, ratio to {old}'s search {(b + c) / a:.2f}x")


def pooled_term_times(encoder, texts: list[str], qtexts: list[str], tmp: Path,
                      passes: int) -> list[float]:
    """What hybrid search adds for an encoder with a pooled term
    (``indexer/corpus/search.pooled_scores``): reading the candidates' packed vectors from
    SQLite and scoring them, timed per query over a real corpus of the set's passages."""
    from indexer.bm25 import FUSION_DEPTH
    from indexer.corpus import Corpora, DocumentInput
    from indexer.corpus.search import pooled_scores

    if encoder.config.pooled_weight <= 0:
        return []
    corpora = Corpora(tmp / "home", encoder=encoder)
    corpora.create("c")
    corpora.upsert_documents("c", [DocumentInput(str(i), t) for i, t in enumerate(texts)])
    vectors, pooled = encoder.encode_queries_and_pooled(qtexts)
    dense = [[(h.passage_id, h.score) for h in r]
             for r in corpora.index("c").search(vectors, FUSION_DEPTH)]
    sparse = corpora.bm25("c").search(qtexts, FUSION_DEPTH)
    out = []
    for _ in range(passes):
        for i in range(len(qtexts)):
            out.append(timed(pooled_scores, corpora, pooled[i:i + 1], dense[i:i + 1],
                             sparse[i:i + 1]))
    return out


if __name__ == "__main__":
    main()
