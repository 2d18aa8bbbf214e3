"""Settings from ``MEMEX_*`` environment variables (documented in docs/configuration.md)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEMEX_", extra="ignore")

    home: Path = Field(default=Path.home() / ".memex", description="data directory")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in home")
    encoder: str = "bundled:minilm"
    allowed_roots: Annotated[list[Path] | None, NoDecode] = Field(
        default=None, description="comma-separated directories an API-created corpus may "
        "index; unset = the user's home, hidden directories (~/.ssh, ...) excluded"
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated Host names a loopback-only server "
        "answers besides localhost, 127.0.0.1 and [::1]")
    max_file_bytes: int = 2_000_000
    index_engine: str = Field(default="plaid", description="plaid (compressed) or exact")
    index_nbits: int = Field(default=2, description="PLAID residual bits per dimension: 1, 2, 4")
    max_request_bytes: int = 32 * 1024 * 1024
    host: str = "127.0.0.1"
    port: int = 8765
    run_jobs: bool = True  # run background jobs in the server process
    # Production knobs (docs/operations.md).
    rate_limit_per_minute: int = Field(default=1200, ge=0, description="per API key; 0 = off")
    rate_limit_burst: int = Field(default=100, ge=1)
    max_concurrent_searches: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1,
                                         description="searches computing at once; more queue")
    max_concurrent_neighbors: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1)
    max_concurrent_chats: int = Field(default=1, ge=1, description="LM generations at once")
    max_waiting_requests: int = Field(default=256, ge=1, description="per kind (search, "
                                      "neighbors, chat) waiting for a slot; more get 503")
    max_chat_tokens: int = Field(default=1024, ge=1, le=4096,
                                 description="largest max_tokens a chat request may ask for")
    max_active_jobs_per_corpus: int = Field(default=16, ge=1,
                                            description="queued + running jobs; more get 429")
    job_max_failures: int = Field(default=20, ge=1, description="database errors in a row "
                                  "after which the job runner gives up (backing off to 30 s)")
    log_json: bool = True
    log_level: str = "INFO"
    workers: int = Field(default=1, ge=1, le=64)

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _split_roots(cls, value):  # noqa: ANN001
        if isinstance(value, str):
            return [Path(p.strip()) for p in value.split(",") if p.strip()] or None
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value):  # noqa: ANN001
        if isinstance(value, str):
            return [h.strip() for h in value.split(",") if h.strip()]
        return value

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'memex.db'}"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def open_corpora(settings: Settings, api: bool = False):  # noqa: ANN201 - lazy indexer import
    """The ``Corpora`` of a data directory, as the server, the worker and the CLI open it.

    ``api``: for the server and the worker, which index directories that API callers
    name: without ``MEMEX_ALLOWED_ROOTS`` they may index the user's home but no hidden
    directory in it (``~/.ssh``, ``~/.aws``). The CLI indexes what its user types.
    """
    from indexer.corpus import Corpora

    roots, hidden_ok = settings.allowed_roots, True
    if roots is None and api:
        roots, hidden_ok = [Path.home()], False
    return Corpora(settings.home, settings.db_url, settings.encoder, roots,
                   settings.max_file_bytes, index_engine=settings.index_engine,
                   index_nbits=settings.index_nbits, hidden_roots=hidden_ok)
