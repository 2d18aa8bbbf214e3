"""Validation sets nobody tunes on: built reproducibly into ``bench/.cache/validation/``.

    python -m bench.validation_sets            # builds both (seconds)

- ``code/``: code search over installed, license-clean, pure-Python packages that are
  not reserved (never pip and what it vendors, setuptools/pkg_resources, man pages),
  built by ``shared/eval/build_codesearch.py`` (600 docstring queries, seed 7). The
  packages are copied as installed, so their versions are part of the set:
  ``PACKAGES`` lists them and ``versions()`` what is installed; bench/RESULTS.md
  records both. Leave these packages out of any training data.
- ``faq/``: known-item prose search over Python's General and Programming FAQ
  (``shared/data/faq-*/corpus.md``): the query is a question heading, the target the
  lines of its answer; the heading lines are blanked (line numbers kept) so a query
  never matches its own text, as the code set blanks docstrings. The brief names these
  pages a tuning set: they are the prose set recipes are chosen on (v3 reported them
  once as validation, before that was noticed).
- ``readme/``: known-item prose search over the READMEs (metadata long descriptions)
  of installed distributions no training reads (``readme_distributions``: the code
  set's packages and other dependencies): the query is a section heading of at least
  ``readme_sections.MIN_HEADING_WORDS`` words ("Installation" names a section of every
  README alike), the target that section's lines, the heading lines blanked. Built
  before any recipe ran on it; the prose validation set.

All use the stdlib set's format (``tree/``, ``queries.jsonl`` with ``text``, ``path``,
``start_line``, ``end_line``), so every benchmark and ``bench.metrics`` read them alike.
Tune on the stdlib set only; report these once per recipe you keep.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.data import CACHE, shared_dir

OUT = CACHE / "validation"
# import name -> distribution name. Licenses (from their metadata): BSD-3-Clause: httpx,
# httpcore, click, starlette, jinja2, uvicorn, werkzeug; MIT: h11, typer, anyio, attrs,
# fastapi, mako, markdown-it-py, mdurl, pluggy. None of them is vendored by pip.
PACKAGES = {
    "httpx": "httpx", "httpcore": "httpcore", "h11": "h11", "click": "click",
    "typer": "typer", "starlette": "starlette", "anyio": "anyio", "jinja2": "jinja2",
    "attr": "attrs", "fastapi": "fastapi", "uvicorn": "uvicorn", "werkzeug": "werkzeug",
    "mako": "mako", "markdown_it": "markdown-it-py", "mdurl": "mdurl", "pluggy": "pluggy",
}
CODE_QUERIES = 600
SEED = 7
FAQS = ("faq-general", "faq-programming")
RESERVED = {"pip", "setuptools", "msgpack", "memex"}
# same README as another distribution, or a fork of a code-set package
NEAR_COPIES = {"psycopg-binary", "httpx2", "httpcore2", "sse-starlette"}


def versions() -> dict[str, str]:
    """Installed version of every package of the code set."""
    return {dist: importlib.metadata.version(dist) for dist in PACKAGES.values()}


def build_code(out: Path = OUT / "code") -> Path:
    """Copy the packages' sources side by side, then let build_codesearch.py cut the set."""
    src = out / "src"
    shutil.rmtree(src, ignore_errors=True)
    for module in PACKAGES:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"package {module} is not installed")
        shutil.copytree(list(spec.submodule_search_locations)[0], src / module,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"))
    subprocess.run([sys.executable, str(shared_dir() / "eval" / "build_codesearch.py"), str(src),
                    str(out), "--queries", str(CODE_QUERIES), "--seed", str(SEED)], check=True)
    shutil.rmtree(src)
    (out / "versions.json").write_text(json.dumps(versions(), indent=1) + "\n")
    return out


def build_faq(out: Path = OUT / "faq") -> Path:
    """One file per FAQ page; one query per question that has an answer below it."""
    (out / "tree").mkdir(parents=True, exist_ok=True)
    queries = []
    for name in FAQS:
        lines = (shared_dir() / "data" / name / "corpus.md").read_text().split("\n")
        heads = [i for i, line in enumerate(lines) if line.startswith("## ")] + [len(lines)]
        rel = f"{name}.md"
        for head, nxt in zip(heads, heads[1:]):
            body = [i for i in range(head + 1, nxt) if lines[i].strip()]
            if body:
                queries.append({"qid": f"{name}-{len(queries)}", "text": lines[head][3:].strip(),
                                "path": rel, "start_line": body[0] + 1, "end_line": body[-1] + 1})
        for head in heads[:-1]:
            lines[head] = ""
        (out / "tree" / rel).write_text("\n".join(lines))
    (out / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    return out


def readme_distributions() -> list[str]:
    """Installed distributions whose READMEs no training reads: none that provides a
    package of the default encoder's pairs, none reserved for outside checks, not msgpack
    (the cartridges' validation), and not a README's near-copy (``NEAR_COPIES``)."""
    from indexer.training.default_data import PACKAGES as TRAINED

    provided = importlib.metadata.packages_distributions()
    trained = {d.lower() for m in TRAINED for d in provided.get(m, [])}
    names = {d.metadata["Name"] for d in importlib.metadata.distributions()}
    return sorted((n for n in names if n.lower() not in trained | RESERVED | NEAR_COPIES),
                  key=str.lower)


def build_readme(out: Path = OUT / "readme") -> Path:
    """One README per distribution; one query per titled section."""
    from bench.readme_sections import MIN_HEADING_WORDS, sections, words

    shutil.rmtree(out, ignore_errors=True)
    (out / "tree").mkdir(parents=True)
    queries, kept = [], {}
    for dist in readme_distributions():
        meta = importlib.metadata.distribution(dist).metadata
        text = meta.get_payload() or ""  # type: ignore[attr-defined]
        lines = text.splitlines()
        found = 0
        for s in sections(text):
            body = [s.first_line + i for i, line in enumerate(s.lines) if line.strip()]
            if len(words(s.heading)) >= MIN_HEADING_WORDS:
                queries.append({"qid": f"{dist}-{len(queries)}", "text": s.heading,
                                "path": f"{dist}.md", "start_line": body[0] + 1,
                                "end_line": body[-1] + 1})
                found += 1
            lines[s.heading_line] = ""
        if found:
            (out / "tree" / f"{dist}.md").write_text("\n".join(lines) + "\n")
            kept[dist] = importlib.metadata.version(dist)
    (out / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (out / "versions.json").write_text(json.dumps(kept, indent=1) + "\n")
    return out


def load(name: str) -> tuple[Path, list[dict[str, Any]]]:
    """``tree/`` and queries of validation set ``name`` (``code``, ``faq``, ``readme``),
    built once."""
    out = OUT / name
    if not (out / "queries.jsonl").exists():
        {"code": build_code, "faq": build_faq, "readme": build_readme}[name](out)
    return out / "tree", [json.loads(x) for x in (out / "queries.jsonl").read_text().splitlines()]


def main() -> None:
    for name in ("code", "faq", "readme"):
        tree, queries = load(name)
        files = sum(1 for p in tree.rglob("*") if p.is_file())
        print(f"{name}: {files} files, {len(queries)} queries in {tree.parent}")
    print("packages:", ", ".join(f"{d} {v}" for d, v in versions().items()))


if __name__ == "__main__":
    main()
