"""memex as Model Context Protocol tools, for coding agents that discover tools over MCP.

Every tool is one or two calls of the REST API through ``service.client.AsyncClient``,
so an MCP call gets exactly REST's behaviour, limits and error messages, whatever the
transport:

- ``memex mcp`` (stdio) on the local data directory: the app runs in this process and
  the client reaches it in memory (no port), without API keys, like every local command;
- ``memex mcp --server URL``: the client talks to that server with ``MEMEX_API_KEY``;
- ``/mcp`` on the server (streamable HTTP): each tool call re-enters the app in memory
  with the caller's own API key, so the same auth, per-corpus roles and rate limits
  apply as to REST (a read key cannot call ``index_directory``).

A REST error becomes an MCP tool error (``is_error``) carrying REST's message.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from indexer.packing import span_header
from service.client import APIError, AsyncClient

Connect = Callable[[Context], AbstractAsyncContextManager[AsyncClient]]
READ = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
INSTRUCTIONS = (
    "memex searches indexed code and documents by meaning (ColBERT + BM25). Start with "
    "list_corpora, then search; read_document fetches more lines around a hit.")


def build(connect: Connect, lifespan: Callable | None = None) -> MCPServer:
    """The tools, each reaching memex through ``connect(ctx)``."""
    server = MCPServer("memex", instructions=INSTRUCTIONS, lifespan=lifespan)

    async def call(ctx: Context, method: str, *args: Any, **kwargs: Any) -> Any:
        async with _tool_errors(), connect(ctx) as client:
            return await getattr(client, method)(*args, **kwargs)

    @server.tool(annotations=READ, structured_output=False)
    async def list_corpora(ctx: Context) -> str:
        """List the searchable corpora: name, kind (directory or documents), root, size."""
        found = await call(ctx, "list_corpora")
        return _json([{k: c[k] for k in ("name", "kind", "root", "documents", "passages",
                                         "version", "updated_at")} for c in found["corpora"]])

    @server.tool(annotations=READ, structured_output=False)
    async def search(
        ctx: Context,
        query: Annotated[str, Field(min_length=1, max_length=4096,
                                    description="what to find, in words or code")],
        corpora: Annotated[list[str] | None, Field(
            description="corpus names; default all corpora")] = None,
        k: Annotated[int, Field(ge=1, description="hits to consider")] = 10,
        path_glob: Annotated[str | None, Field(
            description="only paths matching this fnmatch pattern, e.g. 'src/*.py'")] = None,
        mode: Annotated[Literal["hybrid", "colbert", "bm25"] | None, Field(
            description="hybrid (default), colbert (meaning) or bm25 (exact words)")] = None,
        max_tokens: Annotated[int | None, Field(ge=1, le=1_000_000, description=(
            "merge overlapping hits of a file into whole spans and return the best spans "
            "within this many tokens; null returns the k raw windows"))] = 2000,
    ) -> str:
        """Search code and documents by meaning. Returns `path:start-end` spans with their
        text, best first; read_document gives more lines of a hit."""
        names = corpora or [c["name"] for c in (await call(ctx, "list_corpora"))["corpora"]]
        if not names:
            raise ToolError("no corpus yet: index a directory first (index_directory)")
        found = await call(ctx, "search_many", names, query, k, path_glob, mode, max_tokens)
        return _format_result(found["results"][0])

    @server.tool(annotations=READ, structured_output=False)
    async def read_document(
        ctx: Context,
        corpus: Annotated[str, Field(description="the corpus of the document")],
        document_id: Annotated[str, Field(description="a hit's document_id (a path for "
                                          "directory corpora)")],
        start_line: Annotated[int, Field(ge=1, description="first line, 1-based")] = 1,
        end_line: Annotated[int | None, Field(ge=1, description="last line, inclusive; "
                                              "default the end")] = None,
    ) -> str:
        """Read a document, or lines start_line..end_line of it, with line numbers."""
        doc = await call(ctx, "get_document", corpus, document_id)
        lines = doc["text"].splitlines()
        end = len(lines) if end_line is None else min(end_line, len(lines))
        if start_line > max(len(lines), 1) or end < start_line:
            raise ToolError(f"lines {start_line}-{end_line} are outside {document_id!r}, "
                            f"which has {len(lines)} lines")
        width = len(str(end))
        body = "\n".join(f"{n:>{width}}  {lines[n - 1]}" for n in range(start_line, end + 1))
        return f"{span_header(doc['path'] or document_id, start_line, end)} of {len(lines)}" \
               f" lines\n{body}"

    @server.tool(annotations=READ, structured_output=False)
    async def neighbors(
        ctx: Context,
        corpus: Annotated[str, Field(description="a corpus with a RETRO chunk DB")],
        text: Annotated[str, Field(min_length=1, description="text to find neighbours of")],
        k: Annotated[int, Field(ge=1, description="neighbours per chunk")] = 2,
    ) -> str:
        """RETRO neighbours: for each chunk of the text, the corpus chunks nearest to it
        (needs the corpus's chunk DB, built by `memex retro build`)."""
        found = await call(ctx, "neighbors", corpus, text, k)
        return _json([{"chunk": c["chunk"], "neighbors": [
            {"document_id": n["document_id"], "path": n["path"], "distance": n["distance"],
             "text": n["text"]} for n in c["neighbors"]]} for c in found["chunks"]])

    @server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False,
                                             idempotentHint=True), structured_output=False)
    async def index_directory(
        ctx: Context,
        directory: Annotated[str, Field(description="absolute path on the memex machine")],
        name: Annotated[str, Field(min_length=1, max_length=64,
                                   pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                                   description="corpus name")],
    ) -> str:
        """Index a directory as corpus `name`, or re-sync it if it exists (only changed
        files are re-read). Runs as a job: poll job_status with the returned id."""
        async with _tool_errors(), connect(ctx) as client:
            try:
                root = (await client.get_corpus(name))["root"]
            except APIError as exc:
                if exc.code != "NOT_FOUND":
                    raise
                created = await client.create_corpus(name, directory=directory)
                return _json(_job(await client.job(created["job_id"])))
            if root != str(Path(directory).resolve()):
                raise ToolError(f"corpus {name!r} indexes {root or 'documents'}; choose "
                                "another name")
            job = await client.sync(name)
        return _json(_job(job))

    @server.tool(annotations=READ, structured_output=False)
    async def job_status(
        ctx: Context, job_id: Annotated[str, Field(min_length=1, description="a job id")],
    ) -> str:
        """State of a background job (index, sync, training): status, stage, progress."""
        return _json(_job(await call(ctx, "job", job_id)))

    @server.tool(annotations=READ, structured_output=False)
    async def list_cartridges(
        ctx: Context,
        corpus: Annotated[str | None, Field(description="only this corpus's")] = None,
    ) -> str:
        """List trained KV-cache cartridges (compressed corpora for chat): id, corpus,
        status, whether stale."""
        found = await call(ctx, "list_cartridges", corpus)
        return _json([{k: c[k] for k in ("id", "corpus_id", "status", "stale", "model", "p",
                                         "created_at")} for c in found["cartridges"]])

    return server


