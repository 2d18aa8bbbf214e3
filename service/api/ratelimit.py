"""Per-key token buckets: ``per_minute`` sustained, ``burst`` at once.

In-process: with N server workers a key gets up to N times the rate (documented
in docs/operations.md); a shared limiter would cost a database write per request.

>>> clock = [0.0]
>>> limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: clock[0])
>>> [limiter.acquire("k") for _ in range(3)]
[0.0, 0.0, 1.0]
>>> clock[0] = 1.0
>>> limiter.acquire("k")
0.0
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, per_minute: int, burst: int,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                if len(self._buckets) >= self.max_keys and key not in self._buckets:
                    self._buckets.clear()  # bound memory against many distinct clients
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
