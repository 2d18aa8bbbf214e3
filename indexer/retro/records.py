"""What a chunk DB is made with and answers: its config, neighbours, and the cached models."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from indexer.retro.embed import DEFAULT_KEY_ENCODER, ChunkEncoder
from indexer.retro.token_chunks import DEFAULT_TOKENIZER, load_tokenizer

MAX_NEIGHBORS_K = 64  # neighbours per input chunk a request may ask for


@dataclass(frozen=True)
class ChunkDBConfig:
    """Fixed when a chunk DB is created (changing any of them means a new DB)."""

    tokenizer: str = DEFAULT_TOKENIZER  # "bundled:smollm2" or a local HF tokenizer dir
    encoder: str = DEFAULT_KEY_ENCODER  # frozen BERT-like encoder for the keys
    chunk_tokens: int = 64
    factory: str | None = None  # faiss factory string; None: "Flat" up to 100k chunks, else IVF-PQ
    nprobe: int = 8  # IVF lists visited per query (HNSW: efSearch = rerank)
    rerank: int = 128  # faiss candidates per query re-ranked on the exact keys


@dataclass(frozen=True)
class Neighbor:
    chunk_id: int  # stable while its document is unchanged
    document_id: str
    path: str | None
    distance: float  # squared L2 between unit keys, 2 - 2 cos
    tokens: list[int]  # chunk then continuation: 2 * chunk_tokens ids (chunk_tokens without)
    mask: list[bool]  # True on real tokens, False on padding
    text: str  # the real tokens decoded


@dataclass(frozen=True)
class ChunkNeighbors:
    """The neighbours of one input chunk."""

    tokens: list[int]  # the input chunk's ids (the last chunk may be shorter)
    neighbors: list[Neighbor]


@lru_cache(maxsize=4)
def cached_tokenizer(name: str):
    """The chunk tokenizer ``name``, loaded once per process."""
    return load_tokenizer(name)


@lru_cache(maxsize=4)
def cached_encoder(name: str, device: str):
    """The key encoder ``name`` on ``device``, loaded once per process."""
    return ChunkEncoder(name, device=device)
