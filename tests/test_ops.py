"""Operations: metrics, readiness, request ids and JSON logs, the client, keys CLI,
``--server`` mode, and several server workers writing to one data directory."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from service import client as mc
from service.api.logs import JsonFormatter
from tests.helpers.cli import run_memex as _cli
from tests.helpers.server import free_port


def _metric(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}}") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in metrics")


def test_metrics_readyz_request_ids_and_json_logs(live_server):
    docs = [{"id": "v", "text": "Volcanoes erupt lava."}, {"id": "b", "text": "Bread needs yeast."}]
    assert live_server.post("/v1/corpora", json={"name": "m", "documents": docs}).status_code == 201
    logged = io.StringIO()
    handler = logging.StreamHandler(logged)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("memex.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        r = live_server.post("/v1/corpora/m/search", json={"query": "lava"},
                             headers={"X-Request-ID": "trace-42"})
        assert r.headers["x-request-id"] == "trace-42"
        assert live_server.get("/v1/corpora/zzz").status_code == 404
    finally:
        access.removeHandler(handler)
    lines = [json.loads(x) for x in logged.getvalue().splitlines()]
    search = next(x for x in lines if x["path"] == "/v1/corpora/m/search")
    assert search["request_id"] == "trace-42" and search["status"] == 200
    assert search["route"] == "/v1/corpora/{name}/search" and search["ms"] > 0
    assert next(x for x in lines if x["path"] == "/v1/corpora/zzz")["status"] == 404
    made = live_server.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert len(made.headers["x-request-id"]) == 32  # replaced, not echoed

    text = live_server.get("/metrics").text
    assert _metric(text, "memex_http_request_duration_seconds_count", method="POST",
                   route="/v1/corpora/{name}/search") >= 1
    assert _metric(text, "memex_search_duration_seconds_count",
                   route="/v1/corpora/{name}/search") >= 1
    assert _metric(text, "memex_http_requests_total", method="GET", route="/v1/corpora/{name}",
                   status="404") >= 1
    assert _metric(text, "memex_corpus_passages", corpus="m") == 2
    assert _metric(text, "memex_index_bytes", corpus="m") > 0
    assert _metric(text, "memex_jobs", status="running") == 0
    ready = live_server.get("/readyz").json()
    assert ready["status"] == "ready" and ready["checks"]["encoder"] == "ok"


def test_client_sync_and_async_with_typed_errors(live_server):
    url = str(live_server.base_url)
    with mc.Client(url) as c:
        c.create_corpus("cl", documents=[{"id": "x/y z", "text": "Rivers flow to the sea."}])
        assert c.get_document("cl", "x/y z")["text"] == "Rivers flow to the sea."
        hits = c.search("cl", "where do rivers go", k=1)["results"][0]["hits"]
        assert hits[0]["document_id"] == "x/y z"
        with pytest.raises(mc.NotFoundError) as err:
            c.search("nope", "x")
        assert err.value.status == 404 and err.value.request_id
        from indexer.errors import NotFound

        assert isinstance(err.value, NotFound)  # library code's except clauses still match
        with pytest.raises(mc.ValidationError):
            c.search("cl", "x", k=0)
        with pytest.raises(mc.ConflictError):
            c.create_corpus("cl")
        with pytest.raises(mc.PayloadTooLarge):
            c.put_documents("cl", [{"id": "h", "text": "x" * 3_000_000}])

    async def run():
        async with mc.AsyncClient(url) as a:
            found = await asyncio.gather(*[a.search("cl", q) for q in ("sea", "rivers", "flow")])
            with pytest.raises(mc.InvalidInputError):
                await a.sync("cl")  # a documents corpus has no directory
            return found

    assert all(f["results"][0]["hits"] for f in asyncio.run(run()))


def test_keys_cli_and_server_mode(tmp_path, sample_dir):
    home = tmp_path / "home"
    made = _cli(home, "keys", "create", "--name", "ci", "--role", "write", "-c", "src")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("mx_") and "cannot be shown again" in made.stderr
    listed = json.loads(_cli(home, "keys", "ls", "--json").stdout)
    assert [(k["name"], k["role"], k["corpora"]) for k in listed] == [("ci", "write", ["src"])]
    db = (home / "memex.db").read_bytes()
    assert token.encode() not in db and token.split("_", 2)[2].encode() not in db  # hashed at rest

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port),
                               "--host", "0.0.0.0"], env={**os.environ, "MEMEX_HOME": str(home),
                              "MEMEX_ALLOWED_ROOTS": str(sample_dir.parent)},
                              stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, server)
        # keys exist, so it listens beyond loopback and auth is always on
        assert httpx.get(f"{url}/v1/corpora").status_code == 401
        admin = _cli(home, "keys", "create", "--name", "root", "--role", "admin").stdout.strip()
        remote = {"MEMEX_SERVER": url, "MEMEX_API_KEY": admin}
        r = _cli(home, "index", str(sample_dir), "--name", "src", **remote)
        assert r.returncode == 0, r.stderr
        assert "3 added" in r.stdout
        r = _cli(home, "search", "area of a circle", "-k", "1", "--json", "--server", url,
                 MEMEX_API_KEY=token)
        assert json.loads(r.stdout)[0]["path"] == "math/geometry.py", r.stderr
        r = _cli(home, "search", "x", "--corpus", "nope", "--server", url, MEMEX_API_KEY=token)
        assert r.returncode == 2 and "lacks read access" in r.stderr and "Traceback" not in r.stderr
        key_id = token.split("_")[1]
        assert _cli(home, "keys", "revoke", key_id).returncode == 0
        time.sleep(2.2)
        r = _cli(home, "search", "circle", "--server", url, MEMEX_API_KEY=token)
        assert r.returncode == 2 and "valid API key" in r.stderr
    finally:
        server.terminate()
        server.wait(30)


def test_without_keys_serve_binds_loopback_only(tmp_path):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port),
                               "--host", "0.0.0.0"], env={**os.environ,
                              "MEMEX_HOME": str(tmp_path / "h")},
                              stderr=subprocess.PIPE, text=True)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", server)
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    said = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert any("listening on 127.0.0.1 instead of 0.0.0.0" in x["msg"] for x in said), err
    assert any(x["msg"].startswith("memex on http://127.0.0.1:") for x in said)


def _wait_ready(url, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "server exited"
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError("server not ready")


def test_two_workers_on_one_data_dir(tmp_path, encoder):
    """Writes land on both workers at once; afterwards SQL and the index agree exactly."""
    from indexer.corpus import Corpora
    from indexer.database import Passage

    home, port = tmp_path / "home", free_port()
    log = (tmp_path / "server.log").open("w+")  # a file, not a pipe: a full pipe blocks workers
    server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port),
                               "--workers", "2"], env={**os.environ, "MEMEX_HOME": str(home)},
                              stderr=log, text=True)
    url = f"http://127.0.0.1:{port}"

    def log_tail():
        return (tmp_path / "server.log").read_text()[-6000:]

    try:
        _wait_ready(url, server)
        with mc.Client(url) as c:
            c.create_corpus("w", documents=[{"id": "seed", "text": "Seed document."}])

            def put(i):
                limits = httpx.Limits(max_keepalive_connections=0)  # new connection: any worker
                with httpx.Client(base_url=url, timeout=120, limits=limits) as h:
                    r = h.put(f"/v1/corpora/w/documents/d{i % 6}", json={"text": f"Note {i}."})
                    s = h.post("/v1/corpora/w/search", json={"query": "note", "k": 3})
                    return r.status_code, s.status_code

            with ThreadPoolExecutor(6) as pool:
                codes = list(pool.map(put, range(18)))
            assert all(c == (200, 200) for c in codes), (codes, log_tail())
            try:
                info = c.get_corpus("w")
            except mc.ServerError:
                raise AssertionError(log_tail()) from None
            assert info["documents"] == 7
            metrics = httpx.get(f"{url}/metrics").text  # summed over both workers
            assert _metric(metrics, "memex_http_requests_total", method="PUT",
                           route="/v1/corpora/{name}/documents/{doc_id:path}", status="200") == 18
    finally:
        server.terminate()
        server.wait(60)
    corpora = Corpora(home, encoder=encoder)
    with corpora.sessions() as s:
        sql_ids = sorted(s.scalars(select(Passage.id)))
    assert np.array_equal(corpora.index("w").passage_ids(), np.array(sql_ids))
    final = {d.doc_id: d.text for d in corpora.iter_documents("w")}
    assert set(final) == {"seed"} | {f"d{i}" for i in range(6)}
