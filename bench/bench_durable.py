"""Cost of the durable-write rule on the commit path: fsync calls and milliseconds per
small PLAID commit (20 passages added, 1 deleted, onto 1,000).

    python bench/bench_durable.py            # this checkout
    PYTHONPATH=<other checkout> python <other checkout>/bench/bench_durable.py   # a baseline

Counts ``os.fsync`` calls (files and folders alike); the time includes encoding-free
compression, the writes and the reopen of the snapshot.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

calls = [0]
_fsync = os.fsync


def _counting_fsync(fd: int) -> None:
    calls[0] += 1
    _fsync(fd)


os.fsync = _counting_fsync  # before memex imports: every module looks it up at call time

from indexer.index.plaid import PlaidIndex  # noqa: E402
from tests.index.plaid_data import corpus  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commits", type=int, default=50)
    args = ap.parse_args()
    bags = corpus(1000 + 20 * args.commits, 128, seed=0, spread=0.12)
    with tempfile.TemporaryDirectory() as tmp:
        idx = PlaidIndex.create(Path(tmp) / "ix", 128)
        idx.commit(np.arange(1000), bags[:1000], np.zeros(0, np.int64))
        calls[0], times = 0, []
        for k in range(args.commits):
            ids = np.arange(1000 + 20 * k, 1020 + 20 * k)
            t = time.perf_counter()
            idx.commit(ids, [bags[i] for i in ids], np.array([(k * 7) % 1000]))
            times.append(time.perf_counter() - t)
    print(f"{calls[0] / args.commits:.1f} fsyncs per commit, median {1000 * np.median(times):.1f} ms, "
          f"p90 {1000 * np.percentile(times, 90):.1f} ms")


if __name__ == "__main__":
    main()
