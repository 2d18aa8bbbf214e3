"""The change pipeline: how a sync or an API upsert/delete reaches rows and index, crash-safe.

A change runs in three steps so a crash loses nothing:

1. chunk and encode the changed documents (slow, no state touched; ``encode_passages``);
2. one SQL transaction: rows for documents and passages, the new corpus
   version, and ``pending`` = the index changes still to apply (``commit_rows``);
3. commit those changes to the index, then clear ``pending``.

A crash after 2 is finished when the corpus is next written or opened
(``ChangePipeline.recover``). Writers of one corpus are serialised by a file lock,
across processes (``Corpora.write_lock``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import delete, select

from indexer import line_windows
from indexer import pooled as pooled_module
from indexer.corpus.records import ChangeReport, DocumentInput, EncodePool
from indexer.database import Corpus, Document, Passage, in_list, utcnow
from indexer.distributed.sharded import commit_documents
from indexer.encoding.encoder import ColBERTEncoder
from indexer.errors import InvalidInput, NotFound
from indexer.progress import Progress
from indexer.sources import content_hash, walk_directory

if TYPE_CHECKING:
    from indexer.corpus.corpora import Corpora

log = logging.getLogger("indexer.corpus")


def chunk_document(doc: DocumentInput, encoder: ColBERTEncoder,
                   header_tokens: int | None = None) -> list[line_windows.Passage]:
    """Passages of ``doc`` that fit the encoder after its path header (``header_tokens``
    tokens, counted here if not given; a sync counts all headers in one call)."""
    if header_tokens is None:
        header_tokens = encoder.count_tokens([doc.path or doc.doc_id])[0]
    header_tokens += 3
    budget = max(16, encoder.config.doc_max_tokens - header_tokens)
    return line_windows.chunk_lines(doc.text, max_tokens=budget, count_tokens=encoder.count_tokens,
                       additive=encoder.lines_add_up(doc.text))


def passage_text(doc: DocumentInput, text: str) -> str:
    """What the encoder sees: the path first, so a query can match a file name."""
    return f"{doc.path or doc.doc_id}\n{text}"


def encode_passages(encoder: ColBERTEncoder, encoder_name: str, texts: list[str],
                    progress: Progress | None,
                    pool: EncodePool | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Step 1's slow half: token vectors of the new passages (float16) and their pooled
    vectors, reported as the ``encode`` stage."""
    total = len(texts)
    done = [0]

    def step(n: int) -> None:
        done[0] += n
        if progress:
            progress("encode", done[0], total)

    if progress:
        progress("encode", 0, total)
    if pool is not None:
        return pool.encode_documents_and_pooled(encoder, encoder_name, texts, step, np.float16)
    return encoder.encode_documents_and_pooled(texts, progress=step, dtype=np.float16)


