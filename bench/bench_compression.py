"""What each compression stage of the default costs, measured against the fp32 truth.

    nice -n 10 python -m bench.compression_data --set stdlib    # encode once (cached)
    nice -n 10 python -m bench.bench_compression --set stdlib   # tune side
    nice -n 10 python -m bench.bench_compression --set code     # validation, once

The truth is exhaustive float32 MaxSim over the default encoder's fp32 (PyTorch) token
vectors of every token ([CLS] and punctuation kept) of the same 30-line windows
(``bench.oracle``), not exhaustive search over decompressed vectors, which already
carries the codec's loss. Each stage is measured alone against the truth (one change
from it), then as today's default chains them: skiplist (punctuation dropped), int8 ONNX
encoder, the PLAID residual codec at 1, 2 and 4 bits (exhaustive over the decompressed
vectors), and PLAID pruning (the default ``search`` against exhaustive search of the same
index). Rows: MRR@10 and R@10 on the set's targets, top-10 agreement with the truth's
passage ids, and the MRR change against the row's reference.

Chunking cannot be compared by agreement (other passages), so its table gives MRR@10 and
R@10 per cut (``win30`` today, ``ast``: ``indexer.line_windows.chunk_python``) under today's
default pipeline for ``colbert``, ``bm25`` and ``hybrid`` (``indexer.bm25.fuse`` at the
default weight, as ``Corpora.search``), and under the fp32 truth where the cut was encoded
in fp32.
Then index bytes per passage of the default (2-bit) index by the form of its originals
(``Manifest.keep_vectors``: float16, int8, none), and the default's quality when built
with int8 originals (``indexer/index/plaid/originals.py``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench import compression_data
from bench.bench_plaid import decompressed_bags
from bench.data import CACHE
from bench.metrics import metrics, overlap
from bench.oracle import top_k
from indexer.bm25 import DEFAULT_BM25_WEIGHT, FUSION_DEPTH, BM25Index, fuse
from indexer.index.plaid import PlaidIndex

NONE = np.empty(0, dtype=np.int64)
Ranking = list[list[int]]


def kept(bags: list[np.ndarray], punct: list[np.ndarray]) -> list[np.ndarray]:
    """Bags with the skiplist applied (a passage of punctuation only keeps its [CLS])."""
    return [b[~p] for b, p in zip(bags, punct)]


def exhaustive(queries: list[np.ndarray], bags: list[np.ndarray], k: int = 10) -> Ranking:
    return [[h.passage_id for h in hits] for hits in top_k(queries, bags, k)]


def build(root: Path, bags: list[np.ndarray], nbits: int, keep_vectors: bool | str = True) -> PlaidIndex:
    """A one-segment index of ``bags`` committed as float16, as a sync commits them."""
    index = PlaidIndex.create(root, bags[0].shape[1], nbits=nbits, keep_vectors=keep_vectors)
    index.commit(np.arange(len(bags), dtype=np.int64), [b.astype(np.float16) for b in bags], NONE)
    return index


def searched(index: PlaidIndex, queries: list[np.ndarray], k: int = 10) -> list[list[tuple[int, float]]]:
    """The engine's default search, one query per call as the service runs it."""
    return [[(h.passage_id, h.score) for h in index.search([q], k)[0]] for q in queries]


class Table:
    """Rows of ranked passage ids scored against the set's targets and the truth."""

    def __init__(self, data: dict, truth: Ranking) -> None:
        self.passages, self.queries, self.truth = data["passages"], data["queries"], truth
        self.mrr: dict[str, float] = {}
        print("| stage | configuration | MRR@10 | R@10 | agreement@10 with truth | ΔMRR vs reference |")
        print("|---|---|---|---|---|---|")

    def spans(self, ranked: Ranking) -> list[list[tuple[str, int, int]]]:
        return [[(self.passages[i]["path"], self.passages[i]["start"], self.passages[i]["end"])
                 for i in r] for r in ranked]

    def row(self, key: str, stage: str, config: str, ranked: Ranking, ref: str | None) -> None:
        m = metrics(self.spans(ranked), self.queries)
        self.mrr[key] = m["MRR@10"]
        delta = f"{(m['MRR@10'] / self.mrr[ref] - 1) * 100:+.1f}% vs {ref}" if ref else "–"
        print(f"| {stage} | {config} | {m['MRR@10']:.4f} | {m['R@10']:.3f} | "
              f"{overlap(ranked, self.truth):.3f} | {delta} |", flush=True)


