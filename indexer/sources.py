"""Walk a directory the way a developer sees it: .gitignore honoured, binaries skipped.

Symlinks are followed only while they stay inside the root, so a link cannot
pull ``/etc`` into a corpus. Gzipped files (``ls.1.gz``, ``changelog.gz``) are read
as the text they hold; manual pages and generated HTML pages as the text a reader sees
(``man_pages``, ``html_pages``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import pathspec

from indexer import html_pages, man_pages
from indexer.errors import InvalidInput

DEFAULT_MAX_FILE_BYTES = 2_000_000
MAN_PAGE_NAME = re.compile(r"\.(?:[1-9n][a-zA-Z+]*|man)$")  # ls.1, Carp.3perl, bash.man
HTML_NAME = re.compile(r"\.(?:html?|xhtml)$", re.I)
ALWAYS_IGNORED = [".git/", ".hg/", ".svn/", "__pycache__/", "node_modules/", ".venv/", "*.pyc"]


@dataclass(frozen=True)
class SourceFile:
    rel_path: str  # POSIX path relative to the root: the document id of a directory corpus
    text: str
    content_hash: str


@dataclass
class WalkReport:
    files: list[SourceFile]
    skipped: dict[str, str]  # rel_path -> reason


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def ignore_spec(root: Path) -> pathspec.PathSpec:
    lines = list(ALWAYS_IGNORED)
    for name in (".gitignore", ".memexignore"):
        f = root / name
        if f.is_file():
            lines += f.read_text(errors="replace").splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines)


def read_text_file(path: Path, max_bytes: int) -> tuple[str | None, str]:
    """Return (text, "") or (None, reason) for files that are not indexable text."""
    size = path.stat().st_size
    if size > max_bytes:
        return None, f"larger than {max_bytes} bytes"
    data = path.read_bytes()
    name = path.name
    if name.endswith(".gz"):
        name = name[: -len(".gz")]
        try:  # at most max_bytes + 1 decompressed: a small file may expand without bound
            data = gzip.GzipFile(fileobj=io.BytesIO(data)).read(max_bytes + 1)
        except (OSError, EOFError, zlib.error):
            return None, "not valid gzip"
        if len(data) > max_bytes:
            return None, f"larger than {max_bytes} bytes uncompressed"
    if b"\x00" in data[:8192]:
        return None, "binary"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not valid UTF-8"
    if MAN_PAGE_NAME.search(name) and man_pages.looks_like_man_page(text):
        text = man_pages.render(text)
    elif HTML_NAME.search(name) and html_pages.is_generated_page(text):
        text = html_pages.render(text)
    if not text.strip():
        return None, "empty"
    return text, ""


def walk_directory(root: Path, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> WalkReport:
    root = root.resolve()
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a directory")
    spec = ignore_spec(root)
    files: list[SourceFile] = []
    skipped: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(
            d for d in dirnames
            if not spec.match_file(prefix + d + "/") and _inside(here / d, root)
        )
        for name in sorted(filenames):
            rel = prefix + name
            path = here / name
            if spec.match_file(rel):
                continue
            if not _inside(path, root):
                skipped[rel] = "symlink leaves the root"
                continue
            if not path.is_file():
                continue
            text, reason = read_text_file(path, max_file_bytes)
            if text is None:
                skipped[rel] = reason
                continue
            files.append(SourceFile(rel, text, content_hash(text)))
    return WalkReport(files, skipped)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except ValueError:
        return False