class ChangePipeline:
    """Syncs, upserts and deletes of the corpora of one ``Corpora``, and their recovery."""

    def __init__(self, corpora: Corpora) -> None:
        self.corpora = corpora

    def sync(self, name: str, progress: Progress | None = None) -> ChangeReport:
        """Bring a directory corpus up to date with its directory."""
        c = self.corpora
        with c.sessions() as s:
            row = c.row(s, name)
            if row.kind != "directory":
                raise InvalidInput(f"corpus {name!r} has no directory to sync")
            assert row.root is not None  # a directory corpus always has one
            root = c.check_root(row.root)
            known = set(s.scalars(select(Document.doc_id).where(Document.corpus_id == row.id)))
        if progress:
            progress("walk", 0, 0)
        walked = walk_directory(root, c.max_file_bytes)
        docs = [DocumentInput(f.rel_path, f.text, path=f.rel_path) for f in walked.files]
        if progress:
            progress("walk", len(docs), len(docs))
        gone = sorted(known - {d.doc_id for d in docs})
        report = self.apply(name, docs, gone, progress)
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
        return self.apply(name, docs, [], progress)

    def delete_documents(self, name: str, doc_ids: list[str]) -> ChangeReport:
        c = self.corpora
        with c.sessions() as s:
            row = c.row(s, name)
            existing = {d for cond in in_list(s, Document.doc_id, doc_ids)
                        for d in s.scalars(select(Document.doc_id).where(
                            Document.corpus_id == row.id, cond))}
        missing = sorted(set(doc_ids) - existing)
        if missing:
            raise NotFound(f"documents not in corpus {name!r}: {missing[:5]}")
        return self.apply(name, [], doc_ids, None)

    def apply(self, name: str, upserts: list[DocumentInput], deletes: list[str],
              progress: Progress | None) -> ChangeReport:
        """The three steps for one change, under the corpus's writer lock."""
        c = self.corpora
        t0 = time.perf_counter()
        with c.write_lock(name):
            self.recover(name)
            with c.sessions() as s:
                row = c.row(s, name)
                encoder = c.encoder_for(row.encoder, row.encoder_fingerprint)
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
                chunks.append(chunk_document(d, encoder, n))
                if progress and (len(chunks) % 64 == 0 or len(chunks) == len(changed)):
                    progress("chunk", len(chunks), len(changed))
            texts = [passage_text(d, p.text) for d, ps in zip(changed, chunks) for p in ps]
            vectors, pooled = encode_passages(encoder, row.encoder, texts, progress, c.encode_pool)
            if progress:
                progress("commit", 0, 1)
            new_ids, old_ids = self.commit_rows(name, changed, chunks, report.deleted,
                                                pooled_module.pack(pooled))
            index = c.index(name, index_dir)
            index.progress = progress  # a PLAID index reports its codec / compress stages
            try:
                commit_documents(index, np.array(new_ids, np.int64), vectors,
                                 np.array(old_ids, np.int64),
                                 [d.doc_id for d, ps in zip(changed, chunks) for _ in ps], merge=False)
            finally:
                index.progress = None
            with c.sessions.begin() as s:
                row = c.row(s, name)
                row.pending = None
                report.version = row.version
            report.passages_added, report.passages_deleted = len(new_ids), len(old_ids)
            if progress:
                progress("commit", 1, 1)
        if progress:  # built now rather than by the first search, so the bar says what it costs
            progress("bm25", 0, 1)
            c.bm25(name)
            progress("bm25", 1, 1)
        for listener in c.listeners:
            listener(name, changed, report.deleted)
        if c.index(name, index_dir).needs_merge():
            try:
                (c.merge_scheduler or c.merge)(name)
            except Exception as exc:  # the change is committed; the next change retries the merge
                log.warning("merge of corpus %r not started: %s", name, exc)
        report.seconds = time.perf_counter() - t0
        return report

    def commit_rows(self, name: str, changed: list[DocumentInput],
                    chunks: list[list[line_windows.Passage]], deleted: list[str],
                    pooled: list[bytes]) -> tuple[list[int], list[int]]:
        """Step 2: one transaction for rows (with the passages' packed pooled vectors, in
        passage order), version and the redo record."""
        c = self.corpora
        with c.sessions.begin() as s:
            row = c.row(s, name)
            touched = [d.doc_id for d in changed] + list(deleted)
            old_docs = {d.doc_id: d for cond in in_list(s, Document.doc_id, touched)
                        for d in s.scalars(select(Document).where(Document.corpus_id == row.id, cond))}
            old_ids = [i for cond in in_list(s, Passage.document_id, [d.id for d in old_docs.values()])
                       for i in s.scalars(select(Passage.id).where(cond))]
            for cond in in_list(s, Passage.id, old_ids):
                s.execute(delete(Passage).where(cond))
            for doc_id in deleted:
                s.delete(old_docs[doc_id])
            new_passages: list[Passage] = []
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
                        text=p.text, pooled=pooled[len(new_passages)]))
            s.add_all(new_passages)
            s.flush()
            new_ids = [p.id for p in new_passages]
            row.version += 1
            row.updated_at = utcnow()
            row.pending = {"add": new_ids, "delete": old_ids}
        return new_ids, old_ids

    def recover(self, name: str) -> None:
        """Finish a change whose rows committed but whose index commit did not. The caller
        holds the corpus's writer lock."""
        c = self.corpora
        with c.sessions() as s:
            row = c.row(s, name)
            pending = row.pending
            if not pending:
                return
            encoder = c.encoder_for(row.encoder, row.encoder_fingerprint)
            index_dir = row.index_dir
            passages = {p.id: p for cond in in_list(s, Passage.id, pending["add"])
                        for p in s.scalars(select(Passage).where(cond))}
            docs = {d.id: d for cond in in_list(s, Document.id,
                                                {p.document_id for p in passages.values()})
                    for d in s.scalars(select(Document).where(cond))}
        add_ids = [i for i in pending["add"] if i in passages]
        texts = [passage_text(
            DocumentInput(docs[passages[i].document_id].doc_id, "", docs[passages[i].document_id].path),
            passages[i].text) for i in add_ids]
        vectors = encoder.encode_documents(texts)
        commit_documents(c.index(name, index_dir), np.array(add_ids, np.int64), vectors,
                         np.array(pending["delete"], np.int64),
                         [docs[passages[i].document_id].doc_id for i in add_ids])
        with c.sessions.begin() as s:
            c.row(s, name).pending = None

    def recover_all(self) -> list[str]:
        """Finish interrupted changes of every corpus (called at start-up)."""
        c = self.corpora
        with c.sessions() as s:
            names = list(s.scalars(select(Corpus.name).where(Corpus.pending.is_not(None))))
        for name in names:
            with c.write_lock(name):
                self.recover(name)
        return names
