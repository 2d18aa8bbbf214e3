"""What ``Corpora`` keeps open between calls: encoders, index handles, BM25 indexes.

Each cache is thread-safe and checks freshness itself: an index handle is reopened
when another process swapped the manifest, a BM25 index is rebuilt when the corpus
version moved, a per-corpus encoder is reloaded when its fingerprint changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from indexer.bm25 import BM25Index
from indexer.encoding.encoder import ColBERTEncoder
from indexer.errors import Conflict, IndexCorrupt, NotFound
from indexer.index import open_index
from indexer.index.base import MultiVectorIndex


class EncoderCache:
    """The default encoder (loaded on first use) and the trained ones corpora point to."""

    def __init__(self, default_name: str, encoder: ColBERTEncoder | None = None) -> None:
        self.default_name = default_name
        self._default = encoder
        self._lock = threading.Lock()
        self._by_name: dict[str, ColBERTEncoder] = {}  # per-corpus (trained) encoders
        self._earlier_builds: dict[str, ColBERTEncoder | None] = {}  # by fingerprint

    @property
    def loaded(self) -> bool:
        """Whether the default encoder is in memory yet (the readiness probe asks)."""
        return self._default is not None

    def default(self) -> ColBERTEncoder:
        with self._lock:
            if self._default is None:
                self._default = ColBERTEncoder.load(self.default_name)
            return self._default

    def get(self, encoder_name: str, fingerprint: str) -> ColBERTEncoder:
        """The encoder a corpus row names; its fingerprint must be the one the row recorded.
        A corpus indexed with an earlier build of the default encoder gets that build while
        it is in the model cache (``default_encoder.earlier_build``): an upgrade does not
        stop its searches, and a re-index moves it to the new one."""
        if encoder_name == self.default_name:
            encoder = self.default()
            if encoder.fingerprint != fingerprint:
                encoder = self._earlier(encoder_name, fingerprint) or encoder
        else:
            with self._lock:
                cached = self._by_name.get(encoder_name)
                if cached is None or cached.fingerprint != fingerprint:
                    cached = self._by_name[encoder_name] = ColBERTEncoder.load(encoder_name)
                encoder = cached
        if encoder.fingerprint != fingerprint:
            raise Conflict(f"encoder {encoder_name!r} changed since the corpus was indexed "
                           f"(fingerprint {encoder.fingerprint} != {fingerprint}); re-index it")
        return encoder

    def _earlier(self, encoder_name: str, fingerprint: str) -> ColBERTEncoder | None:
        """The earlier build with ``fingerprint``, looked up once per fingerprint (a miss
        too: a stale corpus's every search would otherwise load the earlier builds again)."""
        from indexer.models import BUILT, default_cache_dir
        from indexer.training.default_encoder import earlier_build

        if encoder_name not in BUILT:
            return None
        with self._lock:
            if fingerprint not in self._earlier_builds:
                self._earlier_builds[fingerprint] = earlier_build(default_cache_dir(), fingerprint)
            return self._earlier_builds[fingerprint]


class IndexCache:
    """Open index handles by directory, keyed by their manifest's identity."""

    def __init__(self) -> None:
        self._open: dict[Path, tuple[tuple[int, int, int], MultiVectorIndex]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, index_dir: Path) -> MultiVectorIndex:
        """The committed index in ``index_dir`` of corpus ``name``; reopened when another
        process committed."""
        manifest = index_dir / "manifest.json"
        try:
            st = manifest.stat()
        except FileNotFoundError:
            raise NotFound(f"corpus {name!r} has no index {index_dir.name!r}") from None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._open.get(manifest.parent)
            if cached and cached[0] == key:
                return cached[1]
            for _ in range(10):  # a busy writer may commit several times while we open
                try:
                    index = open_index(manifest.parent)
                    break
                except IndexCorrupt:
                    # A writer in another process swapped the manifest and removed the
                    # files of the one we read: read the new one. Same manifest: corrupt.
                    st = manifest.stat()
                    if (st.st_ino, st.st_mtime_ns, st.st_size) == key:
                        raise
                    key = (st.st_ino, st.st_mtime_ns, st.st_size)
            else:
                raise IndexCorrupt(f"index of {name!r} keeps changing while being opened")
            self._open[manifest.parent] = (key, index)
            return index

    def forget(self, corpus_dir: Path) -> None:
        """Drop every handle of the indexes under ``corpus_dir`` (a deleted corpus)."""
        with self._lock:
            for path in [p for p in self._open if p.parent == corpus_dir]:
                self._open.pop(path)

    def clear(self) -> None:
        with self._lock:
            self._open.clear()


Passages = tuple[list[int], list[str], int]  # ids, texts as the encoder sees them, version


class BM25Cache:
    """One BM25 index per corpus at the version it was built from."""

    def __init__(self) -> None:
        self._built: dict[str, tuple[int, BM25Index]] = {}  # by corpus: (version, index)
        self._lock = threading.Lock()  # guards the two dicts, never held for a build
        self._builds: dict[str, threading.Lock] = {}  # one build at a time per corpus

    def get(self, name: str, version: int, passages: Callable[[], Passages]) -> BM25Index:
        """The index of ``name`` at ``version``, built from ``passages()`` when stale."""
        with self._lock:
            build_lock = self._builds.setdefault(name, threading.Lock())
        # A rebuild of one big corpus must not stall searches of the others: only
        # searches of this corpus wait for it (and then use what it built).
        with build_lock:
            with self._lock:
                cached = self._built.get(name)
            if cached and cached[0] == version:
                return cached[1]
            ids, texts, version = passages()
            index = BM25Index.build(ids, texts)
            with self._lock:
                self._built[name] = (version, index)
            return index

    def forget(self, name: str) -> None:
        with self._lock:
            self._built.pop(name, None)
