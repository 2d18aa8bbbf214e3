"""A power cut for tests, in the spirit of Lucene's MockDirectoryWrapper.

``PowerCut`` replaces ``indexer.durable.disk`` (every persisted byte goes
through it). It counts the file-system calls; at the chosen one the power goes:
that call and every later one raise ``PowerLoss`` without touching the disk.
``lose_unsynced`` then throws away what a real power loss may throw away:

* creations, renames, removals and new folders in a folder not fsynced since
  are undone, newest first;
* the contents of files not fsynced since they were written are torn (cut to
  half their length): both those written through ``durable`` and any file
  changed by a write that bypassed it (what the double exists to catch).

SQLite files and lock files are left alone: SQLite fsyncs its own commits
(``synchronous=FULL``), and a lock file holds no data.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pytest

import indexer.durable as durable

UNTRACKED = (".db", ".db-wal", ".db-shm", ".db-journal", ".lock")


class PowerLoss(BaseException):
    """The power went: nothing the process does from here on reaches the disk."""


class PowerCut(durable.Disk):
    def __init__(self, root: Path, cut_at: int | None = None) -> None:
        self.root = Path(root).resolve()
        self.cut_at = cut_at
        self.calls = 0
        self.log: list[tuple[str, Path]] = []  # (call, path) of every call made
        self.dead = False
        self.trash = self.root.parent / f".power-trash-{uuid.uuid4().hex}"
        self.trash.mkdir()
        self.pending: list[tuple[Path, Callable[[], None]]] = []  # (folder, undo)
        self.unsynced: set[int] = set()  # inodes written through durable, not fsynced
        self.synced: set[int] = set()
        self.before = self._scan()

    # -- the recorded calls ------------------------------------------------------------
    def _step(self, call: str, path: Path) -> None:
        if self.dead or self.calls == self.cut_at:
            self.dead = True
            raise PowerLoss(f"power cut at file-system call {self.calls} ({call} {path})")
        self.calls += 1
        self.log.append((call, Path(path)))

    def create(self, path: Path) -> BinaryIO:
        self._step("create", path)
        path = Path(path).resolve()
        existed = path.exists()
        f = super().create(path)
        ino = os.fstat(f.fileno()).st_ino
        self.unsynced.add(ino)
        self.synced.discard(ino)
        if not existed:
            self.pending.append((path.parent, lambda: path.unlink(missing_ok=True)))
        return f

    def fsync(self, f: BinaryIO) -> None:
        self._step("fsync", Path(f.name))
        super().fsync(f)
        ino = os.fstat(f.fileno()).st_ino
        self.unsynced.discard(ino)
        self.synced.add(ino)

    def fsync_path(self, path: Path) -> None:
        self._step("fsync", path)
        path = Path(path).resolve()
        super().fsync_path(path)
        if path.is_dir():
            self.pending = [(folder, undo) for folder, undo in self.pending if folder != path]
        else:
            ino = path.stat().st_ino
            self.unsynced.discard(ino)
            self.synced.add(ino)

    def rename(self, src: Path, dst: Path) -> None:
        self._step("rename", dst)
        src, dst = Path(src).resolve(), Path(dst).resolve()
        backup = None
        if dst.is_file():
            backup = self.trash / uuid.uuid4().hex
            os.link(dst, backup)
        super().rename(src, dst)

        def undo() -> None:
            if dst.exists():
                os.replace(dst, src)
            if backup is not None:
                os.replace(backup, dst)

        self.pending.append((dst.parent, undo))

    def mkdir(self, path: Path) -> None:
        self._step("mkdir", path)
        path = Path(path).resolve()
        super().mkdir(path)
        self.pending.append((path.parent, lambda: shutil.rmtree(path, ignore_errors=True)))

    def remove(self, path: Path) -> None:
        self._step("remove", path)
        path = Path(path).resolve()
        backup = self.trash / uuid.uuid4().hex
        os.replace(path, backup)

        def undo() -> None:
            if not path.exists() and path.parent.exists():
                os.replace(backup, path)

        self.pending.append((path.parent, undo))

    # -- the power loss ----------------------------------------------------------------
    def _scan(self) -> dict[Path, tuple[int, int, int]]:
        """path -> (inode, size, mtime) of every tracked file under the root."""
        out = {}
        for p in self.root.rglob("*"):
            if p.is_file() and not p.is_symlink() and not p.name.endswith(UNTRACKED):
                st = p.stat()
                out[p] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return out

    def lose_unsynced(self) -> list[Path]:
        """Undo what no fsync made durable; returns the files whose contents were torn."""
        self.dead = True
        for _, undo in reversed(self.pending):
            undo()
        self.pending.clear()
        torn = []
        before = {ino: (size, mtime) for ino, size, mtime in self.before.values()}  # renames keep inodes
        for p, (ino, size, mtime) in self._scan().items():
            if ino in self.synced:
                continue
            if ino in self.unsynced or before.get(ino) != (size, mtime):
                with open(p, "r+b") as f:
                    f.truncate(size // 2)
                torn.append(p)
        shutil.rmtree(self.trash, ignore_errors=True)
        return torn


@contextmanager
def power_cut(root: Path, cut_at: int | None = None) -> Iterator[PowerCut]:
    """Route ``durable``'s calls through a ``PowerCut`` for the block (not its loss)."""
    cut = PowerCut(root, cut_at)
    saved, durable.disk = durable.disk, cut
    try:
        yield cut
    finally:
        durable.disk = saved


def every_power_cut(golden: Path, run: Callable[[Path], None], check: Callable[[Path, int], None],
                    tmp_path: Path,
                    select: Callable[[list[tuple[str, Path]]], list[int]] | None = None) -> int:
    """Run ``run`` on a copy of ``golden`` once per file-system call it makes (or those
    ``select`` picks from the log of a full run), cut the power at that call, lose what was
    not fsynced, then ``check(copy, i)``. A run without a cut is checked too. Returns how
    many cuts were made."""
    clean = tmp_path / "no-cut"
    shutil.copytree(golden, clean)
    with power_cut(clean) as counted:
        run(clean)
    check(clean, counted.calls)
    cuts = select(counted.log) if select else list(range(counted.calls))
    assert cuts, "the write made no file-system call"
    for i in cuts:
        work = tmp_path / f"cut-{i}"
        shutil.copytree(golden, work)
        with power_cut(work, cut_at=i) as cut:
            with pytest.raises(PowerLoss):
                run(work)
        cut.lose_unsynced()
        check(work, i)
        shutil.rmtree(work)
    return len(cuts)


def first_and_last_file(log: list[tuple[str, Path]]) -> list[int]:
    """The calls of ``log`` less those on the middle files of each folder filled with
    several (array 3 of a segment's 7 fails like array 2): for the slow write paths."""
    created: dict[Path, dict[Path, None]] = {}  # folder -> its files, in order, once each
    for call, path in log:
        if call == "create":
            created.setdefault(path.parent, {})[path] = None
    middle = {p for files in created.values() for p in list(files)[1:-1]}
    return [i for i, (_, path) in enumerate(log) if path not in middle]
