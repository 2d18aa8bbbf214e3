"""Index bytes per passage of one tree under several encoders, after ``optimize``.

    python -m bench.index_bytes --tree docs --encoders bundled:minilm bundled:memex-colbert

Counts every file of the PLAID index (segments and codecs) and the passages' pooled
vectors (``passages.pooled`` in SQL, ``indexer/pooled.py``), and separately what the kept
originals (``vectors.npy`` + ``vector_scales.npy``, for codec refits) take.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from sqlalchemy import func, select

from indexer.corpus import Corpora
from indexer.database import Passage

ORIGINALS = ("vectors.npy", "vector_scales.npy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=Path("docs"))
    ap.add_argument("--encoders", nargs="+", default=["bundled:minilm", "bundled:memex-colbert"])
    args = ap.parse_args()
    base = None
    for encoder in args.encoders:
        with tempfile.TemporaryDirectory() as tmp:
            corpora = Corpora(Path(tmp), encoder_name=encoder)
            corpora.create("t", str(args.tree.resolve()))
            corpora.sync("t")
            corpora.optimize("t")
            files = [p for p in Path(tmp).rglob("*")
                     if p.is_file() and ({"segments", "codecs"} & set(p.parts))]
            with corpora.sessions() as session:
                pooled = session.scalar(select(func.sum(func.length(Passage.pooled)))) or 0
            total = sum(p.stat().st_size for p in files) + pooled
            kept = sum(p.stat().st_size for p in files if p.name in ORIGINALS)
            n = corpora.info("t").passages
        base = base or total / n
        print(f"{encoder:<24} {n} passages  {total / n:>9.0f} B/passage ({total / n / base:.2f}x the "
              f"first)  without originals {(total - kept) / n:>8.0f} B/passage  "
              f"(pooled {pooled / n:.0f})")


if __name__ == "__main__":
    main()
