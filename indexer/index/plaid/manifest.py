"""The manifest: which codecs, segments and tombstone files make up the index.

``manifest.json`` is the only file ever replaced; the commit point is its
rename. It is written to a temp file, fsynced, renamed over the old one, and
the directory is fsynced (``indexer/durable.py``); everything it names was
made durable before. Everything it does not name is garbage from a failed
or superseded commit and is removed by ``collect_garbage``.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from indexer import durable
from indexer.errors import IndexCorrupt
from indexer.index.plaid.originals import form_of

FORMAT = 1
NAME = "manifest.json"

# Called with a stage name at each step of a commit; tests raise from it to
# simulate a crash ("segment_written", "tombstones_written", "manifest_temp_written").
FaultHook = Callable[[str], None]


@dataclass
class SegmentEntry:
    name: str  # directory under segments/
    codec: str  # directory under codecs/
    n_passages: int
    n_tokens: int
    tombstones: str | None = None  # file under tombstones/, local indexes of deleted passages
    n_deleted: int = 0

    @property
    def n_live(self) -> int:
        return self.n_passages - self.n_deleted


@dataclass
class Manifest:
    dim: int
    nbits: int
    generation: int = 0  # bumped by every commit; names new files uniquely
    codecs: list[str] = field(default_factory=list)  # oldest first; the last is current
    segments: list[SegmentEntry] = field(default_factory=list)
    format: int = FORMAT
    # New segments store their originals (vectors.npy) for later refits: true float16, "int8"
    # (indexer/index/plaid/originals.py; new indexes), false none. Absent (older manifests): true.
    keep_vectors: bool | str = True
    # ...but only under a codec trained on fewer live tokens than this (0: no limit). Past it,
    # the index holds no originals and a later refit re-quantises decoded vectors.
    keep_vectors_below: int = 0
    codec_tokens: int = 0  # live tokens of the corpus the current codec was trained on (0: unknown)
    codec_corpus: str = ""  # digest of the live passages it was trained on ("": unknown)

    def originals_form(self, codec_tokens: int) -> str | None:
        """The form a segment written under a codec trained on ``codec_tokens`` live tokens
        keeps its originals in (None: it keeps none)."""
        if self.keep_vectors_below and codec_tokens >= self.keep_vectors_below:
            return None
        return form_of(self.keep_vectors)

    def live_files(self) -> set[str]:
        """Paths (relative to the index dir) that this manifest references."""
        out = {NAME} | {f"codecs/{c}" for c in self.codecs}
        for s in self.segments:
            out.add(f"segments/{s.name}")
            if s.tombstones:
                out.add(f"tombstones/{s.tombstones}")
        return out

    @classmethod
    def read(cls, root: Path) -> Manifest:
        try:
            raw = json.loads((root / NAME).read_text())
            if raw.get("format") != FORMAT:
                raise IndexCorrupt(f"unknown manifest format {raw.get('format')!r} at {root}")
            raw["segments"] = [SegmentEntry(**s) for s in raw["segments"]]
            form_of(raw.get("keep_vectors", True))
            below = raw.get("keep_vectors_below", 0)
            if type(below) is not int or below < 0:
                raise ValueError(f"keep_vectors_below must be a token count, got {below!r}")
            return cls(**raw)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise IndexCorrupt(f"unreadable manifest at {root}: {e}") from e

    def write(self, root: Path, fault_hook: FaultHook | None = None) -> None:
        """Atomically replace ``root/manifest.json`` with this manifest."""
        tmp = root / f"{NAME}.tmp"
        durable.write_json(tmp, asdict(self), fresh=True, indent=1)  # published by the rename
        if fault_hook:
            fault_hook("manifest_temp_written")
        durable.replace(tmp, root / NAME)


GUARD = ".building"  # suffix of the lock file held while segments/<name>/ or codecs/<name>/ is written


class MergeGuard:
    """An flock on ``segments/<name>.building``, held while a merge writes ``segments/<name>/``
    outside every writer lock: garbage collection, in any process, leaves the folder alone
    while the lock is held, and removes both once its holder is gone (a crash included)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.path = folder / f"{name}{GUARD}"
        self._file = open(self.path, "w")  # before the folder exists: never unguarded
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._file.closed:
            return
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def merge_guard(folder: Path, name: str) -> MergeGuard:
    return MergeGuard(folder, name)


def collect_garbage(root: Path, manifest: Manifest) -> None:
    """Delete files and directories under ``root`` that ``manifest`` does not reference,
    except the segments and codecs that running merges are writing (``MergeGuard``).

    Safe while readers hold older snapshots: their mmaps keep unlinked files alive.
    """
    keep = manifest.live_files()
    gone = [root / f"{NAME}.tmp"]
    for sub in ("codecs", "segments", "tombstones"):
        for p in (root / sub).iterdir():
            guard = p if p.name.endswith(GUARD) else p.with_name(p.name + GUARD)
            if f"{sub}/{p.name}" in keep or (sub != "tombstones" and durable.is_locked(guard)):
                continue
            gone.append(p)
    durable.remove_all(gone)
