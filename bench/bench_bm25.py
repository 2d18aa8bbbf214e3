"""memex's BM25 against plain bm25s on the same passages, without the neural encoder.

    python -m bench.bench_bm25 [--set stdlib|code|faq] [--variants] [--hybrid N]

Passages are cut as ``memex index`` cuts them (``chunk_document``: 30-line windows,
stride 15, shortened to the encoder's token budget; only the tokenizer is used) and
carry the path line in front (``passage_text``); they are cached in
``bench/.cache/passages-<set>.json``. Every row indexes the same passages with bm25s
(same BM25 parameters) and differs only in the terms it feeds it:

- ``bm25s stem``: ``bm25s.tokenize`` with the English Snowball stemmer, no stopwords;
- ``bm25s stem+stop``: the same with bm25s's English stopwords (memex before #17);
- ``memex``: ``indexer.bm25.BM25Index`` as shipped (``build`` + ``search``);
- with ``--variants``, ``indexer.bm25.terms`` with one setting changed at a time.

With ``--hybrid N``, a seeded subset of about ``N`` passages (whole files, ~75% of them
files holding a query's target; queries: those whose target is in it) is also encoded
with memex's default encoder (cached in ``bench/.cache/vecs-<set>-<N>.npz``) and ranked
by ColBERT (exhaustive MaxSim over the encoder's vectors: no PLAID compression), by
BM25, and by their fusion as ``mode=hybrid`` does (``indexer.bm25.fuse`` of the top
``FUSION_DEPTH`` of each at ``DEFAULT_BM25_WEIGHT``, and at ``--weights``).

Tune on ``stdlib``; ``code`` and ``faq`` are the validation sets (``bench.validation_sets``).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.data import CACHE, stdlib, stdlib_queries
from bench.metrics import Query, Span, metrics
from bench.validation_sets import load as load_validation


def passages(name: str, tree: Path) -> list[dict[str, Any]]:
    """memex's passages of ``tree``: path, start, end, and the text BM25 and the encoder see."""
    cache = CACHE / f"passages-{name}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    from indexer.corpus import DocumentInput, chunk_document, passage_text
    from indexer.encoding.encoder import ColBERTEncoder
    from indexer.sources import walk_directory

    # only its tokenizer and budget, the same for every bundled encoder: no build needed
    encoder = ColBERTEncoder.load("bundled:minilm", runtime="torch", precision="fp32")
    docs = [DocumentInput(f.rel_path, f.text, path=f.rel_path) for f in walk_directory(tree).files]
    headers = encoder.count_tokens([d.path or d.doc_id for d in docs])
    out = [{"path": d.path, "start": p.start_line, "end": p.end_line,
            "text": passage_text(d, p.text)}
           for d, n in zip(docs, headers) for p in chunk_document(d, encoder, n)]
    cache.write_text(json.dumps(out))
    return out


def load_set(name: str) -> tuple[list[dict[str, Any]], list[Query]]:
    if name == "stdlib":
        return passages(name, stdlib() / "tree"), stdlib_queries()
    tree, queries = load_validation(name)
    return passages(name, tree), queries


def rank_with(analyse: Callable[[list[str]], list[list[str]]], texts: list[str],
              queries: list[str], k: int = 10) -> list[list[int]]:
    """Top ``k`` passage rows per query with bm25s over the terms ``analyse`` gives."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(analyse(texts), show_progress=False)
    out = []
    for words in analyse(queries):
        if not words:
            out.append([])
            continue
        scores = retriever.get_scores(words)
        top = np.argsort(-scores, kind="stable")[:k]
        out.append([int(i) for i in top if scores[i] > 0])
    return out


def bm25s_terms(stopwords: str | None) -> Callable[[list[str]], list[list[str]]]:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    return lambda texts: bm25s.tokenize(texts, stopwords=stopwords, stemmer=stemmer,
                                        show_progress=False, return_ids=False)


def memex_terms(**settings: Any) -> Callable[[list[str]], list[list[str]]]:
    """``indexer.bm25.terms`` with the shipped analyzer's settings, ``settings`` overriding."""
    from indexer.bm25 import Analyzer, terms

    base = Analyzer()
    kw = {"stem": base._stem, "stopwords": base._stopwords, **settings}
    return lambda texts: [terms(t, **kw) for t in texts]


def shipped(texts: list[str], queries: list[str], k: int = 10) -> list[list[int]]:
    """The real ``BM25Index`` (ids are passage rows)."""
    from indexer.bm25 import BM25Index

    index = BM25Index.build(list(range(len(texts))), texts)
    return [[i for i, _ in hits] for hits in index.search(queries, k)]


def subset(ps: list[dict[str, Any]], queries: list[Query], n: int,
           seed: int = 0) -> tuple[list[int], list[Query]]:
    """Rows of whole files, about ``n`` passages, and the queries whose target they hold."""
    rng = random.Random(seed)
    by_file = files_of(ps)
    targets = sorted({q["path"] for q in queries} & by_file.keys())
    others = sorted(by_file.keys() - set(targets))
    rng.shuffle(targets)
    rng.shuffle(others)
    return pack_files(ps, queries, by_file, targets, others, n)


