"""A/B of whole searches: this tree's ``Corpora.search`` against another checkout's, same home.

    python -m bench.ab_search --home bench/.cache/home-ab --base-tree ../h16-base [--queries 100]

For a change meant to keep behaviour (a refactor), both trees must return the same top 10
(passage ids and scores) for every query in colbert, bm25 and hybrid mode. The base tree
runs this file in a subprocess with its own checkout first on ``PYTHONPATH``, so only
``indexer.corpus.Corpora`` and ``bench.data.stdlib_queries`` need to exist there.
Prints the number of queries whose top 10 differ per mode (0 everywhere = identical).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

MODES = ("colbert", "bm25", "hybrid")


def rankings(home: Path, corpus: str, n: int) -> dict[str, list[list[list[Any]]]]:
    """mode -> per query, the top 10 as ``[passage_id, score]`` pairs."""
    from bench.data import stdlib_queries
    from indexer.corpus import Corpora

    queries = [q["text"] for q in stdlib_queries()[:n]]
    corpora = Corpora(home)
    return {mode: [[[h.passage_id, h.score] for h in hits]
                   for hits in (corpora.search([corpus], [q], 10, mode=mode)[0] for q in queries)]
            for mode in MODES}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, required=True, help="a memex home, built by either tree")
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--base-tree", type=Path, help="the other checkout (its root)")
    ap.add_argument("--dump", type=Path, help=argparse.SUPPRESS)  # the base's half
    args = ap.parse_args()
    if args.dump:
        args.dump.write_text(json.dumps(rankings(args.home, args.corpus, args.queries)))
        return
    if args.base_tree is None:
        ap.error("--base-tree is required")
    out = args.home / "ab-base.json"
    env = {**os.environ, "PYTHONPATH": str(args.base_tree.resolve())}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--home", str(args.home),
                    "--corpus", args.corpus, "--queries", str(args.queries), "--dump", str(out)],
                   check=True, env=env, cwd=args.base_tree)
    base, ours = json.loads(out.read_text()), rankings(args.home, args.corpus, args.queries)
    for mode in MODES:
        differ = sum(a != b for a, b in zip(base[mode], ours[mode], strict=True))
        print(f"{mode:<8} {len(ours[mode])} queries, top-10 ids and scores differ in {differ}")


if __name__ == "__main__":
    main()
