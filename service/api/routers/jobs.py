"""/v1/jobs: progress and cancellation of background work."""

from __future__ import annotations

from fastapi import APIRouter, Query

from service.api.deps import JobsDep
from service.api.schemas import JobList, JobPublic

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("", response_model=JobList)
def list_jobs(jobs: JobsDep, corpus: str | None = None,
              limit: int = Query(100, ge=1, le=1000)) -> JobList:
    items = [JobPublic.model_validate(j) for j in jobs.list(corpus, limit)]
    return JobList(count=len(items), jobs=items)


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: str, jobs: JobsDep) -> JobPublic:
    return JobPublic.model_validate(jobs.get(job_id))


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, jobs: JobsDep) -> JobPublic:
    return JobPublic.model_validate(jobs.cancel(job_id))
