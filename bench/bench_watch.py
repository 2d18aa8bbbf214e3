"""Edit-to-searchable latency of a watched 700-file tree.

    python -m bench.bench_watch [--files 700] [--edits 5]

The tree is the first 700 ``.py`` files of the stdlib code-search set, each cut to its
first 30 lines (one passage per file, so indexing it once takes a minute or two on the
shared machine), indexed into ``bench/.cache/home-watch``. A thread runs
``indexer.watch.watch_changes`` with the default debounce, syncing the corpus per burst,
as ``memex index --watch`` does. Each edit appends a line with a fresh made-up word to one
file; the clock runs from the write until a search for that word (hybrid, the default mode,
k=5, polled every 0.1 s) returns a passage of that file containing it. The tree and its index
are kept between runs (the words are unique per run).
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from pathlib import Path

import numpy as np

from bench.data import stdlib
from indexer.corpus import Corpora
from indexer.watch import sync_on_change, watch_changes

CACHE = Path(__file__).resolve().parent / ".cache"


def build_tree(files: int) -> Path:
    src = stdlib() / "tree"
    tree = CACHE / "watch-tree"
    if tree.exists():
        return tree
    for path in sorted(src.rglob("*.py"))[:files]:
        out = tree / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        lines = path.read_text(errors="replace").splitlines(keepends=True)[:30]
        out.write_text("".join(lines) if "".join(lines).strip() else "# empty module\n")
    return tree


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=700)
    ap.add_argument("--edits", type=int, default=5)
    args = ap.parse_args()

    tree = build_tree(args.files)
    home = CACHE / "home-watch"
    corpora = Corpora(home)
    if "tree" not in corpora.names():
        corpora.create("tree", root=str(tree))
    t0 = time.perf_counter()
    report = corpora.sync("tree")
    print(f"indexed {len(report.added)} files, {report.passages_added} passages in "
          f"{time.perf_counter() - t0:.0f} s; corpus {corpora.info('tree').documents} files")

    syncs: list[float] = []
    stop = threading.Event()
    thread = threading.Thread(target=watch_changes, daemon=True, kwargs={
        "root": tree, "stop": stop, "exclude": (home,),
        "on_change": sync_on_change(lambda: corpora.sync("tree"),
                                    lambda r, paths: syncs.append(r.seconds))})
    thread.start()
    time.sleep(1)
    files = sorted(tree.rglob("*.py"))
    latencies = []
    rng = random.Random()
    for i in range(args.edits):
        target = files[(i * 137) % len(files)]
        word = "".join(rng.choice("bcdfghjklmnpqrstvwxz") + rng.choice("aeiou")
                       for _ in range(6))  # a made-up word, new each run
        with open(target, "a") as f:
            f.write(f"\ndef {word}():\n    return 'edited'\n")
        t0 = time.perf_counter()
        rel = target.relative_to(tree).as_posix()
        while True:
            hits = corpora.search(["tree"], [word], k=5)[0]
            if any(h.path == rel and word in h.text for h in hits):
                break
            if time.perf_counter() - t0 > 60:
                raise SystemExit(f"edit {i} not searchable after 60 s")
            time.sleep(0.1)
        latencies.append(time.perf_counter() - t0)
        print(f"edit {i}: {rel} searchable after {latencies[-1]:.2f} s")
        time.sleep(2)
    stop.set()
    thread.join(10)
    print(f"\n{args.files} files: edit -> searchable p50 {np.median(latencies):.2f} s, "
          f"max {max(latencies):.2f} s over {len(latencies)} edits; {len(syncs)} syncs, "
          f"sync p50 {np.median(syncs):.2f} s (of which debounce is not part)")


if __name__ == "__main__":
    main()
