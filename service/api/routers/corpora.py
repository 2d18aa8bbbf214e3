"""/v1/corpora: create, list, inspect, delete, sync."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request, status

from indexer.corpus import DocumentInput
from service.api.auth import visible
from service.api.deps import CorporaDep, JobsDep
from service.api.schemas import CorpusCreate, CorpusCreated, CorpusList, CorpusPublic, JobPublic

router = APIRouter(prefix="/v1/corpora", tags=["corpora"])


@router.get("", response_model=CorpusList)
def list_corpora(corpora: CorporaDep, request: Request) -> CorpusList:
    """The corpora the caller's key may read (all of them without auth)."""
    items = [CorpusPublic(**asdict(corpora.info(n))) for n in visible(request, corpora.names())]
    return CorpusList(count=len(items), corpora=items)


@router.post("", response_model=CorpusCreated, status_code=status.HTTP_201_CREATED)
def create_corpus(body: CorpusCreate, corpora: CorporaDep, jobs: JobsDep,
                  request: Request) -> CorpusCreated:
    """From a directory (indexed by a sync job, see ``job_id``; with ``watch`` re-synced on
    every change) or from documents (indexed now)."""
    info = corpora.create(body.name, root=body.directory)
    job_id = None
    if body.directory is not None:
        job_id = jobs.submit("sync", {"corpus": body.name}, corpus=body.name).id
        if body.watch:
            request.app.state.watchers.add(body.name)
    elif body.documents:
        docs = [DocumentInput(d.id, d.text, d.path, d.metadata) for d in body.documents]
        try:
            corpora.upsert_documents(body.name, docs)
        except Exception:
            corpora.delete(body.name)
            raise
        info = corpora.info(body.name)
    return CorpusCreated(**asdict(info), job_id=job_id)


@router.get("/{name}", response_model=CorpusPublic)
def get_corpus(name: str, corpora: CorporaDep) -> CorpusPublic:
    return CorpusPublic(**asdict(corpora.info(name)))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_corpus(name: str, corpora: CorporaDep) -> None:
    corpora.delete(name)


@router.post("/{name}/sync", response_model=JobPublic, status_code=status.HTTP_202_ACCEPTED)
def sync_corpus(name: str, corpora: CorporaDep, jobs: JobsDep) -> JobPublic:
    """Start re-indexing a directory corpus; poll ``/v1/jobs/{id}`` for progress."""
    info = corpora.info(name)
    if info.kind != "directory":
        from indexer.errors import InvalidInput

        raise InvalidInput(f"corpus {name!r} has no directory to sync")
    return JobPublic.model_validate(jobs.submit("sync", {"corpus": name}, corpus=name))


@router.post("/{name}/optimize", response_model=JobPublic, status_code=status.HTTP_202_ACCEPTED)
def optimize_corpus(name: str, corpora: CorporaDep, jobs: JobsDep) -> JobPublic:
    """Merge the corpus's index into one segment under one codec, as a job (searches and
    writes go on meanwhile); poll ``/v1/jobs/{id}``."""
    corpora.info(name)  # 404 for an unknown corpus, before a job exists
    return JobPublic.model_validate(jobs.submit("optimize", {"corpus": name}, corpus=name))
