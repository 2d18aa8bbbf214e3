"""Connecting to a Ray cluster, once per process, with the library's settings forwarded.

Workers run memex's own code (installed on every node, as the driver's) and read the same
``MEMEX_*`` settings the driver was started with (model cache, encoder runtime), so an
actor loads the encoder the driver would: they travel in the job's ``runtime_env``.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from indexer.config import LibrarySettings
from indexer.errors import InvalidInput, Unavailable

NAMESPACE = "memex"
_lock = threading.Lock()
_connected: str | None = None


def ray_module() -> Any:
    """``ray``, or a clear error when the extra is not installed."""
    try:
        import ray
    except ImportError:
        raise InvalidInput("a Ray address is set but Ray is not installed: "
                           "pip install 'memex[ray]'") from None
    return ray


def forwarded_env(settings: LibrarySettings) -> dict[str, str]:
    """The ``MEMEX_*`` variables this process was configured with, for the workers."""
    return {f"MEMEX_{key.upper()}": str(value)
            for key, value in settings.model_dump(exclude_unset=True).items()
            if value is not None and key in LibrarySettings.model_fields and key != "ray_address"}


def connect(address: str, settings: LibrarySettings) -> Any:
    """``ray`` connected to ``address`` (``host:port`` of the head, or ``ray://host:10001``).
    A process talks to one cluster: a second, different address is an error."""
    global _connected
    ray = ray_module()
    with _lock:
        if _connected is None or not ray.is_initialized():
            _probe(address)
            try:
                ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                         runtime_env={"env_vars": forwarded_env(settings)})
            except (ConnectionError, RuntimeError, TimeoutError) as exc:
                raise Unavailable(f"cannot reach the Ray cluster at {address!r}: {exc}",
                                  retry_after_s=10) from None
            _connected = address
        elif _connected != address:
            raise InvalidInput(f"this process is connected to Ray at {_connected!r}, "
                               f"not {address!r}")
    return ray


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes: ``ray.init`` retries an unreachable head for a long time."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise Unavailable(f"cannot reach the Ray cluster at {address!r}: {exc}",
                          retry_after_s=10) from None


def disconnect() -> None:
    """Leave the cluster (tests and benchmarks that start one of their own)."""
    global _connected
    with _lock:
        if _connected is not None:
            ray_module().shutdown()
            _connected = None
