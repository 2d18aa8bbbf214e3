"""Versioned directories written atomically: ``CURRENT`` names the committed version.

A writer fills ``.tmp-<name>/`` (every file and the folder fsynced), renames it to
``<name>/``, then replaces ``CURRENT`` through a temp file, fsync and rename. A crash at any
point leaves ``CURRENT`` naming a complete older version; readers never see a
half-written one.
"""

from __future__ import annotations

from pathlib import Path

from indexer import durable
from indexer.errors import IndexCorrupt, NotFound


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
    except the previous (a reader may still be opening it).

    ``write`` fills the new folder with ``durable.write_*(..., fresh=True)``; the
    folder is fsynced before its rename (``indexer/durable.py``)."""
    durable.make_dirs(root)
    name = f"v{number:06d}"
    tmp = root / f".tmp-{name}"
    durable.remove(tmp)
    durable.make_dirs(tmp)
    write(tmp)
    final = root / name
    durable.remove(final)  # leftover of a crash after rename, never CURRENT
    durable.publish_dir(tmp, final)
    durable.write_text(root / "CURRENT", name + "\n")
    for old in root.glob("v*"):
        if old.is_dir() and old.name < f"v{number - 1:06d}":
            durable.remove(old)
    return final
