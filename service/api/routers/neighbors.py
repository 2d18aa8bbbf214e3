"""RETRO chunk neighbours of a text or token ids (/v1/corpora/{name}/neighbors)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from indexer.retro import MAX_NEIGHBORS_K
from indexer.retro.sync import ChunkDBs
from service.api.deps import CorporaDep, JobsDep
from service.api.schemas import JobPublic

router = APIRouter(tags=["neighbors"])


def get_chunkdbs(request: Request) -> ChunkDBs:
    """The app's chunk DB cache, made on first use (it loads nothing until asked)."""
    state = request.app.state
    if getattr(state, "chunkdbs", None) is None:
        state.chunkdbs = ChunkDBs(state.corpora)
    return cast(ChunkDBs, state.chunkdbs)


ChunkDBsDep = Annotated[ChunkDBs, Depends(get_chunkdbs)]


class NeighborsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Upper bounds on what is tokenized; the real bound is chunks x k <= MAX_QUERY_ROWS.
    text: str | None = Field(default=None, max_length=200_000)
    token_ids: list[int] | None = Field(default=None, max_length=65_536)
    k: int = Field(default=2, ge=1, le=MAX_NEIGHBORS_K)
    chunk_tokens: int | None = Field(default=None, description="must equal the chunk DB's")
    continuation: bool = Field(default=True, description="append each neighbour's next chunk")
    exclude_document_ids: list[str] = Field(default_factory=list, max_length=10_000)
    exclude_same_document: str | None = Field(
        default=None, description="id of the document the input comes from: never return it")


class NeighborPublic(BaseModel):
    chunk_id: int
    document_id: str
    path: str | None
    distance: float
    tokens: list[int]
    mask: list[bool]
    text: str


class ChunkResult(BaseModel):
    chunk: int
    tokens: list[int]
    neighbors: list[NeighborPublic]


class NeighborsResponse(BaseModel):
    corpus: str
    chunk_tokens: int
    pad_id: int
    chunks: list[ChunkResult]


@router.post("/v1/corpora/{name}/neighbors", response_model=NeighborsResponse)
def neighbors(name: str, params: NeighborsParams, dbs: ChunkDBsDep) -> NeighborsResponse:
    """For every ``chunk_tokens`` chunk of the input, its ``k`` nearest corpus chunks, each
    with its continuation (2 x chunk_tokens ids, padded, with a mask), nearest first.
    At most 4,096 (input chunks x k) per request."""
    db = dbs.get(name)
    found = db.neighbors(**params.model_dump())
    return NeighborsResponse(
        corpus=name, chunk_tokens=db.config.chunk_tokens, pad_id=db.meta["pad_id"],
        chunks=[ChunkResult(chunk=i, tokens=r.tokens,
                            neighbors=[NeighborPublic(**asdict(n)) for n in r.neighbors])
                for i, r in enumerate(found)])


@router.post("/v1/corpora/{name}/chunkdb", response_model=JobPublic, status_code=202)
def build_chunkdb(name: str, corpora: CorporaDep, jobs: JobsDep) -> JobPublic:
    """Build (or repair) the corpus's RETRO chunk DB as a job; later changes keep it fresh."""
    corpora.info(name)  # 404 before queueing anything
    return JobPublic.model_validate(jobs.submit("retro_build", {"corpus": name}, corpus=name))
