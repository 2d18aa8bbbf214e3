"""Attacks on a real server: each test fails if the attack works.

Auth bypass (every route of the OpenAPI schema, forged/revoked keys, scope
escapes, path tricks), path escapes through the API (``..``, symlinks, a root
swapped for a symlink after creation), oversized bodies (with Content-Length
and chunked), and the rate limit.
"""

from __future__ import annotations

import re
import socket
import time

import httpx
import pytest

from service.api.keys import KeyStore
from tests.helpers.api import assert_problem, wait_for_job
from tests.helpers.server import LiveServer

SECRET = "zebracorn-7731 the launch code is hunter2"


def _keys(home):
    from indexer.database import make_engine, make_sessionmaker

    home.mkdir(parents=True, exist_ok=True)
    return KeyStore(make_sessionmaker(make_engine(f"sqlite:///{home / 'memex.db'}")))


@pytest.fixture(scope="module")
def secured(tmp_path_factory, encoder):
    from service.api.app import create_app
    from service.settings import Settings

    base = tmp_path_factory.mktemp("secured")
    allowed = base / "allowed"
    (allowed / "proj").mkdir(parents=True)
    (allowed / "proj" / "notes.md").write_text("Ordinary project notes about gardening.\n")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text(SECRET + "\n")
    store = _keys(base / "home")
    tokens = {name: store.create(name, role, corpora)[1] for name, role, corpora in [
        ("admin", "admin", ["*"]), ("reader_a", "read", ["a"]), ("writer_a", "write", ["a"]),
        ("admin_a", "admin", ["a"]), ("revoked", "admin", ["*"])]}
    store.revoke(tokens["revoked"].split("_")[1])
    settings = Settings(home=base / "home", allowed_roots=[allowed], max_request_bytes=20_000,
                        rate_limit_per_minute=0)
    with LiveServer(create_app(settings)) as server:
        admin = httpx.Client(base_url=server.url, timeout=60,
                             headers={"Authorization": f"Bearer {tokens['admin']}"})
        for name in ("a", "b"):
            r = admin.post("/v1/corpora", json={"name": name, "documents": [
                {"id": "d1", "text": f"Corpus {name} talks about volcanoes and lava."}]})
            assert r.status_code == 201, r.text
        yield server, tokens, admin, allowed, outside
        admin.close()


def _as(server, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, timeout=60, headers=headers)


def _routes(client):
    """Every (method, concrete path) of the OpenAPI schema, placeholders filled."""
    schema = client.get("/openapi.json").json()
    for path, ops in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "a", path)
        for method in ops:
            yield method.upper(), concrete


def test_every_api_route_needs_a_valid_key(secured):
    server, tokens, *_ = secured
    bad_tokens = [None, "", "mx_000000000000_" + "A" * 43, "Bearer", tokens["revoked"],
                  tokens["admin"][:-1] + ("B" if tokens["admin"][-1] != "B" else "C"),
                  tokens["admin"] + "x", tokens["admin"].upper()]
    routes = [(m, p) for m, p in _routes(_as(server, None)) if p not in ("/healthz", "/readyz")]
    assert len(routes) >= 10
    for token in bad_tokens:
        with _as(server, token) as c:
            for method, path in routes + [("GET", "/metrics"), ("GET", "/v1/nothing-here")]:
                r = c.request(method, path, json={"name": "x", "query": "q"})
                assert r.status_code == 401, (token, method, path, r.status_code)
                assert r.headers["www-authenticate"].startswith("Bearer")
    with _as(server, None) as c:  # X-API-Key garbage and encoded paths are no way round it
        for path in ("/v1/corpora/%61/search", "//v1/corpora/a/search", "/v1/corpora/a/search/"):
            assert c.post(path, json={"query": "lava"}).status_code == 401, path
        r = c.post("/v1/corpora/a/search", json={"query": "lava"}, headers={"X-API-Key": "nope"})
        assert r.status_code == 401
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200


def test_keys_are_confined_to_their_corpora_and_roles(secured):
    server, tokens, admin, *_ = secured
    search = {"query": "lava", "k": 1}
    with _as(server, tokens["reader_a"]) as c:
        assert c.post("/v1/corpora/a/search", json=search).status_code == 200
        listed = c.get("/v1/corpora").json()
        assert [x["name"] for x in listed["corpora"]] == ["a"] and listed["count"] == 1
        assert c.get("/v1/corpora/a/documents/d1").status_code == 200
        assert_problem(c.post("/v1/corpora/b/search", json=search), 403, "FORBIDDEN")
        assert_problem(c.post("/v1/search", json={"corpora": ["a", "b"], **search}),
                       403, "FORBIDDEN")
        # a duplicate key in the JSON body must not smuggle in another corpus
        smuggle = b'{"corpora": ["a"], "corpora": ["b"], "query": "lava"}'
        assert c.post("/v1/search", content=smuggle,
                      headers={"content-type": "application/json"}).status_code == 403
        assert_problem(c.put("/v1/corpora/a/documents/x", json={"text": "t"}), 403, "FORBIDDEN")
        assert_problem(c.post("/v1/corpora", json={"name": "c", "documents": [
            {"id": "1", "text": "t"}]}), 403, "FORBIDDEN")
        assert c.get("/metrics").status_code == 403
    with _as(server, tokens["writer_a"]) as c:
        assert c.put("/v1/corpora/a/documents/x", json={"text": "Basalt."}).status_code == 200
        assert c.put("/v1/corpora/b/documents/x", json={"text": "Basalt."}).status_code == 403
        assert_problem(c.delete("/v1/corpora/a"), 403, "FORBIDDEN")
    with _as(server, tokens["admin_a"]) as c:
        assert c.delete("/v1/corpora/b").status_code == 403
        assert c.post("/v1/corpora", json={"name": "z"}).status_code == 403
    assert admin.get("/v1/corpora/b").status_code == 200  # nothing above touched b


