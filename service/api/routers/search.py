"""Search one corpus (/v1/corpora/{name}/search) or several at once (/v1/search)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from indexer.corpus import Corpora
from indexer.packing import encoder_tokens, pack
from service.api.deps import CorporaDep
from service.api.schemas import (
    Hit,
    MultiSearchParams,
    PackedQueryResult,
    PackedSearchResponse,
    QueryResult,
    SearchParams,
    SearchResponse,
)

router = APIRouter(tags=["search"])
Answer = SearchResponse | PackedSearchResponse


def _search(corpora: Corpora, names: list[str], params: SearchParams) -> Answer:
    queries = params.all_queries()
    found = corpora.search(names, queries, params.k, params.path_glob, params.mode,
                           nprobe=params.nprobe, candidates=params.candidates,
                           decompress=params.decompress)
    if params.max_tokens is None:
        return SearchResponse(results=[
            QueryResult(query=q, hits=[Hit(**asdict(h)) for h in hits])
            for q, hits in zip(queries, found)])
    count, tokenizer = encoder_tokens(corpora.encoder, corpora.encoder_name)
    return PackedSearchResponse(results=[
        PackedQueryResult(query=q, **pack(hits, params.max_tokens, count).answer(tokenizer))
        for q, hits in zip(queries, found)])


@router.post("/v1/corpora/{name}/search", response_model=Answer)
def search_corpus(name: str, params: SearchParams, corpora: CorporaDep) -> Answer:
    """``query`` or a batch of ``queries``; each result lists ``k`` hits, best first (with
    ``max_tokens``: merged spans packed into that many tokens, best first)."""
    return _search(corpora, [name], params)


@router.post("/v1/search", response_model=Answer)
def search_many(params: MultiSearchParams, corpora: CorporaDep) -> Answer:
    """Search several corpora at once; scores are comparable across corpora of one encoder."""
    return _search(corpora, list(dict.fromkeys(params.corpora)), params)
