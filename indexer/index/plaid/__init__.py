"""PLAID-style compressed multi-vector engine: codec, segments, manifest, merges, search."""

from indexer.index.plaid.codec import Codec
from indexer.index.plaid.index import PlaidIndex
from indexer.index.plaid.merge import MergeAll, MergePolicy, NoMerge, TieredMerge
from indexer.index.plaid.search import PlaidSearchParams

__all__ = ["Codec", "MergeAll", "MergePolicy", "NoMerge", "PlaidIndex", "PlaidSearchParams", "TieredMerge"]
