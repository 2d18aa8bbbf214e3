"""Corpora: named document sets kept in sync with their search index.

The one entry point the service and the CLI use: a thin facade over the parts that
do the work: the change pipeline and its crash recovery (``changes.py``), search
(``search.py``) and what stays open between calls (``caches.py``). Here: the corpus
rows (create, read, delete) and the per-corpus writer lock, a file lock that
serialises writers across processes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from indexer import durable
from indexer.bm25 import BM25Index
from indexer.corpus import search as search_module
from indexer.corpus.caches import BM25Cache, EncoderCache, IndexCache
from indexer.corpus.changes import ChangePipeline, passage_text
from indexer.corpus.records import ChangeReport, CorpusInfo, DocumentInput, EncodePool, SearchHit
from indexer.database import Corpus, Document, Passage, make_engine, make_sessionmaker
from indexer.durable import exclusive_lock
from indexer.encoding.encoder import ColBERTEncoder
from indexer.errors import Conflict, InvalidInput, NotFound
from indexer.index import create_index
from indexer.index.base import MultiVectorIndex
from indexer.models import DEFAULT_ENCODER
from indexer.progress import Progress

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Listener = Callable[[str, list[DocumentInput], list[str]], None]


class Corpora:
    """All corpora of one data directory."""

    def __init__(
        self,
        home: Path,
        db_url: str | None = None,
        encoder_name: str = DEFAULT_ENCODER,
        allowed_roots: list[Path] | None = None,
        max_file_bytes: int = 2_000_000,
        encoder: ColBERTEncoder | None = None,
        index_engine: str = "plaid",
        index_nbits: int = 2,
        hidden_roots: bool = True,
        index_shards: int = 1,
        encode_pool: EncodePool | None = None,
    ) -> None:
        self.home = Path(home)
        self.index_engine, self.index_nbits = index_engine, index_nbits
        self.index_shards = index_shards  # new corpora split by document (docs/scale-out.md)
        # Encodes a sync's passages elsewhere: indexer/distributed/encode_pool.RayEncodePool.
        self.encode_pool = encode_pool
        self.home.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(db_url or f"sqlite:///{self.home / 'memex.db'}")
        self.sessions = make_sessionmaker(self.engine)
        self.encoder_name = encoder_name
        self.allowed_roots = [Path(r).resolve() for r in allowed_roots] if allowed_roots else None
        self.hidden_roots = hidden_roots  # False: no directory named .* below an allowed root
        self.max_file_bytes = max_file_bytes
        self.encoders = EncoderCache(encoder_name, encoder)
        self.indexes = IndexCache()
        self.bm25_indexes = BM25Cache()
        self.changes = ChangePipeline(self)
        # Called after each committed change: (corpus, upserted docs, deleted doc ids).
        self.listeners: list[Listener] = []
        # Called with a corpus whose index wants merging after a change; None: merge at once,
        # after the change released its lock (CLI, library). The server queues a merge job.
        self.merge_scheduler: Callable[[str], None] | None = None

    # -- models and paths ---------------------------------------------------
    @property
    def encoder(self) -> ColBERTEncoder:
        """The default encoder of new corpora (loaded on first use)."""
        return self.encoders.default()

    def encoder_for(self, encoder_name: str, fingerprint: str) -> ColBERTEncoder:
        """The encoder a corpus row names; its fingerprint must be the one the row recorded."""
        return self.encoders.get(encoder_name, fingerprint)

    def corpus_dir(self, name: str) -> Path:
        return self.home / "corpora" / name

    def write_lock(self, name: str) -> AbstractContextManager[None]:
        """The corpus's writer lock: held by every change, recovery, index switch and merge
        publication, across processes."""
        return exclusive_lock(self.corpus_dir(name))

    def check_root(self, root: str) -> Path:
        """``root`` resolved, if it is a directory this data directory may index."""
        path = Path(root).expanduser()
        if not path.exists():
            raise InvalidInput(f"directory {root!r} does not exist")
        path = path.resolve()
        if not path.is_dir():
            raise InvalidInput(f"{root!r} is not a directory")
        if self.allowed_roots is not None and not any(
            path == r or r in path.parents for r in self.allowed_roots
        ):
            raise InvalidInput(
                f"directory {root!r} is outside the allowed roots (MEMEX_ALLOWED_ROOTS)",
                allowed_roots=[str(r) for r in self.allowed_roots],
            )
        if not self.hidden_roots:
            base = next((r for r in self.allowed_roots or [] if path == r or r in path.parents),
                        path)
            hidden = [p for p in path.relative_to(base).parts if p.startswith(".")]
            if hidden:
                raise InvalidInput(f"directory {root!r} is in the hidden directory {hidden[0]!r}; "
                                   "set MEMEX_ALLOWED_ROOTS to index it")
        return path

    # -- corpora ------------------------------------------------------------
    def create(self, name: str, root: str | None = None) -> CorpusInfo:
        if not NAME_RE.match(name):
            raise InvalidInput(
                f"invalid corpus name {name!r}: use 1-64 letters, digits, '.', '_' or '-'"
            )
        resolved = str(self.check_root(root)) if root is not None else None
        with self.sessions.begin() as s:
            if s.scalar(select(Corpus).where(Corpus.name == name)):
                raise Conflict(f"corpus {name!r} already exists")
            index_dir = self.corpus_dir(name) / "index"
            if self.corpus_dir(name).exists():  # left by a corpus whose delete crashed
                for old in self.corpus_dir(name).iterdir():
                    if old.name != ".lock":
                        durable.remove(old)
            create_index(index_dir, self.encoder.dim, self.index_engine, self.index_nbits,
                         self.index_shards)
            s.add(Corpus(name=name, kind="directory" if root else "documents", root=resolved,
                         encoder=self.encoder_name, encoder_fingerprint=self.encoder.fingerprint))
        return self.info(name)

    def row(self, s: Session, name: str) -> Corpus:
        """The corpus's row in session ``s``; NotFound when there is none."""
        row = s.scalar(select(Corpus).where(Corpus.name == name))
        if row is None:
            raise NotFound(f"corpus {name!r} does not exist")
        return row

    def info(self, name: str) -> CorpusInfo:
        with self.sessions() as s:
            row = self.row(s, name)
            docs = s.scalar(select(func.count()).where(Document.corpus_id == row.id))
            passages = s.scalar(select(func.count()).where(Passage.corpus_id == row.id))
        index_dir = self.corpus_dir(name) / row.index_dir
        size = durable.tree_bytes(index_dir)
        return CorpusInfo(row.name, row.kind, row.root, row.version, row.encoder,
                          row.encoder_fingerprint, docs or 0, passages or 0, size,
                          row.bm25_weight, row.created_at.isoformat(),
                          row.updated_at.isoformat())

    def set_bm25_weight(self, name: str, weight: float) -> None:
        """BM25's share in this corpus's hybrid search (``indexer/bm25.fuse``)."""
        if not 0.0 <= weight <= 1.0:
            raise InvalidInput("bm25_weight must be between 0 and 1")
        with self.sessions.begin() as s:
            self.row(s, name).bm25_weight = weight

    def switch_index(self, name: str, encoder_name: str, fingerprint: str, index_dir: str,
                     pooled: dict[int, bytes]) -> None:
        """Point the corpus at another encoder and index, and its passages at the new
        encoder's packed pooled vectors (by passage id), in one transaction, so a search
        reads either the old pair or the new (``indexer/reindex.py``)."""
        with self.sessions.begin() as s:
            row = self.row(s, name)
            row.encoder, row.encoder_fingerprint = encoder_name, fingerprint
            row.index_dir = index_dir
            if pooled:
                s.execute(update(Passage), [{"id": i, "pooled": b} for i, b in pooled.items()])

    def names(self) -> list[str]:
        with self.sessions() as s:
            return list(s.scalars(select(Corpus.name).order_by(Corpus.name)))

    def delete(self, name: str) -> None:
        """Remove the corpus: its rows, then every file under its folder (index, chunk DB).

        The chunk DB's lock is held too, so a chunk DB build running meanwhile
        cannot write the deleted text back (``indexer/retro/sync.py``)."""
        with self.sessions() as s:
            self.row(s, name)  # NotFound before any file is made (no .lock for a typo)
        with self.write_lock(name), exclusive_lock(self.corpus_dir(name) / "chunkdb"):
            with self.sessions.begin() as s:
                row = self.row(s, name)
                s.execute(delete(Passage).where(Passage.corpus_id == row.id))
                s.execute(delete(Document).where(Document.corpus_id == row.id))
                s.delete(row)
            self.indexes.forget(self.corpus_dir(name))
            self.bm25_indexes.forget(name)
            durable.remove(self.corpus_dir(name))

    # -- index handles ------------------------------------------------------
    def index(self, name: str, index_dir: str | None = None) -> MultiVectorIndex:
        """The committed index of ``name`` (in ``index_dir``, default: the one its row
        points to); reopened when another process committed."""
        if index_dir is None:
            with self.sessions() as s:
                index_dir = self.row(s, name).index_dir
        return self.indexes.get(name, self.corpus_dir(name) / index_dir)

    def passages(self, name: str) -> tuple[list[int], list[str], int]:
        """Every passage id with the text the encoder sees, and the corpus version read."""
        with self.sessions() as s:
            row = self.row(s, name)
            rows = s.execute(select(Passage.id, Passage.text, Document.doc_id, Document.path)
                             .join(Document, Passage.document_id == Document.id)
                             .where(Passage.corpus_id == row.id).order_by(Passage.id)).all()
            version = row.version
        texts = [passage_text(DocumentInput(doc_id, "", path), text)
                 for _, text, doc_id, path in rows]
        return [r[0] for r in rows], texts, version

    def bm25(self, name: str) -> BM25Index:
        """The BM25 index of ``name`` at its current version (rebuilt after a change)."""
        with self.sessions() as s:
            version = self.row(s, name).version
        return self.bm25_indexes.get(name, version, lambda: self.passages(name))

    # -- changes (changes.py) -----------------------------------------------
    def sync(self, name: str, progress: Progress | None = None) -> ChangeReport:
        """Bring a directory corpus up to date with its directory."""
        return self.changes.sync(name, progress)

    def upsert_documents(self, name: str, docs: list[DocumentInput],
                         progress: Progress | None = None) -> ChangeReport:
        return self.changes.upsert_documents(name, docs, progress)

    def delete_documents(self, name: str, doc_ids: list[str]) -> ChangeReport:
        return self.changes.delete_documents(name, doc_ids)

    def recover(self, name: str) -> None:
        """Finish an interrupted change of ``name``; the caller holds ``write_lock(name)``."""
        self.changes.recover(name)

    def recover_all(self) -> list[str]:
        """Finish interrupted changes of every corpus (called at start-up)."""
        return self.changes.recover_all()

    def merge(self, name: str) -> int:
        """Run the index's merge policy. New segments are written while syncs and searches go
        on; only their publication takes the corpus's writer lock. Returns merges published."""
        return self.index(name).merge(publish_lock=lambda: self.write_lock(name))

    def optimize(self, name: str) -> int:
        """Merge the index down to one segment under one codec (``memex optimize``)."""
        return self.index(name).optimize(publish_lock=lambda: self.write_lock(name))

    # -- reading ------------------------------------------------------------
    def documents(self, name: str, offset: int = 0, limit: int = 100) -> tuple[int, list[Document]]:
        with self.sessions() as s:
            row = self.row(s, name)
            total = s.scalar(select(func.count()).where(Document.corpus_id == row.id)) or 0
            docs = list(s.scalars(select(Document).where(Document.corpus_id == row.id)
                                  .order_by(Document.doc_id).offset(offset).limit(limit)))
        return total, docs

    def document(self, name: str, doc_id: str) -> tuple[Document, list[Passage]]:
        with self.sessions() as s:
            row = self.row(s, name)
            doc = s.scalar(select(Document).where(Document.corpus_id == row.id,
                                                  Document.doc_id == doc_id))
            if doc is None:
                raise NotFound(f"document {doc_id!r} is not in corpus {name!r}")
            passages = list(s.scalars(select(Passage).where(Passage.document_id == doc.id)
                                      .order_by(Passage.start_line)))
        return doc, passages

    def iter_documents(self, name: str) -> Iterator[DocumentInput]:
        """Every document's text, in id order: what cartridges and RETRO read."""
        with self.sessions() as s:
            row = self.row(s, name)
            for doc in s.scalars(select(Document).where(Document.corpus_id == row.id)
                                 .order_by(Document.doc_id)):
                yield DocumentInput(doc.doc_id, doc.text, doc.path, doc.metadata_)

    def search(self, names: list[str], queries: list[str], k: int = 10,
               path_glob: str | None = None, mode: str | None = None,
               nprobe: int | None = None, candidates: int | None = None,
               decompress: int | None = None) -> list[list[SearchHit]]:
        """Top ``k`` passages per query over the union of ``names``.

        ``mode``: ``colbert`` (MaxSim scores), ``bm25`` (BM25 scores) or ``hybrid``
        (z-score fusion of both, weighted per corpus, see ``indexer/bm25.py``); default
        ``hybrid``.
        ``nprobe``, ``candidates`` and ``decompress`` override the engine's defaults for
        this call.
        Each corpus is searched with the encoder and index its row points to, read
        together, so a re-index switching them never yields a mix.
        """
        return search_module.search(self, names, queries, k, path_glob, mode,
                                    nprobe, candidates, decompress)

    # last in the class: below it, ``list`` in an annotation would name this method
    def list(self) -> list[CorpusInfo]:
        return [self.info(n) for n in self.names()]
