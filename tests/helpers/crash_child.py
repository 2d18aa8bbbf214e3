"""Run one sync and SIGKILL this process at a named point of the change protocol.

    python tests/helpers/crash_child.py HOME CORPUS POINT

Points, in protocol order: ``encoded`` (vectors made, nothing written), ``rows``
(SQL rows and redo record committed), ``segment`` (segment files written, old
manifest still in place), ``manifest-tmp`` (new manifest fsynced under its temp
name, not renamed), ``manifest`` (manifest swapped, redo record not cleared),
``none`` (no kill). The hooks wrap library functions; the code under test is
unchanged.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from indexer.corpus import Corpora
from indexer.index import exact


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str) -> None:
    commit_rows = Corpora._commit_rows
    write_manifest = exact.atomic_write_bytes
    remove = exact.ExactIndex._remove_unreferenced

    def rows_hook(self, *args):  # noqa: ANN001, ANN002, ANN202
        if point == "encoded":
            die()
        out = commit_rows(self, *args)
        if point == "rows":
            die()
        return out

    def manifest_hook(path: Path, data: bytes) -> None:
        if point == "segment":
            die()
        if point == "manifest-tmp":
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            die()
        write_manifest(path, data)

    def remove_hook(self, entries):  # noqa: ANN001, ANN202
        if point == "manifest":
            die()
        return remove(self, entries)

    Corpora._commit_rows = rows_hook
    exact.atomic_write_bytes = manifest_hook
    exact.ExactIndex._remove_unreferenced = remove_hook


if __name__ == "__main__":
    home, corpus, point = sys.argv[1:4]
    install(point)
    report = Corpora(Path(home)).sync(corpus)
    print(f"synced version {report.version}")
