"""Typed errors of the indexer; ``service/api/errors.py`` alone maps them to HTTP.

    MemexError
    ├── NotFound            (unknown corpus, document, passage)
    ├── InvalidInput        (bad query, bad path, bad parameter)
    ├── Conflict            (name taken, job already running)
    ├── Busy                (at capacity: too many queued jobs; retry later)
    ├── ModelError          (weights missing or unusable)
    ├── IndexCorrupt        (a file of an index fails its checks)
    └── Unavailable         (a shard of a sharded corpus is down or restarting; retry later)
"""

from __future__ import annotations


class MemexError(Exception):
    """Base of every error memex raises on purpose; ``code`` is stable for clients."""

    code = "MEMEX_ERROR"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(MemexError):
    code = "NOT_FOUND"


class InvalidInput(MemexError):
    code = "INVALID_INPUT"


class Conflict(MemexError):
    code = "CONFLICT"


class Busy(MemexError):
    code = "BUSY"


class ModelError(MemexError):
    code = "MODEL_ERROR"


class IndexCorrupt(MemexError):
    code = "INDEX_CORRUPT"


class Unavailable(MemexError):
    code = "UNAVAILABLE"
