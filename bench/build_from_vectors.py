"""Build a PLAID index from the stored vectors of an exact-engine memex home (no re-encoding).

    python -m bench.build_from_vectors --from-home bench/.cache/home-auto \
        --home bench/.cache/home-p2 [--nbits 2] [--passages 3000] [--profile]

The new home gets a copy of the source home's SQLite database (same passage ids)
and its encoder cache, and a PLAID index of the source's token vectors committed in
one ``commit`` (what a first ``memex index`` sync does), so ``eval_stdlib.py --home``
runs on it unchanged. Prints the commit's wall time and, with ``--profile``, where
it went (cProfile, cumulative). ``--passages N`` keeps the first N passages (a
profile on a subset; the database then still lists all passages, so the home is
not for quality figures).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sqlite3
import time
from pathlib import Path

import numpy as np

from indexer.index.exact import ExactIndex
from indexer.index.plaid import PlaidIndex


def copy_home(src: Path, dst: Path, corpus: str) -> Path:
    """New home at ``dst`` sharing ``src``'s rows and encoder cache; returns the index dir."""
    dst.mkdir(parents=True, exist_ok=False)
    with sqlite3.connect(src / "memex.db") as a, sqlite3.connect(dst / "memex.db") as b:
        a.backup(b)  # consistent even if another process has the source open
    if (src / "models").exists():
        (dst / "models").symlink_to((src / "models").resolve())
    with sqlite3.connect(dst / "memex.db") as db:
        (index_dir,) = db.execute("select index_dir from corpora where name = ?", (corpus,)).fetchone()
    return dst / "corpora" / corpus / index_dir


def exact_bags(index_path: Path, limit: int | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Passage ids and their float16 token vectors (views of the memory-mapped file)."""
    exact = ExactIndex.open(index_path)
    ids, bags = [], []
    for seg in exact.segments:
        for i, pid in enumerate(seg.ids):
            if not seg.deleted[i]:
                ids.append(int(pid))
                bags.append(seg.vectors[seg.offsets[i] : seg.offsets[i + 1]])
    return np.array(ids[:limit], np.int64), bags[:limit]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--from-home", type=Path, required=True, help="a home indexed with the exact engine")
    ap.add_argument("--home", type=Path, required=True, help="new home to create")
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--nbits", type=int, default=2)
    ap.add_argument("--passages", type=int, help="only the first N passages (profiling)")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    index_path = copy_home(args.from_home, args.home, args.corpus)
    ids, bags = exact_bags(args.from_home / "corpora" / args.corpus / index_path.name, args.passages)
    n_tokens = sum(len(b) for b in bags)
    index = PlaidIndex.create(index_path, bags[0].shape[1], nbits=args.nbits)
    prof = cProfile.Profile() if args.profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    index.commit(ids, bags, np.empty(0, np.int64))
    if prof:
        prof.disable()
    dt = time.perf_counter() - t0
    print(f"commit: {len(ids)} passages, {n_tokens} token vectors, nbits {args.nbits}: {dt:.1f} s "
          f"({n_tokens / dt / 1000:.0f}k vectors/s); index {index.nbytes() / 1e6:.0f} MB")
    if prof:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue())


if __name__ == "__main__":
    main()
