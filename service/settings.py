"""Settings from ``MEMEX_*`` environment variables (documented in docs/configuration.md)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from indexer.config import LibrarySettings
from indexer.models import DEFAULT_ENCODER


class Settings(LibrarySettings):
    """The server's and the CLI's settings, over the library's (home, database, encoder runtime)."""

    encoder: str = DEFAULT_ENCODER
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
    api_key: str | None = Field(default=None, description="the CLI's key for --server")
    ray_train_gpus: float | None = Field(default=None, ge=0, description="GPUs a training job's "
                                         "Ray task requests; default 1 when the cluster has GPUs, "
                                         "else 0 (docs/scale-out.md)")

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _split_roots(cls, value):
        if isinstance(value, str):
            return [Path(p.strip()) for p in value.split(",") if p.strip()] or None
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value):
        if isinstance(value, str):
            return [h.strip() for h in value.split(",") if h.strip()]
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()

