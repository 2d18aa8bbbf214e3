"""What goes into and comes out of ``Corpora``: documents, hits, change reports, corpus info."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
