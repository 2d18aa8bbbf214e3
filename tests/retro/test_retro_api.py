"""The neighbours endpoint and CLI on a real server/CLI: the sync keeps the chunk DB updated."""

import numpy as np
from typer.testing import CliRunner

from tests.helpers.api import assert_problem, wait_for_job


def test_neighbors_endpoint_follows_the_sync(live_server, sample_dir):
    r = live_server.post("/v1/corpora", json={"name": "src", "directory": str(sample_dir)})
    assert wait_for_job(live_server, r.json()["job_id"])["status"] == "succeeded"
    r = live_server.post("/v1/corpora/src/neighbors", json={"text": "area of a circle radius"})
    assert_problem(r, 404, "NOT_FOUND")  # a chunk DB is opt-in per corpus
    job = wait_for_job(live_server, live_server.post("/v1/corpora/src/chunkdb").json()["id"])
    assert job["status"] == "succeeded" and job["result"]["chunks"] >= 3, job
    r = live_server.post("/v1/corpora/src/neighbors", json={"text": "area of a circle radius"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["chunk_tokens"] == 64 and len(body["chunks"]) == 1
    top = body["chunks"][0]["neighbors"]
    assert len(top) == 2 and top[0]["path"] == "math/geometry.py"
    assert len(top[0]["tokens"]) == 128 and len(top[0]["mask"]) == 128
    assert "circle_area" in top[0]["text"] and top[0]["distance"] <= top[1]["distance"]

    r = live_server.post("/v1/corpora/src/neighbors",
                         json={"text": "area of a circle", "k": 3,
                               "exclude_same_document": "math/geometry.py"})
    assert all(n["document_id"] != "math/geometry.py" for n in r.json()["chunks"][0]["neighbors"])

    (sample_dir / "math/geometry.py").unlink()
    wait_for_job(live_server, live_server.post("/v1/corpora/src/sync").json()["id"])
    r = live_server.post("/v1/corpora/src/neighbors", json={"text": "area of a circle", "k": 3})
    docs = {n["document_id"] for n in r.json()["chunks"][0]["neighbors"]}
    assert docs == {"net/http_client.py", "docs/cooking.md"}  # the deleted file is gone


def test_neighbors_errors(live_server):
    assert_problem(live_server.post("/v1/corpora/nope/neighbors", json={"text": "x"}),
                   404, "NOT_FOUND")
    live_server.post("/v1/corpora", json={"name": "d", "documents": [
        {"id": "a", "text": "Cells divide by mitosis."}]})
    wait_for_job(live_server, live_server.post("/v1/corpora/d/chunkdb").json()["id"])
    ok = live_server.post("/v1/corpora/d/neighbors", json={"token_ids": [1, 2, 3], "k": 1})
    assert ok.status_code == 200, ok.text
    assert_problem(live_server.post("/v1/corpora/d/neighbors", json={"text": " "}),
                   400, "INVALID_INPUT")
    assert_problem(live_server.post("/v1/corpora/d/neighbors", json={"token_ids": [10**7]}),
                   400, "INVALID_INPUT")
    assert_problem(live_server.post("/v1/corpora/d/neighbors",
                                    json={"text": "x", "chunk_tokens": 32}), 400, "INVALID_INPUT")
    assert_problem(live_server.post("/v1/corpora/d/neighbors", json={"text": "x", "k": 0}),
                   422, "VALIDATION_ERROR")


def test_cli_neighbors_and_precompute(tmp_path, sample_dir, monkeypatch):
    from service.cli.main import app
    from service.settings import get_settings

    monkeypatch.setenv("MEMEX_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        assert runner.invoke(app, ["index", str(sample_dir), "--name", "src"]).exit_code == 0
        r = runner.invoke(app, ["neighbors", "knead the dough", "--corpus", "src"])
        assert r.exit_code == 2 and "no chunk DB yet" in r.output
        assert runner.invoke(app, ["retro", "build", "--corpus", "src"]).exit_code == 0
        r = runner.invoke(app, ["neighbors", "knead the dough", "--corpus", "src", "-k", "1"])
        assert r.exit_code == 0, r.output
        assert "docs/cooking.md" in r.output
        out = tmp_path / "pre"
        r = runner.invoke(app, ["retro", "precompute", "--corpus", "src", "--out", str(out)])
        assert r.exit_code == 0, r.output
        nb, rows = np.load(out / "neighbors.npy"), np.load(out / "doc_rows.npy")
        assert nb.shape == (len(rows), 2) and len(set(rows.tolist())) == 3
        assert (rows[nb] != rows[:, None]).all()  # never the chunk's own document
        r = runner.invoke(app, ["neighbors", "x", "--corpus", "missing"])
        assert r.exit_code == 2 and "missing" in r.output
    finally:
        get_settings.cache_clear()
