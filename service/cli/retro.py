"""``memex neighbors`` and ``memex retro ...``: RETRO chunk neighbours from the command line."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from indexer.errors import MemexError
from service.cli.common import SERVER, fail, local_corpora

retro_app = typer.Typer(help="RETRO chunk DBs: build, precompute neighbours for training.",
                        no_args_is_help=True)


def neighbors(text: str = typer.Argument(..., help="input text; every 64-token chunk is answered"),
              corpus: str = typer.Option(..., "--corpus", "-c", help="corpus name"),
              k: int = typer.Option(2, "-k", help="neighbours per chunk"),
              continuation: bool = typer.Option(True, help="show each neighbour's continuation"),
              exclude: list[str] | None = typer.Option(None, "--exclude",
                                                          help="document id to skip (repeatable)"),
              as_json: bool = typer.Option(False, "--json", help="print JSON"),
              server: str | None = SERVER) -> None:
    """Print the nearest corpus chunks of every chunk of TEXT."""
    try:
        if server:
            from service.cli import remote as cli_remote

            found = [{"tokens": c["tokens"], "neighbors": c["neighbors"]} for c in
                     cli_remote.neighbors(server, corpus, text, k, continuation, exclude or [])]
        else:
            from indexer.retro.sync import ChunkDBs

            found = [asdict(r) for r in ChunkDBs(local_corpora()).get(corpus).neighbors(
                text=text, k=k, continuation=continuation, exclude_document_ids=exclude or ())]
    except MemexError as exc:
        fail(exc.message)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    for i, r in enumerate(found):
        typer.secho(f"chunk {i} ({len(r['tokens'])} tokens)", bold=True)
        for n in r["neighbors"]:
            typer.secho(f"  {n['path'] or n['document_id']} #{n['chunk_id']}  distance "
                        f"{n['distance']:.3f}", fg=typer.colors.CYAN)
            for line in n["text"].splitlines()[:6]:
                typer.echo(f"    {line}")


@retro_app.command()
def build(corpus: str = typer.Option(..., "--corpus", "-c", help="corpus name"),
          server: str | None = SERVER) -> None:
    """Build or repair the chunk DB of CORPUS (only changed documents are embedded)."""
    from indexer.retro.sync import reconcile

    try:
        if server:
            from service.cli.remote import retro_build

            done = retro_build(server, corpus)
            typer.echo(f"{corpus}: chunk DB of {done['chunks']} chunks, "
                       f"{done['bytes'] / 1e6:.1f} MB on the server")
            return
        db = reconcile(local_corpora(), corpus)
    except MemexError as exc:
        fail(exc.message)
    typer.echo(f"{corpus}: chunk DB version {db.meta['version']}, {len(db.docs)} documents, "
               f"{db.num_chunks} chunks, {db.nbytes() / 1e6:.1f} MB")


@retro_app.command()
def precompute(corpus: str = typer.Option(..., "--corpus", "-c", help="corpus name"),
               out: Path = typer.Option(..., "--out", help="output directory"),
               k: int = typer.Option(2, "-k", help="neighbours per chunk")) -> None:
    """Write every chunk's k neighbours from other documents (neighbors.npy, FORMAT.md)."""
    from indexer.retro.sync import ChunkDBs

    try:
        db = ChunkDBs(local_corpora()).get(corpus)
        db.precompute(out, k=k)
    except MemexError as exc:
        fail(exc.message)
    typer.echo(f"{corpus}: neighbours of {db.num_chunks} chunks (k={k}) written to {out}")
