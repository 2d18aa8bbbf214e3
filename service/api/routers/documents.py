"""/v1/corpora/{name}/documents: add, replace, read and delete documents by id."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, status

from indexer.corpus import DocumentInput
from indexer.database import Document
from service.api.deps import CorporaDep
from service.api.schemas import (
    ChangeResult,
    DocumentList,
    DocumentPublic,
    DocumentPut,
    DocumentsPut,
    DocumentSummary,
    PassagePublic,
)

router = APIRouter(prefix="/v1/corpora/{name}/documents", tags=["documents"])


def _summary(doc: Document) -> dict[str, Any]:
    return dict(id=doc.doc_id, path=doc.path, content_hash=doc.content_hash, chars=doc.n_chars,
                metadata=doc.metadata_, updated_at=doc.updated_at)


@router.get("", response_model=DocumentList)
def list_documents(name: str, corpora: CorporaDep, offset: int = Query(0, ge=0, le=2**62),
                   limit: int = Query(100, ge=1, le=1000)) -> DocumentList:
    total, docs = corpora.documents(name, offset, limit)
    return DocumentList(count=total, documents=[DocumentSummary(**_summary(d)) for d in docs])


@router.post("", response_model=ChangeResult)
def put_documents(name: str, body: DocumentsPut, corpora: CorporaDep) -> ChangeResult:
    """Add or replace documents (by id); unchanged ones are not re-encoded."""
    docs = [DocumentInput(d.id, d.text, d.path, d.metadata) for d in body.documents]
    return ChangeResult(**asdict(corpora.upsert_documents(name, docs)))


@router.get("/{doc_id:path}", response_model=DocumentPublic)
def get_document(name: str, doc_id: str, corpora: CorporaDep) -> DocumentPublic:
    doc, passages = corpora.document(name, doc_id)
    return DocumentPublic(**_summary(doc), text=doc.text, passages=[
        PassagePublic(passage_id=p.id, start_line=p.start_line, end_line=p.end_line, text=p.text)
        for p in passages])


@router.put("/{doc_id:path}", response_model=ChangeResult)
def put_document(name: str, doc_id: str, body: DocumentPut, corpora: CorporaDep) -> ChangeResult:
    doc = DocumentInput(doc_id, body.text, body.path, body.metadata)
    return ChangeResult(**asdict(corpora.upsert_documents(name, [doc])))


@router.delete("/{doc_id:path}", response_model=ChangeResult, status_code=status.HTTP_200_OK)
def delete_document(name: str, doc_id: str, corpora: CorporaDep) -> ChangeResult:
    return ChangeResult(**asdict(corpora.delete_documents(name, [doc_id])))
