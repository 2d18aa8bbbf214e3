"""Python client of the memex REST API, on httpx: ``Client`` (sync) and ``AsyncClient``.

Errors arrive as typed exceptions, one per problem+json ``code``. They subclass
both ``APIError`` and the matching library error of ``indexer.errors``, so code
written against the embedded library (``except NotFound``) works unchanged
against a server.

>>> issubclass(ERRORS["NOT_FOUND"], NotFound), ERRORS["RATE_LIMITED"].__name__
(True, 'RateLimited')
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from indexer import durable
from indexer.errors import Conflict, IndexCorrupt, InvalidInput, MemexError, ModelError, NotFound


class APIError(MemexError):
    """A problem+json answer; ``status``, ``code``, ``details`` and ``request_id`` as sent."""

    code = "HTTP_ERROR"

    def __init__(self, message: str, status: int = 0, details: dict | None = None,
                 request_id: str | None = None, headers: httpx.Headers | None = None) -> None:
        super().__init__(message, **(details or {}))
        self.status = status
        self.request_id = request_id
        self.headers = headers or httpx.Headers()


def _error(name: str, code: str, *bases: type) -> type[APIError]:
    return type(name, (APIError, *bases), {"code": code, "__module__": __name__})


NotFoundError = _error("NotFoundError", "NOT_FOUND", NotFound)
InvalidInputError = _error("InvalidInputError", "INVALID_INPUT", InvalidInput)
ConflictError = _error("ConflictError", "CONFLICT", Conflict)
ModelErrorResponse = _error("ModelErrorResponse", "MODEL_ERROR", ModelError)
IndexCorruptError = _error("IndexCorruptError", "INDEX_CORRUPT", IndexCorrupt)
ValidationError = _error("ValidationError", "VALIDATION_ERROR", InvalidInput)
PayloadTooLarge = _error("PayloadTooLarge", "PAYLOAD_TOO_LARGE", InvalidInput)
MethodNotAllowed = _error("MethodNotAllowed", "METHOD_NOT_ALLOWED")
Unauthorized = _error("Unauthorized", "UNAUTHORIZED")
Forbidden = _error("Forbidden", "FORBIDDEN")
NotReady = _error("NotReady", "NOT_READY")
ServerError = _error("ServerError", "INTERNAL")


class RateLimited(APIError):
    code = "RATE_LIMITED"

    @property
    def retry_after(self) -> float:
        return float(self.headers.get("retry-after", "1"))


ERRORS: dict[str, type[APIError]] = {cls.code: cls for cls in (
    NotFoundError, InvalidInputError, ConflictError, ModelErrorResponse, IndexCorruptError,
    ValidationError, PayloadTooLarge, MethodNotAllowed, Unauthorized, Forbidden, NotReady,
    ServerError, RateLimited)}


def raise_for_problem(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer (``None`` for 204); the typed error otherwise."""
    if response.is_success:
        return None if response.status_code == 204 or not response.content else response.json()
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = body.get("code") or ("INTERNAL" if response.status_code >= 500 else "HTTP_ERROR")
    cls = ERRORS.get(code, APIError)
    raise cls(body.get("detail") or response.reason_phrase, response.status_code,
              body.get("details") or {}, response.headers.get("x-request-id"), response.headers)


def _search_body(query: str | list[str], k: int, path_glob: str | None,
                 mode: str | None = None, max_tokens: int | None = None) -> dict:
    body: dict[str, Any] = {"k": k}
    body["queries" if isinstance(query, list) else "query"] = query
    if path_glob:
        body["path_glob"] = path_glob
    if mode:
        body["mode"] = mode
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


