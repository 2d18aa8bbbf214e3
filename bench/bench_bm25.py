"""memex's BM25 against plain bm25s on the same passages, without the neural encoder.

    python -m bench.bench_bm25 [--set stdlib|code|faq] [--variants]

Passages are cut as ``memex index`` cuts them (``Corpora._chunk``: 30-line windows,
stride 15, shortened to the encoder's token budget; only the tokenizer is used) and
carry the path line in front (``Corpora._passage_text``); they are cached in
``bench/.cache/passages-<set>.json``. Every row indexes the same passages with bm25s
(same BM25 parameters) and differs only in the terms it feeds it:

- ``bm25s stem``: ``bm25s.tokenize`` with the English Snowball stemmer, no stopwords;
- ``bm25s stem+stop``: the same with bm25s's English stopwords (memex before #17);
- ``memex``: ``indexer.bm25.BM25Index`` as shipped (``build`` + ``search``);
- with ``--variants``, ``indexer.bm25.terms`` with one setting changed at a time.

Tune on ``stdlib``; ``code`` and ``faq`` are the validation sets (``bench.validation_sets``).
"""

from __future__ import annotations

import argparse
import json
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
    from indexer.corpus import Corpora, DocumentInput
    from indexer.encoder import ColBERTEncoder
    from indexer.sources import walk_directory

    encoder = ColBERTEncoder.load(runtime="torch", precision="fp32")
    docs = [DocumentInput(f.rel_path, f.text, path=f.rel_path) for f in walk_directory(tree).files]
    headers = encoder.count_tokens([d.path or d.doc_id for d in docs])
    out = [{"path": d.path, "start": p.start_line, "end": p.end_line,
            "text": Corpora._passage_text(d, p.text)}
           for d, n in zip(docs, headers) for p in Corpora._chunk(d, encoder, n)]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default="stdlib", choices=["stdlib", "code", "faq"])
    ap.add_argument("--variants", action="store_true", help="also each tokenisation setting alone")
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


if __name__ == "__main__":
    main()
