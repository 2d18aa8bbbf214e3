"""What goes into and comes out of ``Corpora``: documents, hits, change reports, corpus info."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from indexer.encoding.encoder import ColBERTEncoder


@dataclass(frozen=True)
class DocumentInput:
    doc_id: str
    text: str
    path: str | None = None
    metadata: dict[str, Any] | None = None


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


class EncodePool(Protocol):
    """Encodes a sync's passages somewhere else (a Ray actor pool,
    ``indexer/distributed/encode_pool.RayEncodePool``): what
    ``encoder.encode_documents_and_pooled`` would return, in order."""

    def encode_documents_and_pooled(
            self, encoder: ColBERTEncoder, encoder_name: str, texts: list[str],
            progress: Callable[[int], None] | None = None,
            dtype: type = np.float32) -> tuple[list[np.ndarray], np.ndarray]: ...