@asynccontextmanager
async def _tool_errors() -> AsyncIterator[None]:
    """REST's problem (its ``detail`` and ``code``) as the MCP tool error the model reads."""
    try:
        yield
    except APIError as exc:
        raise ToolError(f"{exc.message} ({exc.code})") from None
    except httpx.HTTPError as exc:
        raise ToolError(f"cannot reach the memex server: {exc}") from None


def _json(value: Any) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False)


def _job(job: dict) -> dict:
    return {k: job[k] for k in ("id", "kind", "corpus", "status", "stage", "done", "total",
                                "error", "result")}


def _format_result(result: dict) -> str:
    """Hits or packed spans as ``path:start-end`` headers over fenced text."""
    blocks = []
    for s in result.get("spans", result.get("hits", [])):
        where = span_header(s["path"] or s["document_id"], s["start_line"], s["end_line"])
        blocks.append(f"## {where}  (corpus {s['corpus']}, document_id {s['document_id']}, "
                      f"score {s['score']:.2f})\n```\n{s['text'].rstrip(chr(10))}\n```")
    if not blocks:
        blocks.append("no match")
    packing = result.get("packing")
    if packing:
        cut = ", ".join(span_header(c["path"] or c["document_id"], c["start_line"],
                                    c["end_line"]) for c in packing["cut"])
        blocks.append(f"[{packing['tokens_used']} of {packing['max_tokens']} tokens "
                      f"({packing['tokenizer']})" + (f"; cut for the budget: {cut}]" if cut
                                                     else "]"))
    return "\n\n".join(blocks)


# -- the three ways in -------------------------------------------------------------------

def mount(app, host: str) -> MCPServer:
    """Serve the tools at ``/mcp`` of ``app`` (streamable HTTP, stateless, JSON answers).

    On a loopback ``host`` the SDK's DNS-rebinding guard checks Host and Origin. The
    caller's key (already checked by the app's auth for ``/mcp``) goes with every inner
    REST call. ``app``'s lifespan must run ``server.session_manager.run()``.
    """
    from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
    from starlette.routing import Route

    def connect(ctx: Context) -> AbstractAsyncContextManager[AsyncClient]:
        request = ctx.request_context.request
        headers = {k: request.headers[k] for k in ("authorization", "x-api-key")
                   if request is not None and k in request.headers}
        client = AsyncClient("http://localhost", transport=httpx.ASGITransport(app))
        client.http.headers.update(headers)
        return _closing(client)

    server = build(connect)
    server.streamable_http_app(stateless_http=True, json_response=True, host=host)
    app.router.routes.append(Route("/mcp", StreamableHTTPASGIApp(server.session_manager)))
    return server


@asynccontextmanager
async def _closing(client: AsyncClient) -> AsyncIterator[AsyncClient]:
    try:
        yield client
    finally:
        await client.aclose()


def serve_stdio(server_url: str | None, api_key: str | None) -> None:
    """``memex mcp``: the tools over stdin/stdout, on ``server_url`` or the data directory."""
    import anyio

    holder: dict[str, AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        if server_url:
            async with AsyncClient(server_url, api_key=api_key, timeout=120) as client:
                holder["client"] = client
                yield
            return
        app = _local_app()
        async with app.router.lifespan_context(app):
            async with AsyncClient("http://localhost", transport=httpx.ASGITransport(app),
                                   timeout=None) as client:
                holder["client"] = client
                yield

    server = build(lambda ctx: nullcontext(holder["client"]), lifespan)
    anyio.run(server.run_stdio_async)


def _local_app():
    """The server app on the local data directory, minus API-key checks and the API's
    default directory roots: whoever runs a local command already holds the data
    directory and may index what they could index with ``memex index``."""
    from pathlib import Path

    from service.api.app import create_app
    from service.api.auth import Authenticate, Authorize
    from service.settings import get_settings

    settings = get_settings()
    app = create_app(settings.model_copy(update={"allowed_roots": settings.allowed_roots or [Path("/")]}))
    app.user_middleware = [m for m in app.user_middleware if m.cls not in (Authenticate, Authorize)]
    return app
