"""Search answers packed to a token budget vs the plain top-10, on a stdlib-codesearch subset.

    python -m bench.eval_packing [--queries 200] [--distractors 40] [--max-tokens 2000]

Indexing the whole tree takes 20+ minutes on the shared 2-core machine, so the corpus is a
documented subset: every file a target of the first ``--queries`` queries, plus
``--distractors`` other files drawn with seed 0 (``bench/.cache/stdlib-packing/tree``,
indexed once into ``bench/.cache/home-packing`` with the defaults). Each query runs once
through ``Corpora.search`` (hybrid, the default mode) and is scored three ways:

- plain top-10: a hit when one of the 10 windows is in the target file and overlaps the
  target lines (``eval_stdlib.metrics``' Recall@10);
- packed, k=10 and k=20 into ``--max-tokens``: the same test on the packed spans, and the
  stricter one that the spans contain every target line;
- the tokens the plain top-10 would cost (headers + window texts, the same tokenizer), and
  the naive budget: the top-10 windows taken in rank order, unmerged, while they fit.

It also checks that no two packed spans of one file overlap or touch.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np

from bench.data import stdlib
from indexer.corpus import Corpora
from indexer.packing import encoder_tokens, pack, span_header

CACHE = Path(__file__).resolve().parent / ".cache"


def subset(src: Path, queries: list[dict], distractors: int) -> Path:
    tree = CACHE / "stdlib-packing" / "tree"
    targets = sorted({q["path"] for q in queries})
    others = sorted(str(p.relative_to(src / "tree")) for p in (src / "tree").rglob("*.py")
                    if str(p.relative_to(src / "tree")) not in targets)
    files = targets + random.Random(0).sample(others, distractors)
    if not tree.exists():
        for rel in files:
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / "tree" / rel, tree / rel)
    return tree


def overlaps(path: str, start: int, end: int, q: dict) -> bool:
    return path == q["path"] and start <= q["end_line"] and end >= q["start_line"]


def contains(path: str, start: int, end: int, q: dict) -> bool:
    return path == q["path"] and start <= q["start_line"] and end >= q["end_line"]


def apart(spans) -> bool:
    key = sorted((s.corpus, s.document_id, s.start_line, s.end_line) for s in spans)
    return all(a[:2] != b[:2] or b[2] > a[3] + 1 for a, b in zip(key, key[1:]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--distractors", type=int, default=40)
    ap.add_argument("--max-tokens", type=int, default=2000)
    args = ap.parse_args()

    src = stdlib()
    queries = [json.loads(line) for line in open(src / "queries.jsonl")][: args.queries]
    tree = subset(src, queries, args.distractors)
    corpora = Corpora(CACHE / "home-packing")
    if "stdlib" not in corpora.names():
        corpora.create("stdlib", root=str(tree))
        t0 = time.perf_counter()
        corpora.sync("stdlib")
        print(f"indexed in {time.perf_counter() - t0:.0f} s")
    info = corpora.info("stdlib")
    count, tokenizer = encoder_tokens(corpora.encoder, corpora.encoder_name)
    print(f"corpus: {info.documents} files, {info.passages} passages; {len(queries)} queries; "
          f"budget {args.max_tokens} tokens ({tokenizer})")

    plain = naive = 0
    plain_tokens, naive_tokens, pack_seconds = [], [], []
    rows = {k: {"overlap": 0, "contain": 0, "tokens": [], "spans": [], "cut": 0, "apart": 0}
            for k in (10, 20)}
    for q in queries:
        hits = corpora.search(["stdlib"], [q["text"]], 20)[0]
        top10 = hits[:10]
        plain += any(overlaps(h.path, h.start_line, h.end_line, q) for h in top10)
        costs = count([f"{span_header(h.path, h.start_line, h.end_line)}\n{h.text}"
                       for h in top10])
        plain_tokens.append(sum(costs))
        kept, used = [], 0
        for h, cost in zip(top10, costs):
            if used + cost <= args.max_tokens:
                kept.append(h)
                used += cost
        naive += any(overlaps(h.path, h.start_line, h.end_line, q) for h in kept)
        naive_tokens.append(used)
        for k, row in rows.items():
            t0 = time.perf_counter()
            packed = pack(hits[:k], args.max_tokens, count)
            pack_seconds.append(time.perf_counter() - t0)
            row["overlap"] += any(overlaps(s.path, s.start_line, s.end_line, q)
                                  for s in packed.spans)
            row["contain"] += any(contains(s.path, s.start_line, s.end_line, q)
                                  for s in packed.spans)
            row["tokens"].append(packed.tokens_used)
            row["spans"].append(len(packed.spans))
            row["cut"] += bool(packed.cut)
            row["apart"] += apart(packed.spans)

    n = len(queries)
    print(f"\n{'answer':<34} {'R@10-equiv':>10} {'contains':>9} {'tokens p50':>11} "
          f"{'spans':>6} {'cut any':>8} {'no overlap':>11}")
    print(f"{'plain top-10 windows':<34} {plain / n:>10.3f} {'':>9} "
          f"{np.median(plain_tokens):>11.0f} {10:>6} {'':>8} {'':>11}")
    print(f"{f'top-10 windows cut at {args.max_tokens}':<34} {naive / n:>10.3f} {'':>9} "
          f"{np.median(naive_tokens):>11.0f} {'':>6} {'':>8} {'':>11}")
    for k, row in rows.items():
        print(f"{f'k={k} packed into {args.max_tokens}':<34} {row['overlap'] / n:>10.3f} "
              f"{row['contain'] / n:>9.3f} {np.median(row['tokens']):>11.0f} "
              f"{np.mean(row['spans']):>6.1f} {row['cut'] / n:>8.2f} {row['apart']}/{n:>4}")
    print(f"\npacking time (merge + count + pack): p50 "
          f"{np.percentile(pack_seconds, 50) * 1000:.2f} ms, p95 "
          f"{np.percentile(pack_seconds, 95) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
