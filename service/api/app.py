"""The FastAPI application, built from settings by ``create_app``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import runtime
from service.api import errors, mcp_server, metrics, openapi
from service.api.auth import Authenticate, Authorize, is_loopback
from service.api.hostguard import HostGuard
from service.api.keys import KeyStore
from service.api.limits import BodyLimit, ComputeGate
from service.api.logs import RequestContext
from service.api.ratelimit import RateLimiter
from service.api.routers import (
    cartridges,
    chat,
    corpora,
    documents,
    health,
    jobs,
    neighbors,
    ops,
    retriever,
    search,
)
from service.jobs.watchers import Watchers
from service.settings import Settings, get_settings

log = logging.getLogger("memex")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        running = runtime.start(settings, run_jobs=settings.run_jobs)
        app.state.corpora, app.state.jobs = running.corpora, running.jobs
        app.state.cartridges = running.cartridges
        app.state.watchers = Watchers(app.state.corpora, app.state.jobs, settings.home)
        keys = KeyStore(app.state.corpora.sessions).active_count()
        if keys:
            log.info("auth on: %d active API keys", keys)
        else:
            log.warning("no API keys: serving without auth, on loopback only "
                        "(create one with `memex keys create`)")
        async with mcp.session_manager.run():
            yield
        app.state.watchers.stop()
        app.state.jobs.stop()

    app = FastAPI(title="memex", version="0.1.0", lifespan=lifespan,
                  description="Retrieval for agents: ColBERT search over directories and documents.")
    errors.install(app)
    openapi.install(app)

    # Outermost last. Request order: request id, access log and metrics (they see every
    # response, 401/413/429 too); Host/Origin; key and rate limit, before any body is
    # read; body limit; rights (they may need the body); compute gates; the routers.
    loopback_only = is_loopback(settings.host)
    app.add_middleware(ComputeGate, limits={"search": settings.max_concurrent_searches,
                                            "neighbors": settings.max_concurrent_neighbors,
                                            "chat": settings.max_concurrent_chats},
                       max_waiting=settings.max_waiting_requests)
    app.add_middleware(Authorize)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(Authenticate, enforce_always=not loopback_only,
                       limiter=RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst))
    if loopback_only:
        app.add_middleware(HostGuard, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(RequestContext)

    for module in (health, ops, metrics, corpora, documents, search, neighbors, jobs, retriever,
                   cartridges, chat):
        app.include_router(module.router)
    mcp = mcp_server.mount(app, settings.host)  # /mcp: the REST API as MCP tools
    return app
