"""Where the benchmarks find their data, and the passages they cut from it.

The shared data sets live outside the checkout: ``$MEMEX_SHARED`` when set, else
the nearest ``shared/`` folder beside the checkout or beside one of its parents
(``../shared`` for a plain checkout; a worktree nested one level deeper finds the
same folder). Everything derived from them is cached under ``bench/.cache/``.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from indexer.corpus import Corpora

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"


def shared_dir() -> Path:
    """The shared data folder (``data/``, ``eval/``); ``../shared`` when none exists, so a
    missing file's error names the path a plain checkout expects."""
    if os.environ.get("MEMEX_SHARED"):
        return Path(os.environ["MEMEX_SHARED"])
    for parent in ROOT.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared"
    return ROOT.parent / "shared"


def stdlib_archive() -> Path:
    return shared_dir() / "data" / "stdlib-codesearch.tar.gz"


def stdlib() -> Path:
    """The stdlib code-search set (``tree/``, ``queries.jsonl``), unpacked once."""
    out = CACHE / "stdlib"
    if not (out / "tree").exists() or not (out / "queries.jsonl").exists():
        out.mkdir(parents=True, exist_ok=True)
        with tarfile.open(stdlib_archive()) as tar:
            tar.extractall(out, filter="data")
    return out


def stdlib_queries() -> list[dict[str, Any]]:
    """Every query of the set: text, and the target's path, start_line and end_line."""
    return [json.loads(line) for line in (stdlib() / "queries.jsonl").read_text().splitlines()]


def windows(tree: Path, rel: str, size: int = 30, stride: int = 15) -> list[dict[str, Any]]:
    """The data README's passages of one file: ``size``-line windows every ``stride`` lines,
    the path prepended to the text; ``start``/``end`` are 1-based and inclusive."""
    lines = (tree / rel).read_text(errors="replace").splitlines()
    out = []
    for start in range(0, max(1, len(lines) - size + stride), stride):
        chunk = lines[start : start + size]
        out.append({"path": rel, "start": start + 1, "end": start + len(chunk),
                    "text": rel + "\n" + "\n".join(chunk)})
    return out


def passage_spans(corpora: Corpora) -> dict[int, tuple[str, int, int]]:
    """passage id -> (path, start_line, end_line) of every passage of a memex home."""
    from sqlalchemy import select

    from indexer.database import Document, Passage

    with corpora.sessions() as s:
        rows = s.execute(select(Passage.id, Document.path, Passage.start_line, Passage.end_line)
                         .join(Document, Passage.document_id == Document.id)).all()
    return {r[0]: tuple(r[1:]) for r in rows}
