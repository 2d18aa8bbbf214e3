"""Request body limit, for bodies with a Content-Length and for chunked ones.

The body is read here, counted as it arrives and refused with 413 as soon as it
passes the limit, so a chunked upload without Content-Length cannot make the
server buffer more than ``max_bytes``. The accepted body is kept in
``scope["memex.body"]`` (the auth layer reads corpus names from it) and
replayed to the application.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import errors

BODY_KEY = "memex.body"


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> JSONResponse:
        return errors.problem(413, "PAYLOAD_TOO_LARGE",
                              f"request bodies are limited to {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._too_large()(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._too_large()(scope, receive, send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        scope[BODY_KEY] = body
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def compute_class(path: str) -> str | None:
    """Which gate a request waits at: its work is CPU-bound and sized by the request.

    >>> [compute_class(p) for p in ("/v1/search", "/v1/corpora/a/search",
    ...  "/v1/corpora/a/neighbors", "/v1/chat/completions", "/v1/corpora/a/documents")]
    ['search', 'search', 'neighbors', 'chat', None]
    """
    if path.endswith("/search"):
        return "search"
    if path.endswith("/neighbors"):
        return "neighbors"
    if path == "/v1/chat/completions":
        return "chat"
    return None


class ComputeGate:
    """At most ``limits[kind]`` requests of each kind compute at once; the rest wait here,
    in the event loop, and beyond ``max_waiting`` of a kind the server answers 503.

    Searches, neighbour look-ups and chat completions are CPU-bound (each encoder or LM
    call is itself multi-threaded). Letting every request into the thread pool
    oversubscribes the cores and throughput falls as concurrency rises; queueing keeps
    it at saturation, and the bound on the queue keeps a flood from holding memory.
    A streamed chat holds its slot until its last token.
    """

    def __init__(self, app: ASGIApp, limits: dict[str, int], max_waiting: int) -> None:
        self.app = app
        self.limits = limits
        self.max_waiting = max_waiting
        self._semaphores: dict[str, Any] = {}  # made lazily: they must belong to the server's event loop
        self._waiting = dict.fromkeys(limits, 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = compute_class(scope["path"]) if scope["type"] == "http" else None
        if kind is None:
            return await self.app(scope, receive, send)
        if kind not in self._semaphores:
            import asyncio

            self._semaphores[kind] = asyncio.Semaphore(self.limits[kind])
        semaphore = self._semaphores[kind]
        if semaphore.locked() and self._waiting[kind] >= self.max_waiting:
            response = errors.problem(503, "BUSY", f"too many {kind} requests waiting "
                                      f"({self.max_waiting}); retry shortly", {"retry_after": 1})
            response.headers["Retry-After"] = "1"
            return await response(scope, receive, send)
        self._waiting[kind] += 1
        try:
            await semaphore.acquire()
        finally:
            self._waiting[kind] -= 1
        try:
            await self.app(scope, receive, send)
        finally:
            semaphore.release()
