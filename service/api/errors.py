"""The one place that maps library errors to HTTP: problem+json with stable codes.

Body: ``{"type", "title", "status", "code", "detail", "details"}`` (RFC 9457 plus
``code``, which clients switch on). Nothing else in the service builds error bodies.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexer.errors import (
    Busy,
    Conflict,
    IndexCorrupt,
    InvalidInput,
    MemexError,
    ModelError,
    NotFound,
    Unavailable,
)

log = logging.getLogger("memex.errors")

STATUS = {
    NotFound: 404,
    InvalidInput: 400,
    Conflict: 409,
    Busy: 429,
    ModelError: 422,
    IndexCorrupt: 409,
    Unavailable: 503,  # a shard restarting (docs/scale-out.md): retry, never a partial answer
}


def problem(status: int, code: str, detail: str, details: object = None) -> JSONResponse:
    body = {"type": "about:blank", "title": code.replace("_", " ").lower(), "status": status,
            "code": code, "detail": detail, "details": details or {}}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def status_of(exc: MemexError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def install(app: FastAPI) -> None:
    @app.exception_handler(MemexError)
    async def _memex(_: Request, exc: MemexError) -> JSONResponse:
        return problem(status_of(exc), exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(x) for x in first["loc"])
        return problem(422, "VALIDATION_ERROR", f"{where}: {first['msg']}", {"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}.get(
            exc.status_code, "HTTP_ERROR")
        return problem(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem(500, "INTERNAL", "internal error; see the server log")
