"""Structured logs: one JSON object per line, each tagged with the request's id.

``RequestContext`` (outermost ASGI middleware) takes ``X-Request-ID`` from the
client when it is sane or makes one, echoes it in the response, logs one access
line per request and feeds the request metrics.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import metrics

request_id: ContextVar[str | None] = ContextVar("memex_request_id", default=None)
ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
access_log = logging.getLogger("memex.access")
STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id", ...extra fields}``."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage(), "request_id": request_id.get()}
        out.update({k: v for k, v in vars(record).items() if k not in STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO", as_json: bool = True) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # memex.access replaces it


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if ID_RE.match(given) else uuid.uuid4().hex
        # Not reset on the way out: uvicorn runs each request in its own task (own
        # context), and the 500 handler, outside this middleware, still logs the id.
        request_id.set(rid)
        status = [500]
        t0 = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - t0
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            metrics.observe(scope["method"], route, status[0], seconds)
            principal = scope.get("memex.principal")
            access_log.info("request", extra={
                "method": scope["method"], "path": scope["path"], "route": route,
                "status": status[0], "ms": round(seconds * 1000, 2),
                "key_id": getattr(principal, "key_id", None),
                "client": (scope.get("client") or ("?",))[0]})
