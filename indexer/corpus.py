"""Corpora: named document sets kept in sync with their search index.

The one entry point the service and the CLI use. A change (a directory sync or
documents put through the API) runs in three steps so a crash loses nothing:

1. chunk and encode the changed documents (slow, no state touched);
2. one SQL transaction: rows for documents and passages, the new corpus
   version, and ``pending`` = the index changes still to apply;
3. commit those changes to the index, then clear ``pending``.

A crash after 2 is finished when the corpus is next opened (``_recover``).
Writers of one corpus are serialised by a file lock, across processes.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, select

from indexer import durable
from indexer.bm25 import FUSION_DEPTH, BM25Index, fuse
from indexer.chunking import chunk_lines
from indexer.durable import exclusive_lock
from indexer.encoder import ColBERTEncoder
from indexer.errors import Conflict, IndexCorrupt, InvalidInput, NotFound
from indexer.index import create_index, open_index
from indexer.index.base import MultiVectorIndex
from indexer.models import DEFAULT_ENCODER
from indexer.sources import content_hash, walk_directory
from indexer.store import Corpus, Document, Passage, in_list, make_engine, make_sessionmaker, utcnow

log = logging.getLogger(__name__)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_K = 1000
Progress = Callable[[str, int, int], None]  # (stage, done, total)
SEARCH_MODES = ("colbert", "bm25", "hybrid")
# Hybrid: z-score fusion with BM25 beat ColBERT alone on all 1,000 stdlib queries, untrained
# (MRR@10 0.425 vs 0.419) and post-trained (0.473 vs 0.462); bench/RESULTS-retriever.md.
DEFAULT_MODE = "hybrid"


@dataclass(frozen=True)
class DocumentInput:
    doc_id: str
    text: str
    path: str | None = None
    metadata: dict | None = None


@dataclass(frozen=True)
class SearchHit:
    corpus: str
    passage_id: int
    document_id: str
    path: str | None
    start_line: int
    end_line: int
    score: float
    text: str


@dataclass
class ChangeReport:
    version: int
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    passages_added: int = 0
    passages_deleted: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class CorpusInfo:
    name: str
    kind: str
    root: str | None
    version: int
    encoder: str
    encoder_fingerprint: str
    documents: int
    passages: int
    bytes_on_disk: int
    bm25_weight: float
    created_at: str
    updated_at: str


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
    ) -> None:
        self.home = Path(home)
        self.index_engine, self.index_nbits = index_engine, index_nbits
        self.home.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(db_url or f"sqlite:///{self.home / 'memex.db'}")
        self.sessions = make_sessionmaker(self.engine)
        self.encoder_name = encoder_name
        self.allowed_roots = [Path(r).resolve() for r in allowed_roots] if allowed_roots else None
        self.hidden_roots = hidden_roots  # False: no directory named .* below an allowed root
        self.max_file_bytes = max_file_bytes
        self._encoder = encoder
        self._encoder_lock = threading.Lock()
        self._indexes: dict[Path, tuple[tuple, MultiVectorIndex]] = {}
        self._index_lock = threading.Lock()
        self._encoders: dict[str, ColBERTEncoder] = {}  # per-corpus (trained) encoders by name
        self._bm25: dict[str, tuple[int, BM25Index]] = {}  # by corpus: (version, index)
        self._bm25_lock = threading.Lock()  # guards the two dicts, never held for a build
        self._bm25_builds: dict[str, threading.Lock] = {}  # one build at a time per corpus
        # Called after each committed change: (corpus, upserted docs, deleted doc ids).
        self.listeners: list[Callable[[str, list[DocumentInput], list[str]], None]] = []
        # Called with a corpus whose index wants merging after a change; None: merge at once,
        # after the change released its lock (CLI, library). The server queues a merge job.
        self.merge_scheduler: Callable[[str], None] | None = None

    # -- models and paths ---------------------------------------------------
    @property
    def encoder(self) -> ColBERTEncoder:
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = ColBERTEncoder.load(self.encoder_name)
            return self._encoder

    def encoder_for(self, encoder_name: str, fingerprint: str) -> ColBERTEncoder:
        """The encoder a corpus row names; its fingerprint must be the one the row recorded."""
        if encoder_name == self.encoder_name:
            encoder = self.encoder
        else:
            with self._encoder_lock:
                encoder = self._encoders.get(encoder_name)
                if encoder is None or encoder.fingerprint != fingerprint:
                    encoder = self._encoders[encoder_name] = ColBERTEncoder.load(encoder_name)
        if encoder.fingerprint != fingerprint:
            raise Conflict(f"encoder {encoder_name!r} changed since the corpus was indexed "
                           f"(fingerprint {encoder.fingerprint} != {fingerprint}); re-index it")
        return encoder

    def corpus_dir(self, name: str) -> Path:
        return self.home / "corpora" / name

    def _write_lock(self, name: str):
        return exclusive_lock(self.corpus_dir(name))

    def _check_root(self, root: str) -> Path:
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
        resolved = str(self._check_root(root)) if root is not None else None
        with self.sessions.begin() as s:
            if s.scalar(select(Corpus).where(Corpus.name == name)):
                raise Conflict(f"corpus {name!r} already exists")
            index_dir = self.corpus_dir(name) / "index"
            if self.corpus_dir(name).exists():  # left by a corpus whose delete crashed
                for old in self.corpus_dir(name).iterdir():
                    if old.name != ".lock":
                        durable.remove(old)
            create_index(index_dir, self.encoder.dim, self.index_engine, self.index_nbits)
            s.add(Corpus(name=name, kind="directory" if root else "documents", root=resolved,
                         encoder=self.encoder_name, encoder_fingerprint=self.encoder.fingerprint))
        return self.info(name)

    def _row(self, s, name: str) -> Corpus:
        row = s.scalar(select(Corpus).where(Corpus.name == name))
        if row is None:
            raise NotFound(f"corpus {name!r} does not exist")
        return row

    def info(self, name: str) -> CorpusInfo:
        with self.sessions() as s:
            row = self._row(s, name)
            docs = s.scalar(select(func.count()).where(Document.corpus_id == row.id))
            passages = s.scalar(select(func.count()).where(Passage.corpus_id == row.id))
        index_dir = self.corpus_dir(name) / row.index_dir
        size = sum(f.stat().st_size for f in index_dir.rglob("*") if f.is_file()) \
            if index_dir.exists() else 0
        return CorpusInfo(row.name, row.kind, row.root, row.version, row.encoder,
                          row.encoder_fingerprint, docs or 0, passages or 0, size,
                          row.bm25_weight, row.created_at.isoformat(),
                          row.updated_at.isoformat())

    def set_bm25_weight(self, name: str, weight: float) -> None:
        """BM25's share in this corpus's hybrid search (``indexer/bm25.fuse``)."""
        if not 0.0 <= weight <= 1.0:
            raise InvalidInput("bm25_weight must be between 0 and 1")
        with self.sessions.begin() as s:
            self._row(s, name).bm25_weight = weight

    def names(self) -> list[str]:
        with self.sessions() as s:
            return list(s.scalars(select(Corpus.name).order_by(Corpus.name)))

    def list(self) -> list[CorpusInfo]:
        return [self.info(n) for n in self.names()]

    def delete(self, name: str) -> None:
        """Remove the corpus: its rows, then every file under its folder (index, chunk DB).

        The chunk DB's lock is held too, so a chunk DB build running meanwhile
        cannot write the deleted text back (``indexer/retro/sync.py``)."""
        with self.sessions() as s:
            self._row(s, name)  # NotFound before any file is made (no .lock for a typo)
        with self._write_lock(name), exclusive_lock(self.corpus_dir(name) / "chunkdb"):
            with self.sessions.begin() as s:
                row = self._row(s, name)
                s.execute(delete(Passage).where(Passage.corpus_id == row.id))
                s.execute(delete(Document).where(Document.corpus_id == row.id))
                s.delete(row)
            with self._index_lock:
                for path in [p for p in self._indexes if p.parent == self.corpus_dir(name)]:
                    self._indexes.pop(path)
            with self._bm25_lock:
                self._bm25.pop(name, None)
            durable.remove(self.corpus_dir(name))

    # -- index handles ------------------------------------------------------
    def index(self, name: str, index_dir: str | None = None) -> MultiVectorIndex:
        """The committed index of ``name`` (in ``index_dir``, default: the one its row
        points to); reopened when another process committed."""
        if index_dir is None:
            with self.sessions() as s:
                index_dir = self._row(s, name).index_dir
        manifest = self.corpus_dir(name) / index_dir / "manifest.json"
        try:
            st = manifest.stat()
        except FileNotFoundError:
            raise NotFound(f"corpus {name!r} has no index {index_dir!r}") from None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._index_lock:
            cached = self._indexes.get(manifest.parent)
            if cached and cached[0] == key:
                return cached[1]
            for _ in range(3):
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
            self._indexes[manifest.parent] = (key, index)
            return index

    def passages(self, name: str) -> tuple[list[int], list[str], int]:
        """Every passage id with the text the encoder sees, and the corpus version read."""
        with self.sessions() as s:
            row = self._row(s, name)
            rows = s.execute(select(Passage.id, Passage.text, Document.doc_id, Document.path)
                             .join(Document, Passage.document_id == Document.id)
                             .where(Passage.corpus_id == row.id).order_by(Passage.id)).all()
            version = row.version
        texts = [self._passage_text(DocumentInput(doc_id, "", path), text)
                 for _, text, doc_id, path in rows]
        return [r[0] for r in rows], texts, version

    def bm25(self, name: str) -> BM25Index:
        """The BM25 index of ``name`` at its current version (rebuilt after a change)."""
        with self.sessions() as s:
            version = self._row(s, name).version
        with self._bm25_lock:
            build_lock = self._bm25_builds.setdefault(name, threading.Lock())
        # A rebuild of one big corpus must not stall searches of the others: only
        # searches of this corpus wait for it (and then use what it built).
        with build_lock:
            with self._bm25_lock:
                cached = self._bm25.get(name)
            if cached and cached[0] == version:
                return cached[1]
            ids, texts, version = self.passages(name)
            index = BM25Index.build(ids, texts)
            with self._bm25_lock:
                self._bm25[name] = (version, index)
            return index

    # -- changes ------------------------------------------------------------
    def sync(self, name: str, progress: Progress | None = None) -> ChangeReport:
        """Bring a directory corpus up to date with its directory."""
        with self.sessions() as s:
            row = self._row(s, name)
            if row.kind != "directory":
                raise InvalidInput(f"corpus {name!r} has no directory to sync")
            root = self._check_root(row.root)
            known = set(s.scalars(select(Document.doc_id).where(Document.corpus_id == row.id)))
        if progress:
            progress("walk", 0, 0)
        walked = walk_directory(root, self.max_file_bytes)
        docs = [DocumentInput(f.rel_path, f.text, path=f.rel_path) for f in walked.files]
        if progress:
            progress("walk", len(docs), len(docs))
        gone = sorted(known - {d.doc_id for d in docs})
        report = self._apply(name, docs, gone, progress)
        report.skipped = walked.skipped
        return report

    def upsert_documents(self, name: str, docs: list[DocumentInput],
                         progress: Progress | None = None) -> ChangeReport:
        for d in docs:
            if not d.doc_id or len(d.doc_id) > 1024:
                raise InvalidInput("document ids must be 1-1024 characters")
            if not d.text.strip():
                raise InvalidInput(f"document {d.doc_id!r} is empty")
        if len({d.doc_id for d in docs}) != len(docs):
            raise InvalidInput("document ids in one request must be unique")
        return self._apply(name, docs, [], progress)

    def delete_documents(self, name: str, doc_ids: list[str]) -> ChangeReport:
        with self.sessions() as s:
            row = self._row(s, name)
            existing = {d for cond in in_list(s, Document.doc_id, doc_ids)
                        for d in s.scalars(select(Document.doc_id).where(
                            Document.corpus_id == row.id, cond))}
        missing = sorted(set(doc_ids) - existing)
        if missing:
            raise NotFound(f"documents not in corpus {name!r}: {missing[:5]}")
        return self._apply(name, [], doc_ids, None)

    def _apply(self, name: str, upserts: list[DocumentInput], deletes: list[str],
               progress: Progress | None) -> ChangeReport:
        t0 = time.perf_counter()
        with self._write_lock(name):
            self._recover(name)
            with self.sessions() as s:
                row = self._row(s, name)
                encoder = self.encoder_for(row.encoder, row.encoder_fingerprint)
                index_dir = row.index_dir
                hashes = dict(s.execute(select(Document.doc_id, Document.content_hash)
                                        .where(Document.corpus_id == row.id)).all())
            report = ChangeReport(version=row.version)
            changed = []
            for d in upserts:
                old = hashes.get(d.doc_id)
                if old == content_hash(d.text):
                    report.unchanged += 1
                    continue
                (report.updated if old else report.added).append(d.doc_id)
                changed.append(d)
            report.deleted = [d for d in deletes if d in hashes]
            if not changed and not report.deleted:
                report.seconds = time.perf_counter() - t0
                return report
            headers = encoder.count_tokens([d.path or d.doc_id for d in changed])
            chunks = []
            for d, n in zip(changed, headers):
                chunks.append(self._chunk(d, encoder, n))
                if progress and (len(chunks) % 64 == 0 or len(chunks) == len(changed)):
                    progress("chunk", len(chunks), len(changed))
            texts = [self._passage_text(d, p.text) for d, ps in zip(changed, chunks) for p in ps]
            total = len(texts)
            done = [0]

            def step(n: int) -> None:
                done[0] += n
                if progress:
                    progress("encode", done[0], total)

            if progress:
                progress("encode", 0, total)
            vectors = encoder.encode_documents(texts, progress=step, dtype=np.float16)
            if progress:
                progress("commit", 0, 1)
            new_ids, old_ids = self._commit_rows(name, changed, chunks, report.deleted)
            index = self.index(name, index_dir)
            index.progress = progress  # a PLAID index reports its codec / compress stages
            try:
                index.commit(np.array(new_ids, np.int64), vectors, np.array(old_ids, np.int64), merge=False)
            finally:
                index.progress = None
            with self.sessions.begin() as s:
                row = self._row(s, name)
                row.pending = None
                report.version = row.version
            report.passages_added, report.passages_deleted = len(new_ids), len(old_ids)
            if progress:
                progress("commit", 1, 1)
        if progress:  # built now rather than by the first search, so the bar says what it costs
            progress("bm25", 0, 1)
            self.bm25(name)
            progress("bm25", 1, 1)
        for listener in self.listeners:
            listener(name, changed, report.deleted)
        if self.index(name, index_dir).needs_merge():
            try:
                (self.merge_scheduler or self.merge)(name)
            except Exception as exc:  # the change is committed; the next change retries the merge
                log.warning("merge of corpus %r not started: %s", name, exc)
        report.seconds = time.perf_counter() - t0
        return report

    def merge(self, name: str) -> int:
        """Run the index's merge policy. New segments are written while syncs and searches go
        on; only their publication takes the corpus's writer lock. Returns merges published."""
        return self.index(name).merge(publish_lock=lambda: self._write_lock(name))

    def optimize(self, name: str) -> int:
        """Merge the index down to one segment under one codec (``memex optimize``)."""
        return self.index(name).optimize(publish_lock=lambda: self._write_lock(name))

    @staticmethod
    def _chunk(doc: DocumentInput, encoder: ColBERTEncoder, header_tokens: int | None = None):
        """Passages of ``doc`` that fit the encoder after its path header (``header_tokens``
        tokens, counted here if not given; a sync counts all headers in one call)."""
        if header_tokens is None:
            header_tokens = encoder.count_tokens([doc.path or doc.doc_id])[0]
        header_tokens += 3
        budget = max(16, encoder.config.doc_max_tokens - header_tokens)
        return chunk_lines(doc.text, max_tokens=budget, count_tokens=encoder.count_tokens,
                           additive=encoder.lines_add_up(doc.text))

    @staticmethod
    def _passage_text(doc: DocumentInput, text: str) -> str:
        """What the encoder sees: the path first, so a query can match a file name."""
        return f"{doc.path or doc.doc_id}\n{text}"

    def _commit_rows(self, name, changed, chunks, deleted) -> tuple[list[int], list[int]]:
        """Step 2: one transaction for rows, version and the redo record."""
        with self.sessions.begin() as s:
            row = self._row(s, name)
            touched = [d.doc_id for d in changed] + list(deleted)
            old_docs = {d.doc_id: d for cond in in_list(s, Document.doc_id, touched)
                        for d in s.scalars(select(Document).where(
                            Document.corpus_id == row.id, cond))}
            old_ids = [i for cond in in_list(s, Passage.document_id,
                                             [d.id for d in old_docs.values()])
                       for i in s.scalars(select(Passage.id).where(cond))]
            for cond in in_list(s, Passage.id, old_ids):
                s.execute(delete(Passage).where(cond))
            for doc_id in deleted:
                s.delete(old_docs[doc_id])
            new_passages = []
            for d, passages in zip(changed, chunks):
                doc = old_docs.get(d.doc_id) or Document(corpus_id=row.id, doc_id=d.doc_id)
                doc.path, doc.text, doc.content_hash = d.path, d.text, content_hash(d.text)
                doc.n_chars = len(d.text)
                doc.metadata_, doc.updated_at = d.metadata, utcnow()
                s.add(doc)
                s.flush()
                for p in passages:
                    new_passages.append(Passage(
                        corpus_id=row.id, document_id=doc.id, start_line=p.start_line,
                        end_line=p.end_line, start_char=p.start_char, end_char=p.end_char,
                        text=p.text))
            s.add_all(new_passages)
            s.flush()
            new_ids = [p.id for p in new_passages]
            row.version += 1
            row.updated_at = utcnow()
            row.pending = {"add": new_ids, "delete": old_ids}
        return new_ids, old_ids

    def _recover(self, name: str) -> None:
        """Finish a change whose rows committed but whose index commit did not."""
        with self.sessions() as s:
            row = self._row(s, name)
            pending = row.pending
            if not pending:
                return
            encoder = self.encoder_for(row.encoder, row.encoder_fingerprint)
            index_dir = row.index_dir
            passages = {p.id: p for cond in in_list(s, Passage.id, pending["add"])
                        for p in s.scalars(select(Passage).where(cond))}
            docs = {d.id: d for cond in in_list(s, Document.id,
                                                {p.document_id for p in passages.values()})
                    for d in s.scalars(select(Document).where(cond))}
        add_ids = [i for i in pending["add"] if i in passages]
        texts = [self._passage_text(
            DocumentInput(docs[passages[i].document_id].doc_id, "", docs[passages[i].document_id].path),
            passages[i].text) for i in add_ids]
        vectors = encoder.encode_documents(texts)
        self.index(name, index_dir).commit(np.array(add_ids, np.int64), vectors,
                                np.array(pending["delete"], np.int64))
        with self.sessions.begin() as s:
            self._row(s, name).pending = None

    def recover_all(self) -> list[str]:
        """Finish interrupted changes of every corpus (called at start-up)."""
        with self.sessions() as s:
            names = list(s.scalars(select(Corpus.name).where(Corpus.pending.is_not(None))))
        for name in names:
            with self._write_lock(name):
                self._recover(name)
        return names

    # -- reading ------------------------------------------------------------
    def documents(self, name: str, offset: int = 0, limit: int = 100) -> tuple[int, list[Document]]:
        with self.sessions() as s:
            row = self._row(s, name)
            total = s.scalar(select(func.count()).where(Document.corpus_id == row.id)) or 0
            docs = list(s.scalars(select(Document).where(Document.corpus_id == row.id)
                                  .order_by(Document.doc_id).offset(offset).limit(limit)))
        return total, docs

    def document(self, name: str, doc_id: str) -> tuple[Document, list[Passage]]:
        with self.sessions() as s:
            row = self._row(s, name)
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
            row = self._row(s, name)
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
        mode = mode or DEFAULT_MODE
        if mode not in SEARCH_MODES:
            raise InvalidInput(f"mode must be one of {', '.join(SEARCH_MODES)}")
        if not names:
            raise InvalidInput("name at least one corpus")
        if not 1 <= k <= MAX_K:
            raise InvalidInput(f"k must be between 1 and {MAX_K}")
        for q in queries:
            if not q or not q.strip():
                raise InvalidInput("queries must not be empty")
        with self.sessions() as s:
            rows = {n: self._row(s, n) for n in names}
        knobs = {n: v for n, v in (("nprobe", nprobe), ("candidates", candidates),
                                   ("decompress", decompress)) if v}
        encoded: dict[str, list[np.ndarray]] = {}  # query vectors per encoder fingerprint
        merged: list[list[SearchHit]] = [[] for _ in queries]
        depth = max(k, FUSION_DEPTH) if mode == "hybrid" else k
        for name, row in rows.items():
            allowed = self._allowed_ids(row.id, path_glob) if path_glob else None
            if allowed is not None and len(allowed) == 0:
                continue
            found: list[list[tuple[int, float]]] = [[] for _ in queries]
            if mode != "bm25":
                if row.encoder_fingerprint not in encoded:
                    encoder = self.encoder_for(row.encoder, row.encoder_fingerprint)
                    encoded[row.encoder_fingerprint] = encoder.encode_queries(queries)
                found = [[(p.passage_id, p.score) for p in r] for r in self.index(
                    name, row.index_dir).search(encoded[row.encoder_fingerprint], depth, allowed,
                                                **knobs)]
            if mode != "colbert":
                lexical = self.bm25(name).search(queries, depth, allowed)
                found = lexical if mode == "bm25" else [
                    fuse(dense, sparse, row.bm25_weight, k)
                    for dense, sparse in zip(found, lexical)]
            hits = self._hydrate(name, {p for r in found for p, _ in r})
            for qi, ranked in enumerate(found):
                merged[qi] += [hits[p](score) for p, score in ranked[:k] if p in hits]
        return [sorted(h, key=lambda x: -x.score)[:k] for h in merged]

    def _allowed_ids(self, corpus_id: int, glob: str) -> np.ndarray:
        with self.sessions() as s:
            docs = s.execute(select(Document.id, Document.path, Document.doc_id)
                             .where(Document.corpus_id == corpus_id)).all()
            keep = [i for i, path, doc_id in docs if fnmatch.fnmatchcase(path or doc_id, glob)]
            ids = [i for cond in in_list(s, Passage.document_id, keep)
                   for i in s.scalars(select(Passage.id).where(cond))]
            return np.array(sorted(ids), dtype=np.int64)

    def _hydrate(self, name: str, ids: set[int]) -> dict[int, Callable[[float], SearchHit]]:
        with self.sessions() as s:
            rows = [r for cond in in_list(s, Passage.id, ids)
                    for r in s.execute(select(Passage, Document.doc_id, Document.path)
                                       .join(Document, Passage.document_id == Document.id)
                                       .where(cond))]
        return {
            p.id: (lambda score, p=p, doc_id=doc_id, path=path: SearchHit(
                name, p.id, doc_id, path, p.start_line, p.end_line, score, p.text))
            for p, doc_id, path in rows
        }
