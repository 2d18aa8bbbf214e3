"""Who may call what: API keys checked against per-route rules, then a rate limit.

Two middlewares: ``Authenticate`` (key, rate limit) runs before the request body is
read, ``Authorize`` (rights) after it, since a multi-corpus search names its corpora
in the body.

Auth is enforced when any active key exists, or always when the server listens
beyond loopback (``memex serve`` refuses that without keys). Access is decided
from the method and path alone (plus the corpus names of a ``/v1/search`` body),
so routers added later under ``/v1/corpora/{name}/...`` are scoped per corpus
without code of their own; other new ``/v1/...`` prefixes need a global key.
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from collections.abc import Callable
from typing import Any, cast

import anyio
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api import errors
from service.api.keys import ANONYMOUS, KeyStore, Principal, token_digest
from service.api.limits import BODY_KEY
from service.api.ratelimit import RateLimiter

PUBLIC = {"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
READ_ACTIONS = {"search", "neighbors", "chat", "ask", "complete", "query"}
ANY_KEY: Need = []  # any valid key, no corpus right needed
CACHE_SECONDS = 2.0  # a revoked key stops working within this time
PRINCIPAL_KEY = "memex.principal"

Need = list[tuple[str | None, str]]  # (corpus or None for global, role)


def is_loopback(host: str) -> bool:
    """>>> [is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "10.0.0.2")]
    [True, True, True, False, False]
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def required_access(method: str, path: str, body: bytes = b"",
                    job_corpus: Callable[[str], str | None] | None = None) -> Need | None:
    """The rights a request needs; ``None`` for public paths.

    >>> required_access("POST", "/v1/corpora/docs/search")
    [('docs', 'read')]
    >>> required_access("PUT", "/v1/corpora/docs/documents/a/b")
    [('docs', 'write')]
    >>> required_access("DELETE", "/v1/corpora/docs"), required_access("POST", "/v1/corpora")
    ([('docs', 'admin')], [(None, 'admin')])
    >>> required_access("POST", "/v1/search", b'{"corpora": ["a", "b"], "query": "x"}')
    [('a', 'read'), ('b', 'read')]
    >>> required_access("POST", "/v1/cartridges/x/train"), required_access("GET", "/healthz")
    ([(None, 'write')], None)
    >>> required_access("POST", "/v1/chat/completions")
    [(None, 'read')]
    """
    if path in PUBLIC:
        return None
    method = method.upper()
    reading = method in ("GET", "HEAD", "OPTIONS")
    parts = [p for p in path.split("/") if p]
    if path == "/metrics":
        return [(None, "admin")]
    if parts[:1] != ["v1"]:
        return ANY_KEY  # not an API path: the router answers 404/405
    if parts[1:2] == ["corpora"]:
        if len(parts) == 2:
            return ANY_KEY if reading else [(None, "admin")]
        name = parts[2]
        if len(parts) == 3:
            return [(name, "read" if reading else "admin" if method == "DELETE" else "write")]
        read = reading or (method == "POST" and parts[-1] in READ_ACTIONS)
        return [(name, "read" if read else "write")]
    if parts[1:] == ["search"]:
        try:
            names = json.loads(body or b"null")["corpora"]
            if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
                return [(n, "read") for n in dict.fromkeys(names)]
        except (ValueError, TypeError, KeyError):
            pass
        return [(None, "read")]
    if parts[1:] == ["chat", "completions"]:
        return [(None, "read")]  # generation reads cartridges; it changes nothing
    if parts[1:2] == ["jobs"] and len(parts) >= 3 and job_corpus is not None:
        corpus = job_corpus(parts[2])
        return [(corpus, "read" if reading else "write")]
    return [(None, "read" if reading else "write")]


def _token(scope: Scope) -> str | None:
    headers = dict(scope["headers"])
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth[:7].lower() == "bearer ":
        return str(auth[7:].strip())
    key = headers.get(b"x-api-key")
    return key.decode("latin-1").strip() if key else None


class Authenticate:
    """ASGI middleware, before the body is read: who is calling (401), and the rate limit
    (429). Unauthenticated clients make the server buffer nothing and take no compute
    slot. The app's state gives the key store once the lifespan ran."""

    def __init__(self, app: ASGIApp, enforce_always: bool, limiter: RateLimiter) -> None:
        self.app = app
        self.enforce_always = enforce_always
        self.limiter = limiter
        self._keys_exist = (0.0, False)  # (checked at, any active key)
        self._verified: dict[str, tuple[float, Principal | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC:
            return await self.app(scope, receive, send)
        state = scope["app"].state
        principal = ANONYMOUS
        if self.enforce_always or await self._any_keys(state):
            token = _token(scope)
            verified = await self._verify(state, token) if token else None
            if verified is None:
                response = errors.problem(401, "UNAUTHORIZED", "a valid API key is required "
                                          "(Authorization: Bearer <key> or X-API-Key)")
                response.headers["WWW-Authenticate"] = 'Bearer realm="memex"'
                return await response(scope, receive, send)
            principal = verified
        client = principal.key_id or (scope.get("client") or ("?",))[0]
        wait = self.limiter.acquire(client)
        if wait > 0:
            response = errors.problem(429, "RATE_LIMITED", f"rate limit exceeded; retry in "
                                      f"{wait:.1f}s", {"retry_after": math.ceil(wait)})
            response.headers["Retry-After"] = str(math.ceil(wait))
            return await response(scope, receive, send)
        scope[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)

    async def _any_keys(self, state: Any) -> bool:
        checked, exist = self._keys_exist
        if time.monotonic() - checked > CACHE_SECONDS:
            exist = await anyio.to_thread.run_sync(lambda: KeyStore(
                state.corpora.sessions).active_count() > 0)
            self._keys_exist = (time.monotonic(), exist)
        return exist

    async def _verify(self, state: Any, token: str) -> Principal | None:
        digest = token_digest(token)
        hit = self._verified.get(digest)
        if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        principal = await anyio.to_thread.run_sync(KeyStore(state.corpora.sessions).verify, token)
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[digest] = (time.monotonic(), principal)
        return principal


class Authorize:
    """ASGI middleware, after ``BodyLimit``: may this caller do this (403)? The rights of
    ``POST /v1/search`` depend on the corpora its body names."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get(PRINCIPAL_KEY) if scope["type"] == "http" else None
        if principal is None or principal is ANONYMOUS:  # public path, or no auth at all
            return await self.app(scope, receive, send)
        state = scope["app"].state
        args = (scope["method"], scope["path"], scope.get(BODY_KEY, b""))
        if scope["path"].startswith("/v1/jobs/"):  # the job's corpus is looked up in SQL
            need = await anyio.to_thread.run_sync(
                required_access, *args, lambda job_id: _job_corpus(state, job_id))
        else:
            need = required_access(*args)
        denied = [(c, r) for c, r in need or [] if not principal.allows(c, r)]
        if denied:
            corpus, role = denied[0]
            where = f"corpus {corpus!r}" if corpus else "all corpora"
            return await errors.problem(403, "FORBIDDEN", f"this key lacks {role} access "
                                        f"to {where}")(scope, receive, send)
        await self.app(scope, receive, send)


def visible(request: Request, names: list[str]) -> list[str]:
    """The corpora among ``names`` the request's key may read (for listings)."""
    principal = request.scope.get(PRINCIPAL_KEY, ANONYMOUS)
    return [n for n in names if principal.allows(n, "read")]


def _job_corpus(state: Any, job_id: str) -> str | None:
    from indexer.errors import NotFound

    try:
        return cast(str | None, state.jobs.get(job_id).corpus)
    except NotFound:
        return None
