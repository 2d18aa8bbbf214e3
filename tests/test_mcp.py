"""The MCP server through the SDK's own client: over HTTP against a real uvicorn (with API
keys and roles), and over stdio against a spawned ``memex mcp``."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.conftest import LiveServer
from tests.test_api import wait_for_job

TOOLS = {"list_corpora", "search", "read_document", "neighbors", "index_directory",
         "job_status", "list_cartridges"}
ROOT = Path(__file__).resolve().parents[1]


def text(result) -> str:
    return "\n".join(c.text for c in result.content)


def http_client(url: str, key: str) -> Client:
    headers = {"Authorization": f"Bearer {key}"}
    transport = streamable_http_client(f"{url}/mcp",
                                       http_client=create_mcp_http_client(headers=headers))
    return Client(transport)


@pytest.fixture
def keyed_server(tmp_path: Path, sample_dir: Path):
    """A live server with an indexed corpus ``src`` and admin, write and read keys."""
    from service.api.app import create_app
    from service.api.keys import KeyStore
    from service.settings import Settings

    app = create_app(Settings(home=tmp_path / "server-home", allowed_roots=[sample_dir.parent]))
    with LiveServer(app) as server:
        store = KeyStore(app.state.corpora.sessions)
        keys = {role: store.create(role, role, ["*"])[1] for role in ("admin", "write", "read")}
        with httpx.Client(base_url=server.url, timeout=60,
                          headers={"Authorization": f"Bearer {keys['admin']}"}) as admin:
            job = admin.post("/v1/corpora", json={"name": "src", "directory": str(sample_dir)})
            assert wait_for_job(admin, job.json()["job_id"])["status"] == "succeeded"
            yield server.url, keys


def test_http_tools_search_read_and_roles(keyed_server, sample_dir):
    url, keys = keyed_server
    rest_forbidden = httpx.post(f"{url}/v1/corpora/src/sync",
                                headers={"Authorization": f"Bearer {keys['read']}"})
    rest_missing = httpx.post(f"{url}/v1/corpora/nope/search", json={"query": "x"},
                              headers={"Authorization": f"Bearer {keys['read']}"})
    assert rest_forbidden.status_code == 403 and rest_missing.status_code == 404
    assert httpx.post(f"{url}/mcp", json={}).status_code == 401  # no key, no MCP

    async def as_reader() -> None:
        async with http_client(url, keys["read"]) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == TOOLS
            schema = tools["search"].input_schema
            assert schema["required"] == ["query"] and "max_tokens" in schema["properties"]
            assert tools["search"].description and tools["read_document"].description

            found = await client.call_tool("search", {"query": "area of a circle",
                                                      "corpora": ["src"]})
            assert not found.is_error and "## math/geometry.py:1-3" in text(found)
            assert "tokens (BertTokenizer" in text(found)  # packed by default, tokenizer named
            lines = await client.call_tool("read_document", {
                "corpus": "src", "document_id": "math/geometry.py", "start_line": 2,
                "end_line": 3})
            assert text(lines).splitlines()[1:] == ['2      """Area of a circle."""',
                                                    "3      return 3.14159 * radius * radius"]
            assert "src" in text(await client.call_tool("list_corpora", {}))

            denied = await client.call_tool("index_directory", {
                "directory": str(sample_dir), "name": "src"})
            assert denied.is_error and rest_forbidden.json()["detail"] in text(denied)
            missing = await client.call_tool("search", {"query": "x", "corpora": ["nope"]})
            assert missing.is_error and rest_missing.json()["detail"] in text(missing)
            for bad in ({"query": "x", "k": 0}, {"corpora": ["src"]}, {"query": 3}):
                result = await client.call_tool("search", bad)
                assert result.is_error and "Traceback" not in text(result)
            assert text(await client.call_tool("list_cartridges", {})) == "[]"
            no_db = await client.call_tool("neighbors", {"corpus": "src", "text": "circle"})
            assert no_db.is_error and "NOT_FOUND" in text(no_db)
            past_end = await client.call_tool("read_document", {
                "corpus": "src", "document_id": "math/geometry.py", "start_line": 40})
            assert past_end.is_error and "has 3 lines" in text(past_end)

    async def as_writer() -> None:
        async with http_client(url, keys["write"]) as client:
            elsewhere = await client.call_tool("index_directory", {"directory": "/tmp",
                                                                   "name": "src"})
            assert elsewhere.is_error and "choose another name" in text(elsewhere)
            started = await client.call_tool("index_directory", {
                "directory": str(sample_dir), "name": "src"})
            assert not started.is_error, text(started)
            job_id = json.loads(text(started))["id"]
            for _ in range(600):
                status = await client.call_tool("job_status", {"job_id": job_id})
                if '"succeeded"' in text(status):
                    break
                await anyio.sleep(0.2)
            assert '"unchanged": 3' in text(status)

    async def neighbours_after_the_chunk_db_is_built() -> None:
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {keys['admin']}"}) as admin:
            job = admin.post("/v1/corpora/src/chunkdb").json()["id"]
            assert wait_for_job(admin, job)["status"] == "succeeded"
        async with http_client(url, keys["read"]) as client:
            found = await client.call_tool("neighbors", {"corpus": "src", "k": 1,
                                                         "text": "area of a circle radius"})
            assert json.loads(text(found))[0]["neighbors"][0]["path"] == "math/geometry.py"

    anyio.run(as_reader)
    anyio.run(as_writer)
    anyio.run(neighbours_after_the_chunk_db_is_built)


def test_stdio_memex_mcp_on_the_local_data_directory(tmp_path, corpora, sample_dir):
    corpora.create("src", root=str(sample_dir))
    corpora.sync("src")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "tea.md").write_text("Steep green tea at 80 degrees for two minutes.\n")
    env = {**os.environ, "MEMEX_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    params = StdioServerParameters(command=sys.executable, args=["-m", "service.cli", "mcp"],
                                   env=env, cwd=str(tmp_path))

    async def session() -> None:
        async with Client(params, read_timeout_seconds=300) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            found = await client.call_tool("search", {"query": "open a TCP connection",
                                                      "k": 3, "max_tokens": None})
            assert not found.is_error and "## net/http_client.py:1-7" in text(found)
            lines = await client.call_tool("read_document", {
                "corpus": "src", "document_id": "net/http_client.py", "start_line": 3,
                "end_line": 3})
            assert text(lines).endswith("3  def fetch_url(url, timeout=10):")
            bad = await client.call_tool("search", {"query": "x", "mode": "fuzzy"})
            assert bad.is_error and "Traceback" not in text(bad)
            missing = await client.call_tool("job_status", {"job_id": "nope"})
            assert missing.is_error and "NOT_FOUND" in text(missing)

            started = await client.call_tool("index_directory", {"directory": str(other),
                                                                 "name": "notes"})
            job_id = json.loads(text(started))["id"]
            deadline = time.monotonic() + 300
            while '"succeeded"' not in text(await client.call_tool("job_status",
                                                                   {"job_id": job_id})):
                assert time.monotonic() < deadline
                await anyio.sleep(0.2)
            tea = await client.call_tool("search", {"query": "green tea", "corpora": ["notes"]})
            assert "## tea.md:1-1" in text(tea)

    anyio.run(session)


def test_stdio_memex_mcp_proxies_a_server_with_the_env_key(keyed_server, sample_dir, tmp_path):
    url, keys = keyed_server
    env = {**os.environ, "MEMEX_HOME": str(tmp_path / "unused-home"),
           "MEMEX_API_KEY": keys["read"],
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "service.cli", "mcp", "--server", url], env=env)

    async def session() -> None:
        async with Client(params, read_timeout_seconds=120) as client:
            found = await client.call_tool("search", {"query": "bread dough"})
            assert not found.is_error and "## docs/cooking.md:1-3" in text(found)
            denied = await client.call_tool("index_directory", {
                "directory": str(sample_dir), "name": "src"})
            assert denied.is_error and "lacks write access to corpus 'src'" in text(denied)

    anyio.run(session)
    assert not (tmp_path / "unused-home").exists()  # a proxy opens no data directory
