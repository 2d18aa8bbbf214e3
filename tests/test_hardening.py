"""Attacks from a browser, requests sized to sink the server, and auth before any work.

Each test runs a real uvicorn on loopback (``LiveServer``) and fails if the attack works.
"""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from service.api.app import create_app
from service.api.limits import ComputeGate
from service.settings import Settings
from tests.conftest import LiveServer
from tests.test_api import assert_problem, wait_for_job
from tests.test_security import _keys


def _answer_without_sending_the_body(port: int, head: bytes) -> bytes:
    """Send only the headers of a request whose body never comes; the server must answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        data = b""
        try:
            while b"\r\n\r\n" not in data and (chunk := s.recv(65536)):
                data += chunk
        except TimeoutError:
            pass  # nothing came: the server is waiting for (buffering) the body
    return data


# -- defect 5: auth before the body is buffered ----------------------------------


def test_unauthenticated_request_is_refused_before_its_body_is_read(tmp_path, encoder):
    home = tmp_path / "home"
    _keys(home).create("admin", "admin", ["*"])
    settings = Settings(home=home, max_request_bytes=1_000_000, rate_limit_per_minute=0)
    with LiveServer(create_app(settings)) as server:
        head = (b"POST /v1/corpora/a/documents HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: application/json\r\nContent-Length: 900000\r\n\r\n")
        t0 = time.monotonic()
        answer = _answer_without_sending_the_body(server.port, head)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:80]
        assert time.monotonic() - t0 < 5


def test_rate_limited_request_is_refused_before_its_body_is_read(tmp_path, encoder):
    settings = Settings(home=tmp_path / "home", rate_limit_per_minute=1, rate_limit_burst=1)
    with LiveServer(create_app(settings)) as server:
        assert httpx.get(f"{server.url}/v1/corpora").status_code == 200  # the one token
        head = (b"POST /v1/search HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: application/json\r\nContent-Length: 50000\r\n\r\n")
        answer = _answer_without_sending_the_body(server.port, head)
        assert answer.startswith(b"HTTP/1.1 429"), answer[:80]


# -- defect 3: DNS rebinding and cross-site requests ------------------------------


@pytest.fixture
def keyless(tmp_path, encoder, monkeypatch):
    """A loopback server without keys and without MEMEX_ALLOWED_ROOTS, in a fake home."""
    user = tmp_path / "user"
    (user / ".ssh").mkdir(parents=True)
    (user / ".ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY----- secret\n")
    (user / "proj").mkdir()
    (user / "proj" / "notes.md").write_text("Ordinary notes about gardening.\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("HOME", str(user))
    settings = Settings(home=tmp_path / "home", allowed_hosts=["memex.lan"])
    with LiveServer(create_app(settings)) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        yield server, client, tmp_path


def test_rebound_host_and_cross_site_requests_are_refused(keyless):
    server, client, _ = keyless
    body = {"name": "x", "documents": [{"id": "a", "text": "hello"}]}
    for headers in ({"Host": "evil.example"}, {"Host": f"evil.example:{server.port}"},
                    {"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}):
        assert_problem(client.post("/v1/corpora", json=body, headers=headers), 403, "FOREIGN_HOST")
        assert_problem(client.get("/v1/corpora", headers=headers), 403, "FOREIGN_HOST")
    assert client.get("/v1/corpora").json()["count"] == 0  # nothing was created
    for headers in ({"Host": f"localhost:{server.port}"}, {"Host": f"[::1]:{server.port}"},
                    {"Host": "memex.lan"}, {"Origin": "http://localhost:3000"},
                    {"Sec-Fetch-Site": "same-origin"}):
        assert client.get("/v1/corpora", headers=headers).status_code == 200, headers


def test_default_roots_refuse_hidden_directories_and_leave_home_usable(keyless):
    _, client, tmp_path = keyless
    r = client.post("/v1/corpora", json={"name": "keys", "directory": "~/.ssh"})
    assert_problem(r, 400, "INVALID_INPUT")
    assert "hidden directory '.ssh'" in r.json()["detail"]
    r = client.post("/v1/corpora", json={"name": "other", "directory": str(tmp_path / "elsewhere")})
    assert_problem(r, 400, "INVALID_INPUT")
    assert "outside the allowed roots" in r.json()["detail"]
    assert client.get("/v1/corpora").json()["count"] == 0
    made = client.post("/v1/corpora", json={"name": "proj", "directory": "~/proj"})
    assert made.status_code == 201, made.text
    assert wait_for_job(client, made.json()["job_id"])["status"] == "succeeded"


# -- defect 4: bounds on every size a request sets, admission ---------------------


def test_request_sizes_are_bounded(live_server):
    c = live_server
    c.post("/v1/corpora", json={"name": "n", "documents": [{"id": "a", "text": "lava " * 400}]})
    assert wait_for_job(c, c.post("/v1/corpora/n/chunkdb").json()["id"])["status"] == "succeeded"
    assert c.post("/v1/corpora/n/neighbors", json={"text": "lava", "k": 2}).status_code == 200
    assert_problem(c.post("/v1/corpora/n/neighbors", json={"token_ids": [5] * 70_000}),
                   422, "VALIDATION_ERROR")
    assert_problem(c.post("/v1/corpora/n/neighbors", json={"text": "a" * 200_001}),
                   422, "VALIDATION_ERROR")
    r = c.post("/v1/corpora/n/neighbors", json={"token_ids": [5] * 64 * 100, "k": 64})
    assert_problem(r, 400, "INVALID_INPUT")  # 100 chunks x 64 > 4,096 rows
    assert "exceed 4096 neighbour rows" in r.json()["detail"]
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    r = c.post("/v1/chat/completions", json={**chat, "max_tokens": 2048})
    assert_problem(r, 422, "VALIDATION_ERROR")
    assert "MEMEX_MAX_CHAT_TOKENS" in r.json()["detail"]
    assert_problem(c.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "x" * 100_001}]}), 422, "VALIDATION_ERROR")
    for field, value in (("steps", 10**9), ("num_samples", 10**7), ("batch_size", 4096),
                         ("p", 10**6), ("chunk_tokens", 10**6), ("seed", -1)):
        r = c.post("/v1/corpora/n/cartridges", json={field: value})
        assert_problem(r, 422, "VALIDATION_ERROR")
        assert field in r.json()["detail"]
    assert c.get("/v1/cartridges").json()["count"] == 0  # nothing was queued


def test_a_corpus_gets_429_beyond_its_share_of_the_job_queue(tmp_path, sample_dir, encoder):
    settings = Settings(home=tmp_path / "home", allowed_roots=[sample_dir.parent],
                        run_jobs=False, max_active_jobs_per_corpus=2)
    with LiveServer(create_app(settings)) as server, \
            httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.post("/v1/corpora", json={"name": "s", "directory": str(sample_dir)}
                      ).status_code == 201  # its sync job is the first of two
        assert c.post("/v1/corpora/s/sync").status_code == 202
        r = c.post("/v1/corpora/s/sync")
        assert_problem(r, 429, "BUSY")
        assert "already has 2 queued or running jobs" in r.json()["detail"]


def test_compute_gate_admits_limit_per_kind_and_refuses_beyond_the_queue():
    """The gate in front of search, neighbours and chat: ``limit`` at once per kind, up to
    ``max_waiting`` queued, 503 beyond; other kinds and other routes pass."""
    release = asyncio.Event()
    running: list[str] = []

    async def app(scope, receive, send):
        running.append(scope["path"])
        if scope["path"] != "/v1/corpora":
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    gate = ComputeGate(app, {"search": 1, "neighbors": 1, "chat": 1}, max_waiting=1)

    async def call(path: str) -> int:
        sent = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        await gate({"type": "http", "path": path, "method": "POST", "headers": []}, receive, send)
        return sent[0]["status"]

    async def scenario() -> list[int]:
        chats = [asyncio.create_task(call("/v1/chat/completions")) for _ in range(3)]
        other = asyncio.create_task(call("/v1/corpora/a/neighbors"))
        await asyncio.sleep(0.1)
        assert running == ["/v1/chat/completions", "/v1/corpora/a/neighbors"]  # one chat runs
        assert await call("/v1/corpora") == 200  # not gated
        release.set()
        return [*await asyncio.gather(*chats), await other]

    statuses = asyncio.run(scenario())
    assert sorted(statuses[:3]) == [200, 200, 503] and statuses[3] == 200
