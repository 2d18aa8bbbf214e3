"""An index grown by many small adds against one built at once, on the stdlib vectors.

    python -m bench.bench_growth [--per-commit 50] [--syncs 200] [--queries 331]
    python -m bench.bench_growth --overhead 1,4,16,37   # search cost per segment, one codec

The cached stdlib subset (``bench.stdlib_vectors``: real MiniLM token vectors of
6,000 30-line windows) is fed to ``PlaidIndex`` three ways, with the same
queries for each:

- ``one-shot``: every file in one commit (the baseline);
- ``50 per add``: files in commits of ``--per-commit`` files, as agents POST documents;
- ``200 syncs``: the same files over ``--syncs`` commits of a few files each, then
  ``--syncs`` more commits that each re-send 3 changed files (replacements);
- the ``50 per add`` run again without kept originals (``keep_vectors=False``), whose
  refits re-quantise decoded vectors: what keeping them buys.

``--overhead``: the same passages and codec split into S segments (``NoMerge``), p50 of
one query per call against S = 1, interleaved: what a segment costs the batched search.

Merges run as the corpus layer runs them: after each commit, in a second thread
(``PlaidIndex.merge``), while this thread keeps searching; search latencies taken
while a merge runs are reported apart (p99 during merges). Reported per build:
segments and codecs at the end (and the most seen), p50 of one query per call
(one thread), top-10 agreement with the one-shot build and with the exhaustive
float32 MaxSim truth, MRR@10 on the set's targets, bytes on disk, and write
amplification: bytes written over the run / bytes of the one-shot index.
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import torch

from bench import stdlib_vectors
from bench.metrics import metrics, overlap
from bench.oracle import top_k
from indexer.index.plaid import NoMerge, PlaidIndex

WORK = Path(__file__).parent / ".cache" / "growth"
NONE = np.empty(0, dtype=np.int64)


def files_of(passages: list[dict]) -> list[np.ndarray]:
    """Passage ids grouped by file (a document), in a fixed shuffled order."""
    by_file: dict[str, list[int]] = {}
    for p in passages:
        by_file.setdefault(p["path"], []).append(p["id"])
    groups = [np.array(v, dtype=np.int64) for _, v in sorted(by_file.items())]
    order = np.random.default_rng(0).permutation(len(groups))
    return [groups[i] for i in order]


def disk_bytes(root: Path) -> dict[str, int]:
    """Size of each file under ``root`` (a background merge may delete some meanwhile)."""
    out = {}
    for folder, _, names in os.walk(root):  # os.walk skips folders that vanish under it
        for name in names:
            path = os.path.join(folder, name)
            try:
                out[path] = os.stat(path).st_size
            except FileNotFoundError:
                continue
    return out


class Grower:
    """Commits in this thread, merges in a background thread (as the server's merge job)."""

    def __init__(self, index: PlaidIndex) -> None:
        self.index = index
        self.merging = threading.Event()
        self.thread: threading.Thread | None = None
        self.written = 0
        self.seen: dict[str, int] = {}
        self.max_segments = self.max_codecs = 0

    def account(self) -> None:
        """Files are written once under fresh names: new names are new bytes."""
        now = disk_bytes(self.index.path)
        self.written += sum(size for name, size in now.items()
                            if name not in self.seen and not name.endswith("manifest.json"))
        self.seen = now
        m = self.index._snap.manifest
        self.max_segments = max(self.max_segments, len(m.segments))
        self.max_codecs = max(self.max_codecs, len(m.codecs))

    def commit(self, ids: np.ndarray, bags: list[np.ndarray]) -> None:
        self.index.commit(ids, [bags[i] for i in ids], NONE, merge=False)
        self.account()
        if self.index.needs_merge() and not self.merging.is_set():
            self.merging.set()
            self.thread = threading.Thread(target=self._merge)
            self.thread.start()

    def _merge(self) -> None:
        try:
            self.index.merge()
        finally:
            self.merging.clear()

    def finish(self) -> None:
        if self.thread:
            self.thread.join()
        self.index.merge()
        self.account()


def timed(index: PlaidIndex, queries: list[np.ndarray]) -> tuple[list, list[float]]:
    hits, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits.append(index.search([q], 10)[0])
        times.append(time.perf_counter() - t0)
    return hits, times


def grow(name: str, batches: list[np.ndarray], bags, queries, keep_vectors: bool = True) -> dict:
    path = WORK / name
    shutil.rmtree(path, ignore_errors=True)
    index = PlaidIndex.create(path, bags[0].shape[1], keep_vectors=keep_vectors)
    g = Grower(index)
    during: list[float] = []
    t0 = time.perf_counter()
    for i, ids in enumerate(batches):
        g.commit(ids, bags)
        if g.merging.is_set():  # a few searches while the merge runs
            _, t = timed(index, [queries[(i * 7 + j) % len(queries)] for j in range(5)])
            during += t
    g.finish()
    seconds = time.perf_counter() - t0
    m = index._snap.manifest
    return {"index": index, "seconds": seconds, "written": g.written, "segments": len(m.segments),
            "codecs": len(m.codecs), "max_segments": g.max_segments, "max_codecs": g.max_codecs,
            "during": during, "commits": len(batches)}


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(xs, p)) * 1e3 if xs else float("nan")


