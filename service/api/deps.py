"""Named FastAPI dependencies: the shared objects the lifespan opened."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from cartridges.store import CartridgeStore
from indexer.corpus import Corpora
from service.jobs.runner import JobRunner
from service.settings import Settings


def get_corpora(request: Request) -> Corpora:
    return cast(Corpora, request.app.state.corpora)


def get_jobs(request: Request) -> JobRunner:
    return cast(JobRunner, request.app.state.jobs)


def get_cartridges(request: Request) -> CartridgeStore:
    return cast(CartridgeStore, request.app.state.cartridges)


def get_app_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


CorporaDep = Annotated[Corpora, Depends(get_corpora)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
CartridgesDep = Annotated[CartridgeStore, Depends(get_cartridges)]
