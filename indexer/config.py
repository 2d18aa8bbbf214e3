"""The library's ``MEMEX_*`` settings (docs/configuration.md), read in one place.

``indexer`` cannot import ``service``, so the variables the library itself
needs live here and ``service.settings.Settings`` extends this class with the
server's. ``current()`` reads the environment on every call, not once per
process: the encoder is loaded long after start-up and tests change the
variables in between.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LibrarySettings(BaseSettings):
    # An empty variable means unset, as ``os.environ.get(...) or default`` did.
    model_config = SettingsConfigDict(env_prefix="MEMEX_", extra="ignore", env_ignore_empty=True)

    home: Path = Field(default=Path.home() / ".memex", description="data directory")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in home")
    model_cache: Path | None = Field(default=None, description="model packages and conversions; "
                                                               "default <home>/models")
    encoder_runtime: str = Field(default="auto", description="auto, torch or onnx")
    encoder_precision: str | None = Field(default=None, description="fp32, int8, fp16, bf16; "
                                                                     "default the best available")
    encoder_quantize: bool = Field(default=True, description="int8 allowed on CPU")
    encoder_guard: bool = Field(default=True, description="check an export against fp32 first")
    encoder_int8_recipe: str | None = Field(
        default=None, description="int8 recipe: which FFN down-projections stay fp32 or are smoothed")
    encoder_threads: int | None = Field(default=None, ge=1, description="ONNX intra-op threads")
    kernel_cache: Path | None = Field(default=None, description="the kernel probe's verdicts; "
                                                               "default <model cache>/kernels.json")
    force_kernel: str = Field(default="", description="name=choice,... skips the kernel probe")
    # Scale-out (docs/scale-out.md); nothing imports Ray while ray_address is unset.
    ray_address: str | None = Field(default=None, description="Ray cluster: syncs encode on it, "
                                                              "sharded corpora search on it")
    ray_encode_actors: int | None = Field(default=None, ge=1, description="encoder actors; default "
                                          "one per GPU, else one per ray_actor_cpus of the cluster")
    ray_actor_cpus: float = Field(default=1.0, gt=0,
                                  description="CPUs (threads) per encoder actor and per Ray training task")
    ray_shard_cpus: float = Field(default=1.0, ge=0, description="CPUs reserved per shard actor")
    ray_timeout_s: float = Field(default=30.0, gt=0, description="a shard silent this long: 503")
    index_shards: int = Field(default=1, ge=1, le=64, description="new corpora: shards by document")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'memex.db'}"

    @property
    def models_dir(self) -> Path:
        return self.model_cache or self.home / "models"


def current() -> LibrarySettings:
    """The settings as the environment says now."""
    return LibrarySettings()
