"""/v1/chat/completions: OpenAI-compatible chat, plus ``cartridges: [{"id": ...}]`` as context."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from cartridges.generate import start_chat
from indexer.errors import InvalidInput
from indexer.models import DEFAULT_LM
from service.api.deps import CartridgesDep

router = APIRouter(tags=["chat"])


class Message(BaseModel):
    role: str = Field(pattern="^(system|user|assistant)$")
    content: str = Field(max_length=100_000)


class CartridgeRef(BaseModel):
    id: str


class ChatRequest(BaseModel):
    """OpenAI's request shape; unknown OpenAI fields are accepted and ignored."""

    model: str | None = Field(None, description="ignored: the cartridges' model (or the default LM) answers")
    messages: list[Message] = Field(min_length=1, max_length=256)
    max_tokens: int = Field(256, ge=1, le=4096, description="at most MEMEX_MAX_CHAT_TOKENS")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    stream: bool = False
    seed: int | None = None
    cartridges: list[CartridgeRef] = Field(default_factory=list, max_length=8,
                                           description="concatenated in this order before the chat")


def _event(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body)}\n\n"


@router.post("/v1/chat/completions", response_model=None)
def chat(body: ChatRequest, store: CartridgesDep,
         request: Request) -> dict[str, Any] | StreamingResponse:
    cap = request.app.state.settings.max_chat_tokens
    if body.max_tokens > cap:
        raise RequestValidationError([{"loc": ("body", "max_tokens"), "type": "less_than_equal",
                                       "msg": f"Input should be less than or equal to {cap} "
                                       "(MEMEX_MAX_CHAT_TOKENS)"}])
    infos = [store.info(ref.id) for ref in body.cartridges]
    paths = [store.file(info["id"]) for info in infos]
    models = {info["model"] for info in infos}
    if len(models) > 1:
        raise InvalidInput(f"the cartridges were trained for different models: {sorted(models)}")
    model = models.pop() if models else DEFAULT_LM
    run = start_chat([m.model_dump() for m in body.messages], paths, body.max_tokens, body.temperature,
                     model, body.seed)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}
    if not body.stream:
        text = "".join(run.pieces())
        return {**head, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": run.finish_reason}],
                "usage": {"prompt_tokens": run.prompt_tokens, "completion_tokens": run.completion_tokens,
                          "total_tokens": run.prompt_tokens + run.completion_tokens}}

    def events() -> Iterator[str]:
        chunk = {**head, "object": "chat.completion.chunk"}
        def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        yield _event(choice({"role": "assistant"}))
        for piece in run.pieces():
            yield _event(choice({"content": piece}))
        yield _event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": run.finish_reason}]})
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
