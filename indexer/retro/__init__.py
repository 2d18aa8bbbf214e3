"""RETRO-style chunk neighbours: a per-corpus chunk DB of token chunks and their encoder keys."""

from indexer.retro.chunkdb import ChunkDB
from indexer.retro.records import MAX_NEIGHBORS_K, ChunkDBConfig, ChunkNeighbors, Neighbor

__all__ = ["MAX_NEIGHBORS_K", "ChunkDB", "ChunkDBConfig", "ChunkNeighbors", "Neighbor"]
