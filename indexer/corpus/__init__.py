"""Corpora and what they take and give; ``corpora.py`` is the facade, the rest its parts."""

from indexer.corpus.changes import chunk_document, passage_text
from indexer.corpus.corpora import NAME_RE, Corpora
from indexer.corpus.records import ChangeReport, CorpusInfo, DocumentInput, SearchHit
from indexer.corpus.search import DEFAULT_MODE, MAX_SEARCH_K, SEARCH_MODES

__all__ = ["DEFAULT_MODE", "MAX_SEARCH_K", "NAME_RE", "SEARCH_MODES", "ChangeReport", "Corpora",
           "CorpusInfo", "DocumentInput", "SearchHit", "chunk_document", "passage_text"]
