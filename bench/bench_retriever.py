"""Trained retriever vs every untrained option, side by side, on the stdlib set.

    # after a --from-home run: calibrate hybrid on fresh LM queries and evaluate it
    python -m bench.bench_retriever --recalibrate 64

    # the whole corpus, from homes eval_stdlib.py indexed (copied, never changed):
    python -m bench.bench_retriever --from-home bench/.cache/home-plaid \
        --oracle-home bench/.cache/home-auto --lm 200 --mined 2000
    # or a subset: target files of the queries, in a seeded order, until --lines lines
    python -m bench.bench_retriever --lines 9000 --lm 24 --mined 500

Reports R@10 / MRR@10 / nDCG@10 for BM25, single-vector (mean of the exact
index's stored token vectors), the untrained ColBERT default (raw 384-d MiniLM
tokens), hybrid (RRF) on it, then post-trains the corpus
(``indexer/posttrain.py``: LM-written queries for sampled passages and the
corpus's own docstrings, never the evaluation queries) and reports the trained
128-d ColBERT and hybrid on it, with index sizes and CPU times.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

from bench.data import stdlib
from bench.eval_stdlib import single_vector
from bench.metrics import metrics
from indexer.bm25 import DEFAULT_BM25_WEIGHT
from indexer.corpus import Corpora
from indexer.posttrain import (
    PostTrainConfig,
    QueryWriter,
    calibrate_fusion,
    mined_queries,
    post_train,
    split_path,
)
from indexer.reindex import reindex

CACHE = Path(__file__).resolve().parent / ".cache" / "retriever"


def subset(root: Path, lines: int, seed: int) -> tuple[Path, list[dict]]:
    queries = [json.loads(x) for x in open(root / "queries.jsonl")]
    files = sorted({q["path"] for q in queries})
    random.Random(seed).shuffle(files)
    chosen, total = [], 0
    for f in files:
        if total >= lines:
            break
        chosen.append(f)
        total += (root / "tree" / f).read_text().count("\n")
    tree = CACHE / f"tree-{lines}-{seed}"
    if not tree.exists():
        for f in chosen:
            (tree / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(root / "tree" / f, tree / f)
    keep = set(chosen)
    return tree, [q for q in queries if q["path"] in keep]


def evaluate(corpora: Corpora, name: str, queries: list[dict], mode: str) -> dict:
    texts = [q["text"] for q in queries]
    found = []
    for i in range(0, len(texts), 32):
        found += corpora.search([name], texts[i:i + 32], 10, mode=mode)
    return metrics([[(h.path, h.start_line, h.end_line) for h in hits] for hits in found], queries)


def _table(rows: dict, queries: list[dict], base: float) -> None:
    print(f"\n{len(queries)} queries                      R@10   MRR@10  nDCG@10  MRR/untrained")
    for label, m in rows.items():
        print(f"{label:<33} {m['R@10']:.3f}  {m['MRR@10']:.3f}   {m['nDCG@10']:.3f}    "
              f"{m['MRR@10'] / base:.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--from-home", type=Path, help="an indexed home to copy (whole corpus)")
    ap.add_argument("--oracle-home", type=Path, help="the same corpus on the exact engine "
                    "(for the single-vector baseline; default: the subset's own home)")
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--lines", type=int, default=9000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lm", type=int, default=24, help="LM-written training queries")
    ap.add_argument("--mined", type=int, default=500, help="docstring training queries")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--no-teacher", action="store_true")
    ap.add_argument("--baselines-only", action="store_true")
    ap.add_argument("--recalibrate", type=int, default=0, metavar="N",
                    help="evaluate the post-trained corpus left by an earlier --from-home run, "
                    "after calibrating hybrid search on N fresh LM-written queries")
    ap.add_argument("--trained-nbits", type=int, default=0, metavar="N",
                    help="re-index a copy of the post-trained corpus left by an earlier "
                    "--from-home run with N-bit PLAID and evaluate it")
    args = ap.parse_args()

    root = stdlib()
    if args.trained_nbits:
        rebuild_at(args, root)
        return
    if args.recalibrate:
        recalibrate(args, root)
        return
    if args.from_home:
        home = CACHE / ("baselines-home" if args.baselines_only else "full-home")
        name = args.corpus
        if home.exists():
            shutil.rmtree(home)
        shutil.copytree(args.from_home, home)
        queries = [json.loads(x) for x in open(root / "queries.jsonl")]
        corpora = Corpora(home)
        oracle = Corpora(args.oracle_home) if args.oracle_home else None
    else:
        tree, queries = subset(root, args.lines, args.seed)
        home, name = CACHE / f"home-{args.lines}-{args.seed}", "stdlib-sub"
        corpora = Corpora(home, index_engine="exact")  # single_vector reads float16 segments
        if name in corpora.names() and corpora.info(name).encoder != corpora.encoder_name:
            corpora.delete(name)  # left post-trained by an earlier run
        if name not in corpora.names():
            corpora.create(name, str(tree))
        t0 = time.perf_counter()
        report = corpora.sync(name)
        print(f"indexing {report.passages_added} passages took {time.perf_counter() - t0:.0f}s")
        oracle = corpora
    info = corpora.info(name)
    print(f"corpus: {info.documents} files, {info.passages} passages, {len(queries)} eval "
          f"queries; {type(corpora.index(name)).__name__}, encoder {info.encoder}")

    t0 = time.perf_counter()
    rows = {"BM25": evaluate(corpora, name, queries, "bm25")}
    if oracle is not None:
        rows["single-vector (mean, 384-d)"] = metrics(single_vector(oracle, name, queries),
                                                      queries)
    rows["ColBERT untrained (raw 384-d)"] = evaluate(corpora, name, queries, "colbert")
    rows["hybrid on untrained (z-fusion)"] = evaluate(corpora, name, queries, "hybrid")
    size_raw = info.bytes_on_disk
    base = rows["ColBERT untrained (raw 384-d)"]["MRR@10"]
    _table(rows, queries, base)
    print(f"(baselines evaluated in {time.perf_counter() - t0:.0f}s)")
    if args.baselines_only:
        return

    eval_texts = {x["text"].strip() for x in queries}
    mined = mined_queries(corpora, name, args.mined, args.seed)
    print(f"docstring queries whose text equals an evaluation query's: "
          f"{sum(m[0] in eval_texts for m in mined)} of {len(mined)} (the evaluated functions' "
          f"docstrings are blanked in the tree; equal texts are other functions' docstrings)")
    cfg = PostTrainConfig(passages=args.lm, mined=args.mined, teacher=not args.no_teacher,
                          seed=args.seed)
    cfg.train.steps = args.steps
    t0 = time.perf_counter()
    done = post_train(corpora, name, cfg, progress=lambda s, d, t: print(
        f"  {s} {d}/{t}", end="\r", flush=True))
    q, fusion = done["queries"], done["fusion"]
    print(f"\npost-training: {done['examples']} examples ({q['lm']['count']} LM-written, "
          f"{q['docstrings']['count']} docstrings); data {done['data_seconds']}s, "
          f"train {done['training']['seconds']}s ({done['training']['steps']} steps, loss "
          f"{done['training']['first_loss']:.3f} -> {done['training']['last_loss']:.3f}), "
          f"re-index {done['reindex']['seconds']}s; total {time.perf_counter() - t0:.0f}s (CPU)")
    print("LM-written queries:", q["lm"]["examples"][:3])
    print("docstring queries:", q["docstrings"]["examples"][:3])
    print(f"hybrid calibration on {fusion['queries']} held-out LM queries: BM25 weight "
          f"{fusion['chosen']} (MRR@10 by weight: {fusion.get('mrr_by_weight')})")
    rows["ColBERT post-trained (128-d)"] = evaluate(corpora, name, queries, "colbert")
    rows["hybrid on post-trained (z-fusion)"] = evaluate(corpora, name, queries, "hybrid")
    size_trained = corpora.info(name).bytes_on_disk

    _table(rows, queries, base)
    print(f"index: untrained {size_raw / 1e6:.1f} MB, post-trained {size_trained / 1e6:.1f} MB "
          f"(ratio {size_trained / size_raw:.2f})")


def recalibrate(args: argparse.Namespace, root: Path) -> None:
    """Calibrate hybrid search on fresh LM queries, then evaluate, on the post-trained home."""
    corpora, name = Corpora(CACHE / "full-home"), args.corpus
    queries = [json.loads(x) for x in open(root / "queries.jsonl")]
    ids, texts, _ = corpora.passages(name)
    sample = random.Random(args.seed + 1).sample(range(len(ids)), args.recalibrate)
    writer = QueryWriter()
    held_out = []
    for start in range(0, len(sample), 8):
        chunk = sample[start:start + 8]
        written = writer.write([split_path(texts[i]) for i in chunk], 600, 20)
        held_out += [(q, ids[i]) for q, i in zip(written, chunk) if q]
    corpora.set_bm25_weight(name, DEFAULT_BM25_WEIGHT)  # as post-training finds it
    fusion = calibrate_fusion(corpora, name, held_out)
    print(f"encoder {corpora.info(name).encoder}; hybrid calibration on {fusion['queries']} "
          f"fresh LM queries: BM25 weight {fusion['chosen']} "
          f"(MRR@10 of their passages by weight: {fusion.get('mrr_by_weight')})")
    rows = {"ColBERT post-trained (128-d)": evaluate(corpora, name, queries, "colbert"),
            f"hybrid, calibrated weight {fusion['chosen']}": evaluate(corpora, name, queries,
                                                                       "hybrid")}
    _table(rows, queries, rows["ColBERT post-trained (128-d)"]["MRR@10"])


def rebuild_at(args: argparse.Namespace, root: Path) -> None:
    """The post-trained encoder's index at another PLAID width: size against quality."""
    home = CACHE / f"trained-{args.trained_nbits}bit"
    if home.exists():
        shutil.rmtree(home)
    shutil.copytree(CACHE / "full-home", home)
    corpora, name = Corpora(home, index_nbits=args.trained_nbits), args.corpus
    queries = [json.loads(x) for x in open(root / "queries.jsonl")]
    before = corpora.info(name)
    t0 = time.perf_counter()
    reindex(corpora, name, before.encoder)
    after = corpora.info(name)
    print(f"re-indexed at {args.trained_nbits} bits in {time.perf_counter() - t0:.0f}s: "
          f"{after.bytes_on_disk / 1e6:.1f} MB (2-bit: {before.bytes_on_disk / 1e6:.1f} MB)")
    rows = {f"ColBERT post-trained (128-d, {args.trained_nbits}-bit)":
            evaluate(corpora, name, queries, "colbert"),
            f"hybrid on it (weight {after.bm25_weight})": evaluate(corpora, name, queries,
                                                                  "hybrid")}
    _table(rows, queries, next(iter(rows.values()))["MRR@10"])


if __name__ == "__main__":
    main()
