"""The FastAPI application, built from settings by ``create_app``."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from indexer.corpus import Corpora
from service import errors
from service.handlers import register_all
from service.jobs import JobRunner
from service.routers import corpora, documents, health, jobs, search
from service.settings import Settings, get_settings

log = logging.getLogger("memex")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.settings = settings
        app.state.corpora = Corpora(settings.home, settings.db_url, settings.encoder,
                                    settings.allowed_roots, settings.max_file_bytes)
        app.state.corpora.encoder  # load the model now, not on the first request
        app.state.corpora.recover_all()
        app.state.jobs = JobRunner(app.state.corpora.sessions, settings.home)
        register_all(app.state.jobs, app.state.corpora)
        if settings.run_jobs:
            app.state.jobs.start()
        yield
        app.state.jobs.stop()

    app = FastAPI(title="memex", version="0.1.0", lifespan=lifespan,
                  description="Retrieval for agents: ColBERT search over directories and documents.")
    errors.install(app)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_request_bytes):
            return errors.problem(413, "PAYLOAD_TOO_LARGE",
                                  f"request bodies are limited to {settings.max_request_bytes} bytes")
        return await call_next(request)

    for module in (health, corpora, documents, search, jobs):
        app.include_router(module.router)
    return app
