"""A sync's encode stage on a pool of Ray actors, each holding the encoder once.

The texts are cut in the order the local encoder would batch them (longest first) into
chunks of whole tokenizer windows, so each actor forms exactly the batches a local
encode forms: on the same hardware and runtime the vectors are bit-identical to a local
sync's (padding and int8 activation scales depend on the batch). Chunks go to the actors
as they free up; results come back in input order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from indexer.config import LibrarySettings
from indexer.distributed.cluster import connect
from indexer.encoding.encoder import ColBERTEncoder
from indexer.encoding.pipeline import WINDOW_BATCHES
from indexer.errors import ModelError

CPU_BATCH = 32  # ColBERTEncoder.encode_documents's CPU batch size
MAX_CHUNK = 4096  # passages per actor call: few calls, yet a progress bar that moves


class EncoderWorker:
    """The actor: loads the encoder named by the corpus once, checks it is the same one."""

    def __init__(self, encoder_name: str, fingerprint: str, device: str) -> None:
        self.encoder = ColBERTEncoder.load(encoder_name, device=device)
        if self.encoder.fingerprint != fingerprint:
            raise ModelError(f"encoder {encoder_name!r} on this node has fingerprint "
                             f"{self.encoder.fingerprint}, the driver's {fingerprint}: "
                             "nodes must share one model cache")

    def encode(self, texts: list[str], dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All vectors stacked (one array pickles and ships faster than thousands), the
        token count of each text and the texts' pooled vectors."""
        vectors, pooled = self.encoder.encode_documents_and_pooled(texts, dtype=np.dtype(dtype).type)
        lengths = np.array([len(v) for v in vectors], dtype=np.int64)
        dim = self.encoder.dim
        return (np.concatenate(vectors) if vectors else np.empty((0, dim), dtype)), lengths, pooled


def chunk_bounds(n: int, actors: int, window: int = CPU_BATCH * WINDOW_BATCHES) -> list[tuple[int, int]]:
    """``[start, end)`` of the chunks: whole windows, about four per actor, at most MAX_CHUNK.

    >>> chunk_bounds(1000, 2)
    [(0, 128), (128, 256), (256, 384), (384, 512), (512, 640), (640, 768), (768, 896), (896, 1000)]
    >>> chunk_bounds(0, 3)
    []
    """
    size = math.ceil(n / (4 * actors) / window) * window
    size = max(window, min(size, MAX_CHUNK // window * window))
    return [(start, min(start + size, n)) for start in range(0, n, size)]


class RayEncodePool:
    """``encode_documents(encoder, texts, ...)`` on a Ray cluster; actors per encoder, kept."""

    def __init__(self, address: str, settings: LibrarySettings) -> None:
        self.address, self.settings = address, settings
        self._pools: dict[str, list[Any]] = {}  # by encoder fingerprint

    def _actors(self, encoder_name: str, fingerprint: str) -> list[Any]:
        if fingerprint in self._pools:
            return self._pools[fingerprint]
        ray = connect(self.address, self.settings)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = self.settings.ray_actor_cpus
        count = self.settings.ray_encode_actors or gpus or max(
            1, int(ray.cluster_resources().get("CPU", 1) // cpus))
        options: dict[str, Any] = {
            "num_cpus": cpus, "num_gpus": 1 if gpus else 0,
            "max_restarts": -1, "max_task_retries": 2,  # an encode call is idempotent
            "runtime_env": {"env_vars": {"MEMEX_ENCODER_THREADS": str(max(1, int(cpus))),
                                         "OMP_NUM_THREADS": str(max(1, int(cpus)))}},
        }
        remote = ray.remote(EncoderWorker).options(**options)
        actors = [remote.remote(encoder_name, fingerprint, "cuda" if gpus else "cpu")
                  for _ in range(count)]
        self._pools[fingerprint] = actors
        return actors

    def close(self) -> None:
        """End the actors (they hold their CPUs or GPUs until then)."""
        if self._pools:
            ray = connect(self.address, self.settings)
            for actors in self._pools.values():
                for actor in actors:
                    ray.kill(actor)
            self._pools.clear()

    def encode_documents_and_pooled(
            self, encoder: ColBERTEncoder, encoder_name: str, texts: list[str],
            progress: Callable[[int], None] | None = None,
            dtype: type = np.float32) -> tuple[list[np.ndarray], np.ndarray]:
        """What ``encoder.encode_documents_and_pooled(texts, ...)`` returns, computed by
        the actors."""
        from ray.util import ActorPool

        actors = self._actors(encoder_name, encoder.fingerprint)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        bounds = chunk_bounds(len(texts), len(actors))
        out: list[np.ndarray | None] = [None] * len(texts)
        pooled_out = np.zeros((len(texts), encoder.model.config.hidden_size), np.float32)
        calls = ActorPool(actors).map(
            lambda actor, b: actor.encode.remote([texts[i] for i in order[b[0]:b[1]]],
                                                 np.dtype(dtype).str), bounds)
        for (start, end), (stacked, lengths, pooled) in zip(bounds, calls):
            stacked = np.array(stacked)  # out of the object store (its buffer is read-only)
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            for j, i in enumerate(order[start:end]):
                out[i] = stacked[offsets[j]:offsets[j + 1]]
            pooled_out[order[start:end]] = pooled
            if progress:
                progress(end - start)
        return out, pooled_out  # type: ignore[return-value]


def encode_pool(settings: LibrarySettings, address: str | None = None) -> RayEncodePool | None:
    """The pool for ``address`` (default ``MEMEX_RAY_ADDRESS``); None when neither is set, and
    then Ray is not imported."""
    address = address or settings.ray_address
    return RayEncodePool(address, settings) if address else None
