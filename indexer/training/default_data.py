"""Training pairs for the default encoder: docstrings of the packages memex installs.

Every host that runs memex has its dependencies installed, so their source is
broad, license-clean (BSD, MIT, Apache-2.0, PSF) training data that needs no
download. A documented function's docstring first line is the query; the
passage ``memex index`` would cut around the definition, with the docstring cut
out (``indexer/mined_queries.py``), is the positive.

Left out on purpose:
- what is reserved for checks outside the project: pip and what it vendors,
  setuptools / pkg_resources / _distutils_hack;
- the validation packages of ``bench/validation_sets.py`` (httpx, click,
  starlette, ... and the near-copies ``httpx2``/``httpcore2``/``sse_starlette``),
  so validation measures data nobody trained on;
- the standard library, so the stdlib code-search set (``bench/data.py``) stays a
  fair place to choose recipes (its queries are stdlib docstrings);
- tests (``test_*.py``, ``tests/``, ``testing/``): "Test that ..." describes a test.

``PACKAGES`` is pinned and every choice below is seeded, so the same installed
versions give the same pairs; ``digest`` identifies them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from indexer.line_windows import chunk_lines
from indexer.mined_queries import PassageSpan, docstring_queries
from indexer.models import installed_package_dir

# Import names, all in memex's own dependency closure (pyproject.toml), so installed
# wherever memex is. Sorted; a missing one is skipped and recorded.
PACKAGES = (
    "accelerate", "alembic", "annotated_types", "bm25s", "dotenv", "filelock", "fsspec",
    "gguf", "huggingface_hub", "jsonschema", "markupsafe", "mcp", "mpmath", "networkx",
    "numpy", "onnx", "onnxruntime", "pathspec", "prometheus_client", "pydantic",
    "pydantic_settings", "referencing", "safetensors", "sqlalchemy", "sympy", "tokenizers",
    "torch", "tqdm", "transformers", "typing_inspection", "watchfiles", "websockets", "yaml",
)
SKIP_DIRS = {"tests", "test", "testing", "_vendor", "vendor", "__pycache__"}


@dataclass(frozen=True)
class Pair:
    query: str
    positive: str  # the passage as the encoder sees it: path line, then the code
    package: str


def version(module: str) -> str:
    """The installed distribution version of an import name ('?' when unknown)."""
    for dist in importlib.metadata.packages_distributions().get(module, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "?"


def source_files(root: Path) -> list[Path]:
    """The package's Python files, tests left out, in a fixed order."""
    return sorted(p for p in root.rglob("*.py")
                  if not SKIP_DIRS & set(p.relative_to(root).parts[:-1])
                  and not p.name.startswith("test_"))


def mine_package(module: str, root: Path, per_package: int, per_file: int,
                 chunk: Callable[[str, str], list[PassageSpan]], rng: random.Random,
                 seen: set[str]) -> list[Pair]:
    """Up to ``per_package`` pairs from files drawn in a seeded order, ``per_file`` per file."""
    files = source_files(root)
    rng.shuffle(files)
    out: list[Pair] = []
    for path in files:
        if len(out) >= per_package:
            break
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if '"""' not in text and "'''" not in text:
            continue
        rel = f"{module}/{path.relative_to(root).as_posix()}"
        mined = [m for m in docstring_queries(text, chunk(rel, text)) if m.query not in seen]
        for m in rng.sample(mined, min(per_file, len(mined), per_package - len(out))):
            seen.add(m.query)
            out.append(Pair(m.query, f"{rel}\n{m.positive}", module))
    return out


def mine(per_package: int, per_file: int, seed: int,
         chunk: Callable[[str, str], list[PassageSpan]],
         packages: tuple[str, ...] = PACKAGES) -> tuple[list[Pair], dict[str, str]]:
    """Pairs from every installed package of ``packages`` and their versions
    (``"missing"`` for one that is not installed). A query text is used once."""
    rng = random.Random(seed)
    seen: set[str] = set()
    pairs: list[Pair] = []
    versions = {}
    for module in packages:
        root = installed_package_dir(module)
        if root is None:
            versions[module] = "missing"
            continue
        versions[module] = version(module)
        pairs += mine_package(module, root, per_package, per_file, chunk, rng, seen)
    return pairs, versions


def passage_chunker(encoder) -> Callable[[str, str], list[PassageSpan]]:
    """Line spans of a file's passages as ``memex index`` cuts them (path header included
    in the token budget, as ``Corpora._chunk`` counts it)."""

    def chunk(rel: str, text: str) -> list[PassageSpan]:
        budget = max(16, encoder.config.doc_max_tokens - encoder.count_tokens([rel])[0] - 3)
        passages = chunk_lines(text, max_tokens=budget, count_tokens=encoder.count_tokens,
                               additive=encoder.lines_add_up(text))
        return [PassageSpan(i, p.start_line, p.end_line) for i, p in enumerate(passages)]

    return chunk


def digest(pairs: list[Pair]) -> str:
    h = hashlib.sha256()
    for p in pairs:
        h.update(p.query.encode() + b"\0" + p.positive.encode() + b"\0")
    return h.hexdigest()[:16]
