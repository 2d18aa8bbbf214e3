"""A corpus grown by many small adds: merges keep the segment count bounded, in the
library and as server jobs, and an explicit optimize leaves one segment."""

from __future__ import annotations

from indexer.corpus import DocumentInput
from tests.test_api import wait_for_job

WORDS = ("parse", "socket", "retry", "upload", "cache", "thread", "render", "encode", "token", "index")


def doc(i: int) -> DocumentInput:
    w = WORDS[i % len(WORDS)]
    text = "\n".join(f"def {w}_{i}_{j}(x):\n    return '{w} step {j} of document {i}'" for j in range(6))
    return DocumentInput(f"d{i}", text, path=f"pkg/m{i}.py")


def segments(corpora, name):
    return corpora.index(name)._snap.manifest.segments


def test_small_adds_merge_as_they_go_and_optimize_leaves_one_segment(corpora):
    corpora.create("grow")
    counts = []
    for i in range(10):
        corpora.upsert_documents("grow", [doc(i)])
        counts.append(len(segments(corpora, "grow")))
    assert max(counts) <= 3 and counts[3] == 1  # the fourth small segment triggers a merge
    before = corpora.search(["grow"], ["retry step of document"], k=6, mode="colbert")
    corpora.delete_documents("grow", ["d2"])
    assert corpora.optimize("grow") == 1
    only = segments(corpora, "grow")
    assert len(only) == 1 and only[0].n_deleted == 0
    after = corpora.search(["grow"], ["retry step of document"], k=5, mode="colbert")
    # retrained on today's corpus: scores move a little, the deleted document is gone (past
    # d2, the one "retry" document, the others differ by a word and a number: near ties that
    # a retrained 2-bit codec may reorder; the 64-d default keeps 3 of the 5)
    kept = [h.document_id for h in before[0] if h.document_id != "d2"][:5]
    assert "d2" not in {h.document_id for h in after[0]}
    assert len({h.document_id for h in after[0]} & set(kept)) >= 3
    assert corpora.optimize("grow") == 0  # nothing left to do


def test_server_merges_in_a_job_and_optimizes_on_request(live_server):
    r = live_server.post("/v1/corpora", json={"name": "agent", "documents": [
        {"id": d.doc_id, "text": d.text, "path": d.path} for d in [doc(0)]]})
    assert r.status_code == 201, r.text
    for i in range(1, 6):
        d = doc(i)
        r = live_server.post("/v1/corpora/agent/documents",
                             json={"documents": [{"id": d.doc_id, "text": d.text, "path": d.path}]})
        assert r.status_code < 300, r.text
    jobs = live_server.get("/v1/jobs", params={"corpus": "agent"}).json()["jobs"]
    merges = [j for j in jobs if j["kind"] == "merge"]
    assert merges and all(wait_for_job(live_server, j["id"])["status"] == "succeeded" for j in merges)
    r = live_server.post("/v1/corpora/agent/optimize")
    assert r.status_code == 202, r.text
    job = wait_for_job(live_server, r.json()["id"])
    assert job["status"] == "succeeded" and job["result"]["bytes"] > 0
    hits = live_server.post("/v1/corpora/agent/search", json={"query": "socket step", "k": 3}).json()
    assert hits["results"][0]["hits"]
    assert live_server.post("/v1/corpora/nope/optimize").status_code == 404
