"""Writes that survive a power loss, and the file lock that serialises writers.

Every byte memex persists outside SQL (index manifests, segments, codecs and
tombstones, chunk DBs, cartridges and their training state, encoder
checkpoints) is written through this module, so "old or new, never half" holds
in one place. The rule (docs/architecture.md, "Crash safety"):

* a file is written to a temp name, fsynced, renamed over its final name, and
  its folder is fsynced (``write_bytes`` and friends);
* a file written into a folder nobody references yet may skip the rename
  (``fresh=True``): the caller fsyncs the folder before publishing it;
* a new folder is made durable in its parent (``make_dirs``), and a folder a
  library filled by path is fsynced file by file before it is renamed into
  place (``publish_dir``);
* removals fsync the parent too, so a removal never outlives a power loss that
  the write it depends on did not survive.

All of it goes through ``disk``, a handful of file-system calls. Tests replace
it with a recorder that can cut the power between any two calls and throw away
everything not yet fsynced (``tests/helpers/power.py``).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np


class Disk:
    """The file-system calls a durable write is made of."""

    def create(self, path: Path) -> BinaryIO:
        return open(path, "wb")

    def fsync(self, f: BinaryIO) -> None:
        f.flush()
        os.fsync(f.fileno())

    def fsync_path(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def mkdir(self, path: Path) -> None:
        path.mkdir()

    def remove(self, path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


disk = Disk()


def fsync_dir(path: Path) -> None:
    """Make the renames, creations and removals in folder ``path`` durable."""
    disk.fsync_path(Path(path))


def fsync_file(path: Path) -> None:
    """Make the contents of a new file a library wrote by path durable."""
    disk.fsync_path(Path(path))


def make_dirs(path: Path) -> None:
    """``mkdir -p`` whose new folders survive a power loss (each parent fsynced)."""
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for p in reversed(missing):
        try:
            disk.mkdir(p)
        except FileExistsError:  # made meanwhile by another writer; it fsyncs it
            continue
        fsync_dir(p.parent)


def write_via(path: Path, fill: Callable[[BinaryIO], None], fresh: bool = False) -> None:
    """Write ``path`` with ``fill(file)``; durable when this returns.

    Default: after a crash ``path`` holds its old bytes or the new ones (temp
    file, fsync, rename, folder fsync). ``fresh=True``: ``path`` is a new name
    nothing references yet; the file is written in place and fsynced, and its
    name becomes durable with the folder's next fsync, which the caller makes
    before publishing it (``fsync_dir``, or a ``write_*``/``replace`` into the
    same folder).
    """
    path = Path(path)
    target = path if fresh else path.with_name(path.name + ".tmp")
    with disk.create(target) as f:
        fill(f)
        disk.fsync(f)
    if not fresh:
        disk.rename(target, path)
        fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes, fresh: bool = False) -> None:
    write_via(path, lambda f: f.write(data), fresh)


def write_text(path: Path, text: str, fresh: bool = False) -> None:
    write_bytes(path, text.encode(), fresh)


def write_json(path: Path, obj: object, fresh: bool = False, **dumps) -> None:
    write_bytes(path, json.dumps(obj, **dumps).encode(), fresh)


def write_npy(path: Path, array: np.ndarray, fresh: bool = False) -> None:
    write_via(path, lambda f: np.save(f, array), fresh)


def to_bytes(save: Callable[[BinaryIO], None]) -> bytes:
    """Bytes a library's ``save(file)`` would write (``torch.save`` and the like)."""
    buf = io.BytesIO()
    save(buf)
    return buf.getvalue()


def sync_tree(path: Path) -> None:
    """fsync every file and folder under ``path``: for folders a library filled by path
    (``save_pretrained``, ``faiss.write_index``) before they are published."""
    path = Path(path)
    for folder, _, files in os.walk(path, topdown=False):
        for name in files:
            fsync_file(Path(folder) / name)
        fsync_dir(Path(folder))


def replace(src: Path, dst: Path) -> None:
    """Rename ``src`` over ``dst`` (a file, or a folder to a free name) durably."""
    src, dst = Path(src), Path(dst)
    disk.rename(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


def publish_dir(tmp: Path, final: Path) -> None:
    """Make the folder ``tmp`` (filled by any means) durable, then rename it to ``final``."""
    sync_tree(tmp)
    replace(tmp, final)


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path``; a file another process removes meanwhile
    (a merge, a compaction) counts 0 rather than failing the caller."""
    total = 0
    for folder, _, files in os.walk(path):  # os.walk skips a folder that vanished
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    return total


def remove(path: Path) -> None:
    """Delete a file or a folder tree, durably; nothing to do if it is gone."""
    remove_all([path])


def remove_all(paths: list[Path]) -> None:
    """Delete files or folder trees, then fsync each folder they were in once."""
    folders = []
    for path in map(Path, paths):
        if not (path.exists() or path.is_symlink()):
            continue
        try:
            disk.remove(path)
        except FileNotFoundError:  # removed meanwhile (a merge's guard, another process)
            continue
        if path.parent not in folders:
            folders.append(path.parent)
    for folder in folders:
        fsync_dir(folder)


@contextmanager
def exclusive_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory/.lock`` exclusively (flock): one writer across threads and processes.

    The lock file holds no data; it needs no fsync."""
    make_dirs(directory)
    with open(directory / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def is_locked(path: Path) -> bool:
    """Whether some process holds an flock on ``path`` now (False when it does not exist).

    A probe: it takes the lock for an instant when free, so use it only on files whose
    holders do not mind (a merge's guard, the job runner's lead lock)."""
    try:
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False
