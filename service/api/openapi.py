"""Document the error answers as they are: problem+json, for every operation.

FastAPI documents 422 as ``application/json`` with its own body; memex answers
every error with ``application/problem+json`` (``service/api/errors.py``). This
rewrites the schema so that clients and schemathesis see the truth: 422 and a
``default`` response carry the ``Problem`` schema.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel


class Problem(BaseModel):
    """RFC 9457 problem details plus ``code``, the stable name clients switch on."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    details: dict[str, Any]


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema()
        problem = {"description": "error (problem+json)", "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for ops in schema.get("paths", {}).values():
            for op in ops.values():
                responses = op.setdefault("responses", {})
                if "422" in responses:
                    responses["422"] = {**problem, "description": "invalid request"}
                responses.setdefault("default", problem)
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
