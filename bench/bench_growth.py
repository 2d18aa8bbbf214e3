"""An index grown by many small adds against one built at once, on the stdlib vectors.

    python -m bench.bench_growth [--per-commit 6] [--syncs 200] [--queries 331]
    python -m bench.bench_growth --overhead 1,4,16,37   # search cost per segment, one codec
    python -m bench.bench_growth --refit-growth 4       # another refit rule
    python -m bench.bench_growth --data stdlib --builds adds adds-int8 adds-none --per-commit 3

The cached stdlib subset (``bench.stdlib_vectors``: real MiniLM token vectors of
6,000 30-line windows) is fed to ``PlaidIndex`` three ways, with the same
queries for each:

- ``one-shot``: every file in one commit (the baseline);
- ``6 per add``: files in commits of ``--per-commit`` files, as agents POST documents
  (the subset has 206 files: 35 adds, as many as the issue's 1,835 documents 50 at a time);
- ``200 syncs``: the same files over ``--syncs`` commits of a few files each, then
  ``--syncs`` more commits that each re-send 3 changed files (replacements);
- the adds run again without kept originals (``keep_vectors=False``), whose
  refits re-quantise decoded vectors: what keeping them buys; and (``adds-int8``) with
  the originals kept in int8 (``keep_vectors="int8"``), half their bytes.

``--data stdlib`` / ``code`` take the fp32 vectors of ``bench.compression_data``'s windows
instead (the tune side, or the validation set), every token kept as the truth is.

``--overhead``: the same passages and codec split into S segments (``NoMerge``), p50 of
one query per call against S = 1, interleaved: what a segment costs the batched search.

Merges run as the corpus layer runs them: after each commit, in a second thread
(``PlaidIndex.merge``), while this thread keeps searching; search latencies taken
while a merge runs are reported apart (p99 during merges). Reported per build:
segments and codecs at the end (and the most seen), p50 of one query per call
(one thread), top-10 agreement with the one-shot build and with the exhaustive
float32 MaxSim truth, MRR@10 on the set's targets, bytes on disk, and write
amplification: bytes written over the run / bytes a one-shot build writes for the tokens
committed (the edits' re-sent files included). Each grown index is then optimized
(``PlaidIndex.optimize``) and measured again.
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

from bench import compression_data, stdlib_vectors
from bench.metrics import metrics, overlap
from bench.oracle import top_k
from indexer.index.plaid import NoMerge, PlaidIndex
from indexer.index.plaid import refit as plaid_refit
from indexer.index.plaid.index import DEFAULT_KEEP_VECTORS_BELOW

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
        self.committed = 0  # tokens
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
        self.committed += sum(len(bags[i]) for i in ids)
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


def grow(name: str, batches: list[np.ndarray], bags, queries, keep_vectors: bool | str = True,
         keep_below: int = 0) -> dict:
    path = WORK / name
    shutil.rmtree(path, ignore_errors=True)
    index = PlaidIndex.create(path, bags[0].shape[1], keep_vectors=keep_vectors,
                              keep_vectors_below=keep_below)
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
            "during": during, "commits": len(batches), "committed": g.committed}


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
    ap.add_argument("--per-commit", type=int, default=6, help="files per add (206 files: 35 adds)")
    ap.add_argument("--syncs", type=int, default=200, help="commits of a few files each")
    ap.add_argument("--queries", type=int, default=331)
    ap.add_argument("--overhead", help="comma-separated segment counts: measure only the per-segment cost")
    ap.add_argument("--refit-growth", type=float, help="override plaid.index.REFIT_GROWTH for this run")
    ap.add_argument("--keep-below", type=int, nargs="+", default=[DEFAULT_KEEP_VECTORS_BELOW],
                    help="adds-young: int8 originals until the codec is trained on this many tokens")
    ap.add_argument("--data", default="stdlib-vectors", choices=["stdlib-vectors", "stdlib", "code"])
    ap.add_argument("--builds", nargs="+", default=["adds", "syncs", "adds-none"],
                    choices=["adds", "syncs", "adds-int8", "adds-none", "adds-young"])
    args = ap.parse_args()
    if args.refit_growth:
        plaid_refit.REFIT_GROWTH = args.refit_growth
    torch.set_num_threads(1)
    if args.data == "stdlib-vectors":
        data = stdlib_vectors.load()
    else:
        cut = compression_data.load(args.data, "win30")
        data = {**cut, "doc": cut["doc"]["fp32"], "query": cut["query"]["fp32"]}
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
    tokens = sum(len(b) for b in bags)
    bags = [b.astype(np.float16) for b in bags]  # what a sync commits
    base = grow("one-shot", [all_ids], bags, queries)
    base_ids = [[h.passage_id for h in r] for r in timed(base["index"], queries)[0]]
    base_bytes = base["index"].nbytes()
    print("\n(optimized rows: build s and write amplification of the optimize alone)")
    print("| build | commits | segments (max) | codecs (max) | p50 ms | p50 / one-shot "
          "| p99 during merges ms | agree@10 one-shot | agree@10 fp32 truth | MRR@10 | MB on disk "
          "| write amp. | build s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def report(name: str, r: dict) -> None:
        """One row, measured now; latency interleaved with the one-shot build's."""
        own: list[float] = []
        ref: list[float] = []
        for _ in range(2):
            ref += timed(base["index"], queries)[1]
            own += timed(r["index"], queries)[1]
        ids = [[h.passage_id for h in x] for x in timed(r["index"], queries)[0]]
        mrr = metrics([[spans[i] for i in x] for x in ids], targets)["MRR@10"]
        amp = r["written"] / (base_bytes * r["committed"] / tokens)
        print(f"| {name} | {r['commits']} | {r['segments']} ({r['max_segments']}) "
              f"| {r['codecs']} ({r['max_codecs']}) | {pct(own, 50):.2f} | {pct(own, 50) / pct(ref, 50):.2f} "
              f"| {pct(r['during'], 99):.1f} | {overlap(ids, base_ids):.4f} | {overlap(ids, truth):.4f} "
              f"| {mrr:.4f} | {r['index'].nbytes() / 1e6:.1f} | {amp:.2f} | {r['seconds']:.0f} |", flush=True)

    def optimized(r: dict) -> dict:
        before = disk_bytes(r["index"].path)
        t0 = time.perf_counter()
        r["index"].optimize()
        seconds = time.perf_counter() - t0
        after = disk_bytes(r["index"].path)
        new = [size for p, size in after.items() if p not in before and not p.endswith("manifest.json")]
        written = sum(new)
        m = r["index"]._snap.manifest
        return {**r, "seconds": seconds, "written": written, "segments": len(m.segments),
                "codecs": len(m.codecs), "during": []}

    report("one-shot", base)
    per = args.per_commit
    adds = [np.concatenate(files[i : i + per]) for i in range(0, len(files), per)]
    few = [np.concatenate(c) for c in np.array_split(np.array(files, dtype=object), args.syncs) if len(c)]
    rng = np.random.default_rng(1)
    edits = [np.concatenate([files[j] for j in rng.choice(len(files), 3, replace=False)])
             for _ in range(args.syncs)]
    builds = {"adds": [(f"{per} files per add", adds, True, 0)],
              "syncs": [(f"{args.syncs} syncs + {args.syncs} edits", few + edits, True, 0)],
              "adds-int8": [(f"{per} files per add, int8 originals", adds, "int8", 0)],
              "adds-none": [(f"{per} files per add, no originals", adds, False, 0)],
              "adds-young": [(f"{per} files per add, int8 originals below {n:,} tokens", adds, "int8", n)
                             for n in args.keep_below]}
    for name, batches, keep, below in (run for b in args.builds for run in builds[b]):
        r = grow(name.replace(" ", "-").replace(",", ""), batches, bags, queries, keep, below)
        report(name, r)
        report(f"{name}, optimized", optimized(r))
        shutil.rmtree(r["index"].path, ignore_errors=True)


if __name__ == "__main__":
    main()