class _Calls:
    """The API as (method, path, json) triples; the two clients only differ in transport."""

    @staticmethod
    def calls() -> dict:
        return {
            "health": lambda: ("GET", "/healthz", None),
            "ready": lambda: ("GET", "/readyz", None),
            "list_corpora": lambda: ("GET", "/v1/corpora", None),
            "get_corpus": lambda name: ("GET", f"/v1/corpora/{name}", None),
            "create_corpus": lambda name, directory=None, documents=None: (
                "POST", "/v1/corpora", {"name": name, **({"directory": directory} if directory
                                                         else {}),
                                        **({"documents": documents} if documents else {})}),
            "delete_corpus": lambda name: ("DELETE", f"/v1/corpora/{name}", None),
            "sync": lambda name: ("POST", f"/v1/corpora/{name}/sync", None),
            "put_documents": lambda name, documents: (
                "POST", f"/v1/corpora/{name}/documents", {"documents": documents}),
            "list_documents": lambda name, offset=0, limit=100: (
                "GET", f"/v1/corpora/{name}/documents?offset={offset}&limit={limit}", None),
            "get_document": lambda name, doc_id: (
                "GET", f"/v1/corpora/{name}/documents/{quote(doc_id, safe='/')}", None),
            "delete_document": lambda name, doc_id: (
                "DELETE", f"/v1/corpora/{name}/documents/{quote(doc_id, safe='/')}", None),
            "search": lambda name, query, k=10, path_glob=None, mode=None, max_tokens=None: (
                "POST", f"/v1/corpora/{name}/search",
                _search_body(query, k, path_glob, mode, max_tokens)),
            "search_many": lambda corpora, query, k=10, path_glob=None, mode=None,
                                  max_tokens=None: (
                "POST", "/v1/search", {"corpora": corpora,
                                       **_search_body(query, k, path_glob, mode, max_tokens)}),
            "neighbors": lambda name, text, k=2, **options: (
                "POST", f"/v1/corpora/{name}/neighbors", {"text": text, "k": k, **options}),
            "build_chunkdb": lambda name: ("POST", f"/v1/corpora/{name}/chunkdb", None),
            "list_cartridges": lambda corpus=None: (
                "GET", "/v1/cartridges" + (f"?corpus={quote(corpus)}" if corpus else ""), None),
            "get_cartridge": lambda cartridge_id: (
                "GET", f"/v1/cartridges/{quote(cartridge_id)}", None),
            "train_cartridge": lambda name, **config: (
                "POST", f"/v1/corpora/{name}/cartridges", config),
            "delete_cartridge": lambda cartridge_id: (
                "DELETE", f"/v1/cartridges/{quote(cartridge_id)}", None),
            "chat": lambda messages, cartridges=(), **options: (
                "POST", "/v1/chat/completions", {"messages": messages, **options,
                                                 "cartridges": [{"id": c} for c in cartridges]}),
            "train_retriever": lambda name, **options: (
                "POST", f"/v1/corpora/{name}/retriever", options or None),
            "job": lambda job_id: ("GET", f"/v1/jobs/{job_id}", None),
            "jobs": lambda corpus=None: (
                "GET", "/v1/jobs" + (f"?corpus={quote(corpus)}" if corpus else ""), None),
            "cancel_job": lambda job_id: ("POST", f"/v1/jobs/{job_id}/cancel", None),
        }


def _headers(api_key: str | None) -> dict:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client:
    """``Client("http://127.0.0.1:8765", api_key=...)``; methods return the JSON bodies."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.http = httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=timeout,
                                 transport=transport)
        for name, build in _Calls.calls().items():
            setattr(self, name, self._bind(build))

    def _bind(self, build):
        def call(*args, **kwargs):
            method, path, body = build(*args, **kwargs)
            return raise_for_problem(self.http.request(method, path, json=body))
        return call

    def wait_for_job(self, job_id: str, timeout: float = 600, poll: float = 0.5) -> dict:
        deadline = time.monotonic() + timeout
        while (job := self.job(job_id))["status"] in ("queued", "running"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(poll)
        return job

    def pull_cartridge(self, cartridge_id: str, output: str | Path,
                       progress: Callable[[int, int | None], None] | None = None) -> int:
        """Stream a cartridge's file to ``output`` (``progress(bytes so far, total)``), verify
        the checksum it carries (``cartridges/FORMAT.md``), then move it into place; a
        damaged or cut download raises and leaves nothing at ``output``. The bytes written."""
        from cartridges.fileformat import read_cartridge

        output = Path(output)
        part = output.with_name(output.name + ".part")
        with self.http.stream("GET", f"/v1/cartridges/{quote(cartridge_id)}/file") as response:
            if not response.is_success:
                response.read()
                raise_for_problem(response)
            total = int(response.headers.get("content-length", 0)) or None
            done = 0
            with open(part, "wb") as f:
                for block in response.iter_bytes(1 << 20):
                    f.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
        durable.fsync_file(part)
        try:
            if total is not None and done != total:
                raise MemexError(f"download ended after {done} of {total} bytes")
            read_cartridge(part)  # format, shapes and the SHA-256 checksum in its header
        except MemexError:
            part.unlink(missing_ok=True)
            raise
        durable.replace(part, output)
        return done

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient:
    """The same methods as ``Client``, awaitable."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 limits: httpx.Limits | None = None) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, headers=_headers(api_key),
                                      timeout=timeout, transport=transport,
                                      limits=limits or httpx.Limits())
        for name, build in _Calls.calls().items():
            setattr(self, name, self._bind(build))

    def _bind(self, build):
        async def call(*args, **kwargs):
            method, path, body = build(*args, **kwargs)
            return raise_for_problem(await self.http.request(method, path, json=body))
        return call

    async def wait_for_job(self, job_id: str, timeout: float = 600, poll: float = 0.5) -> dict:
        deadline = time.monotonic() + timeout
        while (job := await self.job(job_id))["status"] in ("queued", "running"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
            await asyncio.sleep(poll)
        return job

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
