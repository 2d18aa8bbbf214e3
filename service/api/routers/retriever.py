"""/v1/corpora/{name}/retriever: post-train the corpus's retriever (a background job)."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import Field, model_validator

from service.api.deps import CorporaDep, JobsDep
from service.api.schemas import JobPublic, Strict

router = APIRouter(prefix="/v1/corpora", tags=["retriever"])


class RetrieverTrain(Strict):
    passages: int = Field(default=64, ge=0, le=100_000,
                          description="sampled passages the bundled LM writes a query for")
    mined: int = Field(default=2000, ge=0, le=1_000_000,
                       description="docstring queries mined from the corpus, at most")
    steps: int = Field(default=300, ge=1, le=100_000, description="training steps")
    teacher: bool = Field(default=True, description="distil LM query-likelihood scores")

    @model_validator(mode="after")
    def _some_queries(self) -> RetrieverTrain:
        if self.passages + self.mined == 0:
            raise ValueError("passages and mined cannot both be 0: training needs queries")
        return self


@router.post("/{name}/retriever", response_model=JobPublic,
             status_code=status.HTTP_202_ACCEPTED)
def train_retriever(name: str, corpora: CorporaDep, jobs: JobsDep,
                    body: RetrieverTrain | None = None) -> JobPublic:
    """Post-train on LM-written and docstring queries, re-index, switch atomically;
    poll ``/v1/jobs/{id}``. Searches keep using the current encoder and index until the switch."""
    corpora.info(name)  # 404 before queueing
    params = {"corpus": name, **(body or RetrieverTrain()).model_dump()}
    return JobPublic.model_validate(jobs.submit("retriever", params, corpus=name))
