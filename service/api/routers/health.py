"""Liveness for orchestrators."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from service.api.deps import CorporaDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(corpora: CorporaDep) -> dict[str, Any]:
    with corpora.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return {"status": "ok"}
