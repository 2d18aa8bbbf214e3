"""RETRO-style chunk neighbours: a per-corpus chunk DB of token chunks and their encoder keys."""

from indexer.retro.chunkdb import MAX_K, ChunkDB, ChunkDBConfig, ChunkNeighbors, Neighbor

__all__ = ["MAX_K", "ChunkDB", "ChunkDBConfig", "ChunkNeighbors", "Neighbor"]
