"""A validation FAQ set nobody tunes on: the msgpack README shipped in the installed package.

The corpus is read from the installed distribution's metadata (its long description,
the project's README) rather than copied into this repository; ``faq_msgpack/qa.jsonl``
holds question/answer pairs written from it for this benchmark. Written once, used
once to report (bench/RESULTS-cartridges.md); never used to choose settings.

    python -m bench.faq_validation    # writes bench/.cache/faq-msgpack/{corpus.md,qa.jsonl}
"""

from __future__ import annotations

import shutil
from importlib.metadata import distribution
from pathlib import Path

from bench.data import CACHE

HERE = Path(__file__).resolve().parent


def build(out: Path = CACHE / "faq-msgpack") -> Path:
    """The data folder (``corpus.md``, ``qa.jsonl``) in the layout of ../shared/data/faq-*."""
    text = distribution("msgpack").metadata.get_payload()  # type: ignore[attr-defined]
    if not text or "MessagePack" not in text:
        raise SystemExit("the installed msgpack has no README in its metadata")
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.md").write_text(text.strip() + "\n")
    shutil.copyfile(HERE / "faq_msgpack" / "qa.jsonl", out / "qa.jsonl")
    return out


if __name__ == "__main__":
    print(build())
