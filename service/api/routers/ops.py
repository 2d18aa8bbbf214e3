"""Readiness for orchestrators: 200 only when this worker can serve searches now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.api import errors

router = APIRouter(tags=["health"])


@router.get("/readyz", response_model=dict[str, Any],
            responses={503: {"description": "not ready (problem+json)"}})
def readyz(request: Request) -> dict[str, Any] | JSONResponse:
    state = request.app.state
    checks: dict[str, str] = {}
    try:
        with state.corpora.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    checks["encoder"] = "ok" if state.corpora.encoders.loaded else "loading"
    if state.settings.run_jobs:
        jobs = state.jobs.health()
        checks["jobs"] = "ok" if jobs["state"] in ("ok", "standby") else \
            f"{jobs['state']} ({jobs['error']})" if jobs["error"] else jobs["state"]
    if any(v != "ok" for v in checks.values()):
        return errors.problem(503, "NOT_READY", "not ready: " + ", ".join(
            f"{k} {v}" for k, v in checks.items() if v != "ok"), {"checks": checks})
    return {"status": "ready", "checks": checks}
