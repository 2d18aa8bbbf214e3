"""Browsers may not reach a loopback-only server: DNS rebinding and cross-site requests.

A server on 127.0.0.1 without keys trusts whoever connects. A web page the user
visits can still connect: it rebinds its own name to 127.0.0.1 (the browser then
sends ``Host: evil.example``), or it posts cross-site straight to
``http://127.0.0.1:8765`` (the browser sends ``Origin`` and
``Sec-Fetch-Site: cross-site``). So a loopback-only server answers 403 unless
``Host`` names the machine itself (``localhost``, ``127.0.0.1``, ``[::1]``, any
port) or a name in ``MEMEX_ALLOWED_HOSTS``, and refuses any request a browser
marks as coming from another site. Programs (curl, the client, agents) send
neither header, or the right ``Host``, and pass.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api import errors

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def hostname(value: str) -> str | None:
    """The name in a ``Host`` header or an origin, without port or brackets.

    >>> [hostname(h) for h in ("localhost:8765", "[::1]:80", "127.0.0.1", "http://Evil.example")]
    ['localhost', '::1', '127.0.0.1', 'evil.example']
    """
    try:
        return urlsplit(value if "//" in value else f"//{value}").hostname
    except ValueError:
        return None


class HostGuard:
    def __init__(self, app: ASGIApp, allowed_hosts: list[str] | tuple[str, ...] = ()) -> None:
        self.app = app
        self.allowed = LOCAL_NAMES | {h.strip().lower() for h in allowed_hosts if h.strip()}

    def _refusal(self, headers: dict[bytes, bytes]) -> str | None:
        host = headers.get(b"host")
        if host is not None and hostname(host.decode("latin-1")) not in self.allowed:
            return (f"Host {host.decode('latin-1')!r} is not a name of this loopback-only "
                    "server; add it to MEMEX_ALLOWED_HOSTS if you serve under that name")
        origin = headers.get(b"origin")
        if origin is not None and hostname(origin.decode("latin-1")) not in self.allowed:
            return (f"cross-site request from {origin.decode('latin-1')!r} refused: a web page "
                    "may not call this server")
        if headers.get(b"sec-fetch-site", b"").lower() == b"cross-site":
            return "cross-site request refused: a web page may not call this server"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            reason = self._refusal(dict(scope["headers"]))
            if reason:
                return await errors.problem(403, "FOREIGN_HOST", reason)(scope, receive, send)
        await self.app(scope, receive, send)
