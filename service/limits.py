"""Request body limit, for bodies with a Content-Length and for chunked ones.

The body is read here, counted as it arrives and refused with 413 as soon as it
passes the limit, so a chunked upload without Content-Length cannot make the
server buffer more than ``max_bytes``. The accepted body is kept in
``scope["memex.body"]`` (the auth layer reads corpus names from it) and
replayed to the application.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import errors

BODY_KEY = "memex.body"


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self):  # noqa: ANN202
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


class SearchGate:
    """At most ``limit`` searches compute at once; the rest wait here, in the event loop.

    Searches are CPU-bound (query encoding, MaxSim). Letting every request into the
    thread pool oversubscribes the cores (each encoder call is itself multi-threaded)
    and throughput falls as concurrency rises; queueing keeps it at saturation.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._semaphore = None  # made lazily: it must belong to the server's event loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/search"):
            return await self.app(scope, receive, send)
        if self._semaphore is None:
            import asyncio

            self._semaphore = asyncio.Semaphore(self.limit)
        async with self._semaphore:
            await self.app(scope, receive, send)