def files_of(ps: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Passage rows by file path."""
    by_file: dict[str, list[int]] = {}
    for i, p in enumerate(ps):
        by_file.setdefault(p["path"], []).append(i)
    return by_file


def pack_files(ps: list[dict[str, Any]], queries: list[Query], by_file: dict[str, list[int]],
               targets: list[str], others: list[str], n: int) -> tuple[list[int], list[Query]]:
    """Whole files in the given order: target files up to 75% of ``n`` passages, then other
    files up to ``n``; the rows and the queries whose target they hold."""
    rows: list[int] = []
    for pool, budget in ((targets, int(n * 0.75)), (others, n)):
        for path in pool:
            if len(rows) + len(by_file[path]) <= budget:
                rows += by_file[path]
    chosen = {ps[i]["path"] for i in rows}
    return sorted(rows), [q for q in queries if q["path"] in chosen]


def vectors(name: str, n: int, texts: list[str],
            queries: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Default-encoder vectors of passages and queries, encoded once."""
    cache = CACHE / f"vecs-{name}-{n}.npz"
    if not cache.exists():
        from indexer.encoding.encoder import ColBERTEncoder

        encoder = ColBERTEncoder.load()
        t = time.perf_counter()
        docs = encoder.encode_documents(texts, dtype=np.float16)
        print(f"encoded {len(texts)} passages in {time.perf_counter() - t:.0f} s")
        qs = encoder.encode_queries(queries)
        np.savez(cache, doc=np.concatenate(docs), doc_len=[len(d) for d in docs],
                 query=np.concatenate(qs).astype(np.float16), query_len=[len(q) for q in qs])
    z = np.load(cache)

    def split(a: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
        return np.split(a.astype(np.float32), np.cumsum(lengths)[:-1])

    return split(z["doc"], z["doc_len"]), split(z["query"], z["query_len"])


def hybrid(name: str, ps: list[dict[str, Any]], queries: list[Query], n: int,
           weights: list[float]) -> None:
    from bench.oracle import maxsim_scores
    from indexer.bm25 import DEFAULT_BM25_WEIGHT, FUSION_DEPTH, BM25Index, fuse

    rows, queries = subset(ps, queries, n)
    texts = [ps[i]["text"] for i in rows]
    spans: list[Span] = [(ps[i]["path"], ps[i]["start"], ps[i]["end"]) for i in rows]
    qtexts = [q["text"] for q in queries]
    docs, qvecs = vectors(name, n, texts, qtexts)
    scores = maxsim_scores(qvecs, docs)
    dense = [[(int(i), float(row[i])) for i in np.argsort(-row, kind="stable")[:FUSION_DEPTH]]
             for row in scores]
    sparse = BM25Index.build(list(range(len(texts))), texts).search(qtexts, FUSION_DEPTH)
    plain = rank_with(bm25s_terms(None), texts, qtexts)
    print(f"hybrid subset: {len(texts)} passages, {len(queries)} queries")

    def show(label: str, ranked: list[list[int]]) -> None:
        m = metrics([[spans[i] for i in r] for r in ranked], queries)
        print(f"{label:45s} {m['R@10']:6.3f} {m['MRR@10']:7.4f}")

    show("bm25s stem", plain)
    show("memex bm25", [[i for i, _ in h] for h in sparse])
    show("colbert (exhaustive MaxSim)", [[i for i, _ in h] for h in dense])
    for w in sorted({DEFAULT_BM25_WEIGHT, *weights}):
        show(f"hybrid w={w:g}" + (" (default)" if w == DEFAULT_BM25_WEIGHT else ""),
             [[i for i, _ in fuse(d, s, w, 10)] for d, s in zip(dense, sparse)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default="stdlib", choices=["stdlib", "code", "faq", "readme"])
    ap.add_argument("--variants", action="store_true", help="also each tokenisation setting alone")
    ap.add_argument("--hybrid", type=int, metavar="N", help="also ColBERT and hybrid on N passages")
    ap.add_argument("--weights", type=float, nargs="*", default=[], help="more BM25 weights to fuse at")
    args = ap.parse_args()
    ps, queries = load_set(args.set)
    texts = [p["text"] for p in ps]
    qtexts = [q["text"] for q in queries]
    spans: list[Span] = [(p["path"], p["start"], p["end"]) for p in ps]
    print(f"{args.set}: {len(ps)} passages, {len(queries)} queries")

    rows: list[tuple[str, Callable[[], list[list[int]]]]] = [
        ("bm25s stem", lambda: rank_with(bm25s_terms(None), texts, qtexts)),
        ("bm25s stem+stop", lambda: rank_with(bm25s_terms("en"), texts, qtexts)),
        ("memex (indexer.bm25)", lambda: shipped(texts, qtexts)),
    ]
    if args.variants:
        import bm25s.stopwords

        rows += [
            ("  no stopwords", lambda: rank_with(memex_terms(stopwords=frozenset()), texts, qtexts)),
            ("  no stemmer", lambda: rank_with(memex_terms(stem=str), texts, qtexts)),
            ("  more stopwords (bm25s 'en' + code words)", lambda: rank_with(memex_terms(
                stopwords=frozenset(bm25s.stopwords.STOPWORDS_EN) | {"self", "def", "return"}),
                texts, qtexts)),
        ]
    base = None
    print(f"{'terms':45s} {'R@10':>6s} {'MRR@10':>7s} {'vs bm25s stem':>14s} {'s':>6s}")
    for label, run in rows:
        t = time.perf_counter()
        ranked = run()
        dt = time.perf_counter() - t
        m = metrics([[spans[i] for i in r] for r in ranked], queries)
        base = base or m["MRR@10"]
        print(f"{label:45s} {m['R@10']:6.3f} {m['MRR@10']:7.4f} {m['MRR@10'] / base:13.3f}x {dt:6.1f}")
    if args.hybrid:
        hybrid(args.set, ps, queries, args.hybrid, args.weights)


if __name__ == "__main__":
    main()
