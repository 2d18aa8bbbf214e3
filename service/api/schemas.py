"""Request and response bodies of the REST API (see docs/api.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from indexer.corpus import MAX_SEARCH_K


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DocumentIn(Strict):
    id: str = Field(min_length=1, max_length=1024)
    text: str = Field(min_length=1)
    path: str | None = Field(default=None, max_length=4096)
    metadata: dict[str, Any] | None = None


class CorpusCreate(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    directory: str | None = Field(default=None, description="index this directory (a sync job)")
    documents: list[DocumentIn] | None = Field(default=None, max_length=10_000)
    watch: bool = Field(default=False, description="re-sync the directory whenever its files "
                        "change (debounced; a sync job per burst)")

    @model_validator(mode="after")
    def _one_source(self) -> CorpusCreate:
        if self.directory is not None and self.documents is not None:
            raise ValueError("give either directory or documents, not both")
        if self.watch and self.directory is None:
            raise ValueError("watch needs a directory")
        return self


class CorpusPublic(BaseModel):
    name: str
    kind: str
    root: str | None
    version: int
    encoder: str
    encoder_fingerprint: str
    documents: int
    passages: int
    bytes_on_disk: int
    bm25_weight: float = Field(description="BM25's share in hybrid search (calibrated by "
                               "post-training)")
    created_at: str
    updated_at: str


class CorpusCreated(CorpusPublic):
    job_id: str | None = None


class CorpusList(BaseModel):
    count: int
    corpora: list[CorpusPublic]


class DocumentsPut(Strict):
    documents: list[DocumentIn] = Field(min_length=1, max_length=10_000)


class DocumentPut(Strict):
    text: str = Field(min_length=1)
    path: str | None = Field(default=None, max_length=4096)
    metadata: dict[str, Any] | None = None


class DocumentSummary(BaseModel):
    id: str
    path: str | None
    content_hash: str
    chars: int
    metadata: dict[str, Any] | None
    updated_at: datetime


class DocumentList(BaseModel):
    count: int
    documents: list[DocumentSummary]


class PassagePublic(BaseModel):
    passage_id: int
    start_line: int
    end_line: int
    text: str


class DocumentPublic(DocumentSummary):
    text: str
    passages: list[PassagePublic]


class ChangeResult(BaseModel):
    version: int
    added: list[str]
    updated: list[str]
    deleted: list[str]
    unchanged: int
    skipped: dict[str, str]
    passages_added: int
    passages_deleted: int
    seconds: float


class SearchParams(Strict):
    query: str | None = Field(default=None, max_length=4096)
    queries: list[str] | None = Field(default=None, min_length=1, max_length=256)
    k: int = Field(default=10, ge=1, le=MAX_SEARCH_K)
    path_glob: str | None = Field(default=None, max_length=1024, description="fnmatch on path")
    nprobe: int | None = Field(default=None, ge=1, le=64,
                               description="PLAID: centroids probed per query token (default 4)")
    candidates: int | None = Field(default=None, ge=1, le=8192,
                                   description="PLAID: candidates per segment, scored from centroids "
                                               "(default 768)")
    decompress: int | None = Field(default=None, ge=1, le=8192,
                                   description="PLAID: candidates decompressed and scored "
                                   "exactly after centroid-only pruning (default 160)")
    mode: Literal["colbert", "bm25", "hybrid"] | None = Field(
        default=None, description="hybrid (the default: ColBERT, BM25 and, where the encoder "
        "has one, its pooled vector, fused), colbert or bm25")
    max_tokens: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="pack each query's k hits into at most this many tokens: windows of one "
        "file that overlap or touch merge into one span, best spans first; the answer then "
        "lists spans instead of hits")

    @model_validator(mode="after")
    def _queries(self) -> SearchParams:
        if (self.query is None) == (self.queries is None):
            raise ValueError("give exactly one of query or queries")
        for q in self.all_queries():
            if not q.strip():
                raise ValueError("queries must not be empty")
            if len(q) > 4096:
                raise ValueError("a query is at most 4096 characters")
        return self

    def all_queries(self) -> list[str]:
        return [self.query] if self.query is not None else list(self.queries or [])


class MultiSearchParams(SearchParams):
    corpora: list[str] = Field(min_length=1, max_length=64)


class Hit(BaseModel):
    corpus: str
    passage_id: int
    document_id: str
    path: str | None
    start_line: int
    end_line: int
    score: float
    text: str


class QueryResult(BaseModel):
    query: str
    hits: list[Hit]


class SearchResponse(BaseModel):
    results: list[QueryResult]


class Span(BaseModel):
    corpus: str
    document_id: str
    path: str | None
    start_line: int
    end_line: int
    score: float = Field(description="the best score among the hits merged into this span")
    passage_ids: list[int]
    tokens: int = Field(description="header line `path:start-end` plus text")
    text: str


class CutSpan(BaseModel):
    corpus: str
    document_id: str
    path: str | None
    start_line: int
    end_line: int
    score: float
    tokens: int


class Packing(BaseModel):
    tokenizer: str = Field(description="what counted the tokens")
    max_tokens: int
    tokens_used: int
    cut: list[CutSpan] = Field(description="spans that did not fit, best first")


class PackedQueryResult(BaseModel):
    query: str
    spans: list[Span]
    packing: Packing


class PackedSearchResponse(BaseModel):
    results: list[PackedQueryResult]


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    corpus: str | None
    status: str
    stage: str
    done: int
    total: int
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    updated_at: datetime


class JobList(BaseModel):
    count: int
    jobs: list[JobPublic]
