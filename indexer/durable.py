"""Writes that survive a crash: fsync the data, rename into place, fsync the directory;
and the file lock that serialises writers across processes.

Every persisted format of memex (index manifests and segments, chunk DBs,
cartridge files) writes through these helpers, so "old or new, never half"
holds in one place.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write a new .npy file and fsync it (the caller publishes it by a manifest)."""
    with open(path, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """After a crash ``path`` holds either its old bytes or ``data``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextmanager
def exclusive_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory/.lock`` exclusively (flock): one writer across threads and processes."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
