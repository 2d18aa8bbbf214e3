"""The FastAPI application, built from settings by ``create_app``."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cartridges.store import CartridgeStore
from indexer.retro import sync as retro_sync
from service import errors, mcp_server, metrics, openapi
from service.auth import Auth, is_loopback
from service.cartridge_handlers import register_cartridges
from service.handlers import register_all
from service.jobs import JobRunner
from service.keys import KeyStore
from service.limits import BodyLimit, SearchGate
from service.logs import RequestContext
from service.ratelimit import RateLimiter
from service.routers import (
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
from service.settings import Settings, get_settings, open_corpora
from service.watchers import Watchers

log = logging.getLogger("memex")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.settings = settings
        app.state.corpora = open_corpora(settings)
        app.state.corpora.encoder  # load the model now, not on the first request
        app.state.corpora.recover_all()
        retro_sync.install(app.state.corpora)  # chunk DBs follow every corpus change
        app.state.jobs = JobRunner(app.state.corpora.sessions, settings.home)
        register_all(app.state.jobs, app.state.corpora)
        app.state.cartridges = CartridgeStore(settings.home / "cartridges")
        register_cartridges(app.state.jobs, app.state.corpora, app.state.cartridges)
        if settings.run_jobs:
            app.state.jobs.start()
        app.state.watchers = Watchers(app.state.corpora, app.state.jobs, settings.home)
        app.state.watchers.start()  # corpora created with watch: true
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

    # Outermost last: request id, access log and metrics see every response, 401/413/429 too.
    app.add_middleware(Auth, enforce_always=not is_loopback(settings.host),
                       limiter=RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst))
    app.add_middleware(SearchGate, limit=settings.max_concurrent_searches)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestContext)

    for module in (health, ops, metrics, corpora, documents, search, neighbors, jobs, retriever,
                   cartridges, chat):
        app.include_router(module.router)
    mcp = mcp_server.mount(app, settings.host)  # /mcp: the REST API as MCP tools
    return app
