"""Versioned directories written atomically: ``CURRENT`` names the committed version.

A writer fills ``.tmp-<name>/`` (every file fsynced), renames it to ``<name>/``,
then replaces ``CURRENT`` through a temp file, fsync and rename. A crash at any
point leaves ``CURRENT`` naming a complete older version; readers never see a
half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from indexer.durable import fsync_dir
from indexer.errors import IndexCorrupt, NotFound


def save_json(path: Path, obj: object) -> None:
    with open(path, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())


def replace_file(path: Path, write) -> None:
    """Write ``path`` atomically: ``write(tmp_path)``, fsync, rename over ``path``."""
    tmp = path.with_name(f".tmp-{path.name}")
    write(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def current_version(root: Path) -> Path:
    """The committed version directory of ``root``; NotFound when there is none."""
    try:
        name = (root / "CURRENT").read_text().strip()
    except FileNotFoundError:
        raise NotFound(f"no chunk DB at {root}: build it with a corpus sync first") from None
    path = root / name
    if not path.is_dir():
        raise IndexCorrupt(f"{root}/CURRENT names {name!r}, which does not exist")
    return path


def commit_version(root: Path, number: int, write) -> Path:
    """Create version ``number`` with ``write(dir)`` and make it current; drop older ones
    except the previous (a reader may still be opening it)."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"v{number:06d}"
    tmp = root / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    fsync_dir(tmp)
    final = root / name
    shutil.rmtree(final, ignore_errors=True)  # leftover of a crash after rename, never CURRENT
    os.replace(tmp, final)
    fsync_dir(root)

    def write_current(p: Path) -> None:
        with open(p, "w") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())

    replace_file(root / "CURRENT", write_current)
    for old in root.glob("v*"):
        if old.is_dir() and old.name < f"v{number - 1:06d}":
            shutil.rmtree(old, ignore_errors=True)
    return final
