"""Metadata in SQL through SQLAlchemy: SQLite by default, Postgres for deployments.

Vectors live in index files; the database holds what an agent reads back
(paths, line spans, passage text) and the corpus version. ``Corpus.pending``
is a redo record: a sync commits its rows and the list of index changes first,
then applies them to the index; a crash in between is finished on next open.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    any_,
    bindparam,
    create_engine,
    event,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from indexer.bm25 import DEFAULT_BM25_WEIGHT


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator):
    """Timezone-aware on every backend: SQLite drops the zone, so naive values are UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class Corpus(Base):
    __tablename__ = "corpora"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "directory" | "documents"
    root: Mapped[str | None] = mapped_column(Text, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    encoder: Mapped[str] = mapped_column(String(512))
    encoder_fingerprint: Mapped[str] = mapped_column(String(64))
    # Index directory under the corpus dir; a re-index with a new encoder switches it
    # together with encoder and encoder_fingerprint in one transaction (indexer/reindex.py).
    index_dir: Mapped[str] = mapped_column(String(64), default="index")
    # Hybrid search: BM25's share of the fused z-scores (indexer/bm25.py); calibrated by
    # post-training, DEFAULT_BM25_WEIGHT until then.
    bm25_weight: Mapped[float] = mapped_column(Float, default=DEFAULT_BM25_WEIGHT)
    pending: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (Index("ix_documents_corpus_doc", "corpus_id", "doc_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id", ondelete="CASCADE"))
    doc_id: Mapped[str] = mapped_column(String(1024))
    path: Mapped[str | None] = mapped_column(Text, nullable=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    n_chars: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)  # kept for cartridges, RETRO and re-encoding
    metadata_: Mapped[dict | None] = mapped_column("metadata", JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Passage(Base):
    __tablename__ = "passages"
    __table_args__ = (
        Index("ix_passages_document", "document_id"),
        Index("ix_passages_corpus", "corpus_id"),
        {"sqlite_autoincrement": True},  # ids are never reused, even after deletes
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id", ondelete="CASCADE"))
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    start_line: Mapped[int] = mapped_column(Integer)
    end_line: Mapped[int] = mapped_column(Integer)
    start_char: Mapped[int] = mapped_column(Integer)
    end_char: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    # The encoder's pooled vector as sign bits (indexer/pooled.py); NULL for passages
    # written before it existed, which hybrid search then fuses without it.
    pooled: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    corpus: Mapped[str | None] = mapped_column(String(128), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # queued|running|succeeded|failed|cancelled
    stage: Mapped[str] = mapped_column(String(64), default="")
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


# Bound parameters per statement on SQLite (its limit is 32,766 since 3.32, 999 before).
SQLITE_BATCH = 900


def in_list(session: Session, column, values: Iterable) -> Iterator[ColumnElement]:
    """Conditions that together say ``column IN values``; run the statement once per condition.

    ``IN (...)`` binds one parameter per value and a statement may carry at most
    65,535 (psycopg) or 32,766 (SQLite): a first sync of 70,000 files would fail.
    Postgres gets the whole list as one array parameter (``= ANY(:values)``);
    SQLite gets batches of ``SQLITE_BATCH``. No condition at all for an empty list.
    """
    values = list(values)
    if not values:
        return
    if session.get_bind().dialect.name == "postgresql":
        yield column == any_(bindparam(None, values, type_=ARRAY(column.type)))
        return
    for start in range(0, len(values), SQLITE_BATCH):
        yield column.in_(values[start:start + SQLITE_BATCH])
class ApiKey(Base):
    """A hashed API key with its role and corpus scope (service/api/keys.py verifies them)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    corpora: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


def make_engine(url: str) -> Engine:
    """Create the engine and migrate the schema to the newest revision; SQLite gets WAL."""
    is_sqlite = url.startswith("sqlite")
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30} if is_sqlite else {},
        pool_pre_ping=not is_sqlite,
    )
    if is_sqlite:

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

    from indexer.migrations import upgrade

    upgrade(engine)
    # Tables of models that have no migration yet (a test flags the drift; add a revision).
    Base.metadata.create_all(engine)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