def test_revoked_key_stops_working(secured):
    server, tokens, admin, *_ = secured
    store = _keys(server.server.config.app.state.settings.home)
    _, token = store.create("temp", "read", ["*"])
    with _as(server, token) as c:
        assert c.get("/v1/corpora").status_code == 200
        store.revoke(token.split("_")[1])
        time.sleep(2.2)  # the verified-key cache lives 2 s
        assert c.get("/v1/corpora").status_code == 401


def test_path_escapes_through_the_api_are_refused(secured):
    server, tokens, admin, allowed, outside = secured
    attempts = [str(allowed / ".." / "outside"), str(allowed / "proj" / ".." / ".." / "outside"),
                str(outside), "/etc", "~", "/"]
    (allowed / "link-out").symlink_to(outside, target_is_directory=True)
    attempts.append(str(allowed / "link-out"))
    for i, directory in enumerate(attempts):
        body = assert_problem(admin.post("/v1/corpora", json={"name": f"esc{i}",
                                                               "directory": directory}),
                              400, "INVALID_INPUT")
        assert "allowed roots" in body["detail"], directory
        assert admin.get(f"/v1/corpora/esc{i}").status_code == 404
    # Links inside an allowed directory that point outside are not followed by a sync.
    proj = allowed / "proj"
    (proj / "secret-link.md").symlink_to(outside / "secret.md")
    (proj / "dir-link").symlink_to(outside, target_is_directory=True)
    r = admin.post("/v1/corpora", json={"name": "proj", "directory": str(proj)})
    assert r.status_code == 201, r.text
    job = wait_for_job(admin, r.json()["job_id"])
    assert job["status"] == "succeeded" and job["result"]["added"] == ["notes.md"]
    assert job["result"]["skipped"]["secret-link.md"] == "symlink leaves the root"
    # A root swapped for a link to the outside after creation: the sync refuses it.
    proj.rename(allowed / "proj-moved")
    proj.symlink_to(outside, target_is_directory=True)
    job = wait_for_job(admin, admin.post("/v1/corpora/proj/sync").json()["id"])
    assert job["status"] == "failed" and "allowed roots" in job["error"]
    hits = admin.post("/v1/corpora/proj/search", json={"query": "launch code hunter2",
                                                       "k": 10}).json()["results"][0]["hits"]
    assert hits and all("hunter2" not in h["text"] for h in hits)
    docs = admin.get("/v1/corpora/proj/documents").json()["documents"]
    assert [d["id"] for d in docs] == ["notes.md"]


def _raw(port, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_oversized_bodies_are_refused(secured):
    server, tokens, admin, *_ = secured
    big = {"documents": [{"id": "big", "text": "lava " * 10_000}]}
    assert_problem(admin.post("/v1/corpora/a/documents", json=big), 413, "PAYLOAD_TOO_LARGE")

    def chunks(n):
        yield b'{"documents": [{"id": "big", "text": "'
        for _ in range(n):
            yield b"lava " * 200
        yield b'"}]}'

    r = admin.post("/v1/corpora/a/documents", content=chunks(100),
                   headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers  # really sent chunked
    assert_problem(r, 413, "PAYLOAD_TOO_LARGE")
    ok = admin.post("/v1/corpora/a/documents", content=chunks(2),
                    headers={"content-type": "application/json"})
    assert ok.status_code == 200, ok.text  # a small chunked body passes
    # A lying Content-Length is refused before the body is read.
    answer = _raw(server.port, b"POST /v1/corpora/a/documents HTTP/1.1\r\nHost: localhost\r\n"
                  b"Authorization: Bearer " + tokens["admin"].encode() +
                  b"\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    stored = admin.get("/v1/corpora/a/documents/big").json()
    assert stored["chars"] == len("lava " * 200) * 2  # only the small body ever got in


def test_rate_limit_answers_429_with_retry_after(tmp_path, encoder):
    from service.api.app import create_app
    from service.settings import Settings

    home = tmp_path / "home"
    store = _keys(home)
    _, one = store.create("one", "read", ["*"])
    _, two = store.create("two", "read", ["*"])
    settings = Settings(home=home, rate_limit_per_minute=30, rate_limit_burst=3)
    with LiveServer(create_app(settings)) as server:
        with _as(server, one) as c1, _as(server, two) as c2:
            codes = [c1.get("/v1/corpora").status_code for _ in range(4)]
            assert codes == [200, 200, 200, 429]
            r = c1.get("/v1/corpora")
            body = assert_problem(r, 429, "RATE_LIMITED")
            assert 1 <= int(r.headers["retry-after"]) <= 2 and body["details"]["retry_after"]
            assert c2.get("/v1/corpora").status_code == 200  # per key, not global
            time.sleep(int(r.headers["retry-after"]))
            assert c1.get("/v1/corpora").status_code == 200