def losses(data: dict, work: Path) -> None:
    q32, q8 = data["query"]["fp32"], data["query"]["int8"]
    d32, d8, punct = data["doc"]["fp32"], data["doc"]["int8"], data["punct"]
    truth = exhaustive(q32, d32)
    t = Table(data, truth)
    t.row("truth", "truth", "fp32 torch, every token, exhaustive fp32 MaxSim", truth, None)
    print("| **each stage alone** | | | | | |")
    skip32 = kept(d32, punct)
    t.row("skip", "skiplist", "fp32, punctuation dropped, exhaustive", exhaustive(q32, skip32), "truth")
    t.row("int8", "int8 encoder", "int8 ONNX, every token, exhaustive", exhaustive(q8, d8), "truth")
    for nbits in (1, 2, 4):
        index = build(work / f"nb{nbits}", d32, nbits)
        ranked = exhaustive(q32, decompressed_bags(index))
        t.row(f"nb{nbits}", f"codec {nbits}-bit", "fp32 vectors, exhaustive over decompressed",
              ranked, "truth")
        if nbits == 2:
            t.row("prune", "PLAID pruning", "fp32 vectors, 2-bit, default search",
                  [[p for p, _ in r] for r in searched(index, q32)], "nb2")
        shutil.rmtree(work / f"nb{nbits}")
    print("| **today's default, stage by stage** | | | | | |")
    t.row("c-skip", "+ skiplist", "fp32, punctuation dropped", exhaustive(q32, skip32), "truth")
    skip8 = kept(d8, punct)
    t.row("c-int8", "+ int8 encoder", "int8 ONNX, punctuation dropped", exhaustive(q8, skip8), "c-skip")
    index = build(work / "float16", skip8, 2, keep_vectors=True)
    t.row("c-nb2", "+ 2-bit codec", "exhaustive over decompressed", exhaustive(q8, decompressed_bags(index)),
          "c-int8")
    t.row("c-prune", "+ pruning = the default", "default search", [[p for p, _ in r] for r in
                                                                      searched(index, q8)], "c-nb2")
    int8 = build(work / "int8", skip8, 2, keep_vectors="int8")
    t.row("c-int8-orig", "the default, int8 originals", "built from the int8 read-back",
          [[p for p, _ in r] for r in searched(int8, q8)], "c-prune")
    print(f"\ndefault end to end: MRR@10 {(t.mrr['c-prune'] / t.mrr['truth'] - 1) * 100:+.1f}% "
          "vs the fp32 truth")
    sizes(work, len(skip8), sum(len(b) for b in skip8))
    shutil.rmtree(work / "float16")
    shutil.rmtree(work / "int8")


def sizes(work: Path, n_passages: int, n_tokens: int) -> None:
    """Bytes on disk per passage and per token of the 2-bit index by form of its originals."""
    def disk(root: Path, pattern: str = "*") -> int:
        return sum(p.stat().st_size for p in root.rglob(pattern) if p.is_file())

    today = disk(work / "float16")
    originals = disk(work / "float16", "vectors.npy")
    print(f"\nindex bytes (2-bit, {n_passages} passages, {n_tokens} tokens, "
          f"{n_tokens / n_passages:.0f} tokens/passage):")
    print("| index | bytes/passage | bytes/token | share of today's |")
    print("|---|---|---|---|")
    for name, size in (("float16 originals (today)", today), ("int8 originals", disk(work / "int8")),
                       ("no originals", today - originals)):
        print(f"| {name} | {size / n_passages:,.0f} | {size / n_tokens:.1f} | {size / today:.3f} |")


def score(data: dict, ranked: Ranking) -> str:
    """MRR@10 (R@10) of rankings of ``data``'s passage ids."""
    p = data["passages"]
    m = metrics([[(p[i]["path"], p[i]["start"], p[i]["end"]) for i in r] for r in ranked], data["queries"])
    return f"{m['MRR@10']:.4f} ({m['R@10']:.3f})"


def chunking(name: str, work: Path) -> None:
    """MRR@10 / R@10 per cut: fp32 truth, and the default's colbert, bm25 and hybrid."""
    print("\n| cut | passages | tokens indexed | fp32 exhaustive MRR@10 (R@10) | default colbert "
          "| bm25 | hybrid |")
    print("|---|---|---|---|---|---|---|")
    for how in (c for c in compression_data.CUTS if (compression_data.OUT / name / c / "int8.npy").exists()):
        data = compression_data.load(name, how)
        passages, queries = data["passages"], data["queries"]
        cells = [score(data, exhaustive(data["query"]["fp32"], data["doc"]["fp32"]))
                 if "fp32" in data["doc"] else "–"]
        skip8 = kept(data["doc"]["int8"], data["punct"])
        index = build(work / how, skip8, 2)
        dense = searched(index, data["query"]["int8"], FUSION_DEPTH)
        shutil.rmtree(work / how)
        bm25 = BM25Index.build(list(range(len(passages))), [p["text"] for p in passages])
        sparse = bm25.search([q["text"] for q in queries], FUSION_DEPTH)
        hybrid = [fuse(d, s, DEFAULT_BM25_WEIGHT, 10) for d, s in zip(dense, sparse)]
        cells += [score(data, [[p for p, _ in r] for r in runs]) for runs in (dense, sparse, hybrid)]
        tokens = sum(len(b) for b in skip8)
        print(f"| {how} | {len(passages)} | {tokens:,} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default="stdlib", choices=["stdlib", "code"])
    ap.add_argument("--skip-losses", action="store_true")
    ap.add_argument("--skip-chunking", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(dir=CACHE))
    try:
        if not args.skip_losses:
            data = compression_data.load(args.set, "win30")
            print(f"{args.set}: {len(data['passages'])} passages (30-line windows), "
                  f"{len(data['queries'])} queries")
            losses(data, work)
        if not args.skip_chunking:
            chunking(args.set, work)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
