"""Keep each corpus's chunk DB in step with the corpus: the glue the sync and the service use.

The chunk DB lives at ``<corpus dir>/chunkdb``. ``install`` registers a
listener on ``Corpora``: after each committed change it reconciles the chunk DB
with the corpus (creating it the first time). Updates skip documents whose text
hash is unchanged, so a reconcile embeds only what changed, and it repairs a
chunk DB that missed a change (e.g. a crash between the index commit and the
listener).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from indexer.corpus import Corpora, DocumentInput
from indexer.durable import exclusive_lock
from indexer.errors import NotFound
from indexer.retro import versioned_dir
from indexer.retro.chunkdb import ChunkDB
from indexer.retro.records import ChunkDBConfig

log = logging.getLogger("memex.retro")


def chunkdb_dir(corpora: Corpora, name: str) -> Path:
    return corpora.corpus_dir(name) / "chunkdb"


def reconcile(corpora: Corpora, name: str, config: ChunkDBConfig | None = None,
              progress=None) -> ChunkDB:
    """Create or repair the chunk DB of ``name`` from every document of the corpus;
    ``progress(done, total)`` while embedding."""
    corpora.info(name)  # NotFound for an unknown corpus, before any file is made
    root = chunkdb_dir(corpora, name)
    with exclusive_lock(root):
        corpora.info(name)  # deleted while we waited: write nothing back (Corpora.delete)
        try:
            db = ChunkDB.open(root)
        except NotFound:
            db = ChunkDB.create(root, config or ChunkDBConfig())
        docs = list(corpora.iter_documents(name))
        live = {d.doc_id for d in docs}
        return db.update([(d.doc_id, d.path, d.text) for d in docs],
                         deletes=[d["id"] for d in db.docs if d["id"] not in live],
                         progress=progress)


def install(corpora: Corpora) -> None:
    """Keep every chunk DB updated by each sync/upsert/delete of its corpus.

    A chunk DB costs a second encoding pass (MiniLM over 64-token chunks), so a
    corpus gets one only when asked; from then on every change keeps it fresh.

    The listener reconciles rather than replaying the change it is told about:
    listeners run after the corpus lock is released, so two changes' listeners
    may run out of order; a reconcile under the chunk DB's lock always converges
    to the corpus's latest state, and costs a hash per document beyond the
    changed documents' embedding.
    """

    def listener(name: str, upserts: list[DocumentInput], deletes: list[str]) -> None:
        if not (chunkdb_dir(corpora, name) / "CURRENT").exists():
            return  # opt-in per corpus: built by `memex retro build` or POST .../chunkdb
        try:
            reconcile(corpora, name)
        except Exception:  # the corpus change is committed; a later reconcile repairs this
            log.exception("chunk DB update of corpus %r failed", name)

    corpora.listeners.append(listener)


class ChunkDBs:
    """Open chunk DBs of a ``Corpora``, reopened when a writer committed a new version
    or the corpus was deleted and created again (its versions restart)."""

    def __init__(self, corpora: Corpora, device: str | None = None) -> None:
        self.corpora = corpora
        self.device = device
        self._open: dict[str, tuple[tuple[str, str], ChunkDB]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> ChunkDB:
        """The current chunk DB of ``name``; NotFound for an unknown corpus or none built."""
        created = self.corpora.info(name).created_at
        root = chunkdb_dir(self.corpora, name)
        try:
            version = (created, versioned_dir.current_version(root).name)
        except NotFound:
            raise NotFound(f"corpus {name!r} has no chunk DB yet: POST /v1/corpora/{name}/chunkdb "
                           f"or run `memex retro build --corpus {name}`") from None
        with self._lock:
            cached = self._open.get(name)
            if cached and cached[0] == version:
                return cached[1]
            db = ChunkDB.open(root, self.device)
            self._open[name] = (version, db)
            return db