def overhead(sizes: list[int], bags, queries) -> None:
    """p50 search latency of the same passages and codec in S segments, against S = 1."""
    ids = np.arange(len(bags), dtype=np.int64)
    shutil.rmtree(WORK / "overhead", ignore_errors=True)
    indexes = {}
    for n in sizes:
        path = WORK / "overhead" / str(n)
        codec_from = {} if n == sizes[0] else {"codec_from": WORK / "overhead" / str(sizes[0])}
        index = PlaidIndex.create(path, bags[0].shape[1], keep_vectors=False, merge_policy=NoMerge(),
                                  **codec_from)
        for chunk in np.array_split(ids, n):
            index.commit(chunk, [bags[i] for i in chunk], NONE)
        indexes[n] = index
    lat: dict[int, list[float]] = {n: [] for n in sizes}
    for _ in range(3):
        for n, index in indexes.items():
            lat[n] += timed(index, queries)[1]
    ref = [[h.passage_id for h in r] for r in timed(indexes[sizes[0]], queries)[0]]
    print("\n| segments (one codec) | p50 ms | p50 / 1 segment | ms per extra segment "
          "| same top-10 as 1 segment |")
    print("|---|---|---|---|---|")
    p1 = pct(lat[sizes[0]], 50)
    for n in sizes:
        ids_n = [[h.passage_id for h in r] for r in timed(indexes[n], queries)[0]]
        extra = (pct(lat[n], 50) - p1) / (n - sizes[0]) if n > sizes[0] else 0.0
        print(f"| {n} | {pct(lat[n], 50):.2f} | {pct(lat[n], 50) / p1:.2f} | {extra:.3f} "
              f"| {overlap(ids_n, ref):.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-commit", type=int, default=50, help="files per add")
    ap.add_argument("--syncs", type=int, default=200, help="commits of a few files each")
    ap.add_argument("--queries", type=int, default=331)
    ap.add_argument("--overhead", help="comma-separated segment counts: measure only the per-segment cost")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = stdlib_vectors.load()
    if args.overhead:
        overhead([int(x) for x in args.overhead.split(",")], data["doc"], data["query"][: args.queries])
        return
    bags, passages = data["doc"], data["passages"]
    queries = data["query"][: args.queries]
    targets = data["queries"][: args.queries]
    spans = {p["id"]: (p["path"], p["start"], p["end"]) for p in passages}
    files = files_of(passages)
    all_ids = np.concatenate(files)
    print(f"{len(passages)} passages in {len(files)} files, {sum(len(b) for b in bags):,} tokens, "
          f"{len(queries)} queries")

    truth = [[h.passage_id for h in r] for r in top_k(queries, bags, 10)]
    runs: dict[str, dict] = {"one-shot": grow("one-shot", [all_ids], bags, queries)}
    per = args.per_commit
    adds = [np.concatenate(files[i : i + per]) for i in range(0, len(files), per)]
    runs[f"{per} per add"] = grow("adds", adds, bags, queries)
    few = [np.concatenate(c) for c in np.array_split(np.array(files, dtype=object), args.syncs) if len(c)]
    rng = np.random.default_rng(1)
    edits = [np.concatenate([files[j] for j in rng.choice(len(files), 3, replace=False)])
             for _ in range(args.syncs)]
    runs[f"{args.syncs} syncs + {args.syncs} edits"] = grow("syncs", few + edits, bags, queries)
    runs[f"{per} per add, no originals"] = grow("adds-noorig", adds, bags, queries, keep_vectors=False)

    base = runs["one-shot"]
    base_hits, _ = timed(base["index"], queries)
    base_ids = [[h.passage_id for h in r] for r in base_hits]
    base_bytes = base["index"].nbytes()
    lat = {}
    for _ in range(3):  # interleaved, so both see the same machine load
        for name, r in runs.items():
            lat.setdefault(name, []).extend(timed(r["index"], queries)[1])
    print("\n| build | commits | segments (max) | codecs (max) | p50 ms | p50 / one-shot "
          "| p99 during merges ms | agree@10 one-shot | agree@10 fp32 truth | MRR@10 | MB on disk "
          "| write amp. | build s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    p50_base = pct(lat["one-shot"], 50)
    for name, r in runs.items():
        hits, _ = timed(r["index"], queries)
        ids = [[h.passage_id for h in x] for x in hits]
        mrr = metrics([[spans[i] for i in x] for x in ids], targets)["MRR@10"]
        print(f"| {name} | {r['commits']} | {r['segments']} ({r['max_segments']}) "
              f"| {r['codecs']} ({r['max_codecs']}) | {pct(lat[name], 50):.2f} "
              f"| {pct(lat[name], 50) / p50_base:.2f} | {pct(r['during'], 99):.1f} "
              f"| {overlap(ids, base_ids):.4f} | {overlap(ids, truth):.4f} | {mrr:.4f} "
              f"| {r['index'].nbytes() / 1e6:.1f} | {r['written'] / base_bytes:.2f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
