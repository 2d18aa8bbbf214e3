"""/v1/corpora/{name}/cartridges and /v1/cartridges: train, list, inspect, download, delete."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from cartridges.budget import DEFAULT_BUDGET_S
from cartridges.config import CartridgeConfig
from cartridges.gain import verdict
from cartridges.store import is_stale
from indexer.corpus import Corpora
from indexer.errors import NotFound
from service.api.deps import CartridgesDep, CorporaDep, JobsDep
from service.api.schemas import JobPublic
from service.jobs.cartridge_handlers import settle

router = APIRouter(tags=["cartridges"])


class CartridgeCreate(BaseModel):
    """Training settings; omitted ones take ``CartridgeConfig``'s defaults (docs/cartridges.md)."""

    model_config = ConfigDict(extra="forbid")
    # Upper bounds keep one request's job to hours, not weeks, on a CPU (docs/api.md);
    # CartridgeConfig checks the lower ones.
    budget_seconds: float | None = Field(
        None, gt=0, le=7 * 86400,
        description="wall-clock budget: a measured probe plans num_samples and steps (the default, "
                    "with DEFAULT_BUDGET_S, when neither steps nor num_samples is given)")
    p: int | None = Field(None, le=4096,
                          description="cartridge length in tokens (default: 256, less for a corpus "
                                      "under ~3k tokens; docs/cartridges.md)")
    init: Literal["first", "spread", "summary"] | None = Field(
        None, description="initial KV: the corpus's first p tokens, tokens spread over it, "
                          "or an LM-written summary of it")
    questions_per_chunk: int | None = Field(None, le=256,
                                            description="self-study conversations sharing one chunk")
    steps: int | None = Field(None, le=10_000)
    num_samples: int | None = Field(None, le=10_000,
                                    description="self-study conversations to synthesize")
    batch_size: int | None = Field(None, le=64)
    lr: float | None = Field(None, le=10)
    chunk_tokens: int | None = Field(None, le=4096)
    question_tokens: int | None = Field(None, le=512)
    answer_tokens: int | None = Field(None, le=2048)
    holdout: int | None = Field(None, le=1000,
                                description="synthesized conversations kept to measure the loss")
    seed: int | None = Field(None, ge=0, le=2**32 - 1)


class CartridgePublic(BaseModel):
    id: str
    status: str
    corpus_id: str
    corpus_version: int
    corpus_created_at: str | None = Field(None, description="creation time of the corpus trained on")
    stale: bool = Field(description="the corpus changed (or is gone) since this was trained")
    model: str
    p: int | None = Field(description="cartridge length; null until training sizes it from the corpus "
                                      "(when the request left p out)")
    bytes: int | None
    config: dict[str, Any]
    training: dict[str, Any] | None
    plan: dict[str, Any] | None = Field(None, description="a budgeted run's plan and the probe it came from")
    gain_over_init: float | None = Field(
        None, description="share of the held-out gap training closed beyond the untrained cartridge")
    warnings: list[str] = Field(default_factory=list,
                                description="e.g. a gain over the initialisation within noise")
    error: str | None
    created_at: str


class CartridgeList(BaseModel):
    count: int
    cartridges: list[CartridgePublic]


class CartridgeCreated(BaseModel):
    cartridge: CartridgePublic
    job: JobPublic


def public(info: dict[str, Any], corpora: Corpora) -> CartridgePublic:
    try:
        corpus = corpora.info(info["corpus_id"])
        stale = is_stale(info, corpus.version, corpus.created_at)
    except NotFound:
        stale = True
    training = info.get("training") or {}
    line = verdict(training)
    return CartridgePublic(**{k: v for k, v in info.items() if k in CartridgePublic.model_fields},
                           stale=stale, gain_over_init=training.get("gain_over_init"),
                           warnings=[line] if line and training.get("gain_within_noise") else [])


@router.post("/v1/corpora/{name}/cartridges", response_model=CartridgeCreated,
             status_code=status.HTTP_202_ACCEPTED)
def train(name: str, body: CartridgeCreate, store: CartridgesDep, corpora: CorporaDep,
          jobs: JobsDep) -> CartridgeCreated:
    """Start training a cartridge on the corpus as it is now; poll the job or the cartridge."""
    corpus = corpora.info(name)
    given = body.model_dump(exclude_none=True)
    if not {"budget_seconds", "steps", "num_samples"} & given.keys():
        given["budget_seconds"] = DEFAULT_BUDGET_S
    config = CartridgeConfig(**given)
    info = store.create(name, corpus.version, config, corpus.created_at)
    job = jobs.submit("cartridge_train", {"cartridge_id": info["id"]}, corpus=name)
    info = store.update(info["id"], job_id=job.id)
    return CartridgeCreated(cartridge=public(info, corpora), job=JobPublic.model_validate(job))


@router.get("/v1/cartridges", response_model=CartridgeList)
def list_cartridges(store: CartridgesDep, corpora: CorporaDep, jobs: JobsDep,
                    corpus: str | None = None) -> CartridgeList:
    items = [public(settle(store, jobs, i), corpora) for i in store.list(corpus)]
    return CartridgeList(count=len(items), cartridges=items)


@router.get("/v1/cartridges/{cartridge_id}", response_model=CartridgePublic)
def get_cartridge(cartridge_id: str, store: CartridgesDep, corpora: CorporaDep,
                  jobs: JobsDep) -> CartridgePublic:
    return public(settle(store, jobs, store.info(cartridge_id)), corpora)


@router.get("/v1/cartridges/{cartridge_id}/file", response_class=FileResponse)
def download(cartridge_id: str, store: CartridgesDep) -> FileResponse:
    """The cartridge as a safetensors file (cartridges/FORMAT.md); load it with cartridges.inference."""
    path = store.file(cartridge_id)
    return FileResponse(path, media_type="application/octet-stream",
                        filename=f"{cartridge_id}.cartridge.safetensors")


@router.delete("/v1/cartridges/{cartridge_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete(cartridge_id: str, store: CartridgesDep) -> None:
    store.delete(cartridge_id)
