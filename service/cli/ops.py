"""CLI parts for operators: ``memex keys ...``, ``memex worker``, and ``--server`` mode,
where index and search go through the REST API (``service.client``) instead of
opening the data directory."""

from __future__ import annotations

import json
import sys
import time

import typer

from indexer.errors import MemexError

keys_app = typer.Typer(help="API keys: create, list, revoke (stored hashed).",
                       no_args_is_help=True)


def _store():
    from indexer.database import make_engine, make_sessionmaker
    from service.api.keys import KeyStore
    from service.settings import get_settings

    return KeyStore(make_sessionmaker(make_engine(get_settings().db_url)))


@keys_app.command("create")
def keys_create(name: str = typer.Option(..., "--name", help="who or what holds the key"),
                role: str = typer.Option("read", "--role", help="read | write | admin"),
                corpus: list[str] = typer.Option(["*"], "--corpus", "-c",
                                                 help="corpus it may use (repeatable; * = all)"),
                ) -> None:
    """Create a key and print it ONCE: only its hash is stored."""
    try:
        row, token = _store().create(name, role, corpus)
    except MemexError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(token)
    typer.echo(f"key {row.id} ({row.role} on {', '.join(row.corpora)}); store it now, "
               "it cannot be shown again", err=True)


@keys_app.command("ls")
def keys_ls(all_: bool = typer.Option(False, "--all", help="include revoked keys"),
            as_json: bool = typer.Option(False, "--json")) -> None:
    """List keys (ids, names, scopes; never the secrets)."""
    rows = _store().list(include_revoked=all_)
    items = [{"id": r.id, "name": r.name, "role": r.role, "corpora": r.corpora,
              "created_at": r.created_at.isoformat(),
              "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None} for r in rows]
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    for i in items:
        state = f"revoked {i['revoked_at'][:19]}" if i["revoked_at"] else "active"
        typer.echo(f"{i['id']}  {i['role']:<6} {','.join(i['corpora']):<24} {i['name']:<20} {state}")


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="the id `memex keys ls` shows")) -> None:
    """Revoke a key; servers stop accepting it within 2 seconds."""
    try:
        _store().revoke(key_id)
    except MemexError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(f"revoked {key_id}")


def worker(poll: float = typer.Option(2.0, help="seconds between queue checks")) -> None:
    """Run background jobs (syncs, trainings) for servers started with MEMEX_RUN_JOBS=false."""
    from service.runtime import start
    from service.settings import get_settings

    runner = start(get_settings(), run_jobs=True).jobs
    typer.echo("worker: waiting for jobs (Ctrl-C to stop)", err=True)
    try:
        while runner.running:
            time.sleep(poll)
    except KeyboardInterrupt:
        runner.stop()
        return
    health = runner.health()
    typer.secho(f"worker: the job runner stopped ({health['state']}): {health['error']}",
                fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def remote_client(server: str):
    from service.client import Client
    from service.settings import get_settings

    return Client(server, api_key=get_settings().api_key, timeout=120)


def remote_index(server: str, directory: str, name: str) -> dict:
    """Create (or re-sync) a directory corpus on the server and wait for the job; the
    directory must be visible to the server under the same path."""
    from service.client import NotFoundError

    with remote_client(server) as c:
        try:
            c.get_corpus(name)
            job = c.sync(name)
        except NotFoundError:
            job = {"id": c.create_corpus(name, directory=directory)["job_id"]}
        done = c.wait_for_job(job["id"])
    if done["status"] != "succeeded":
        raise MemexError(f"sync job {done['id']} {done['status']}: {done['error']}")
    return done["result"]


def remote_search(server: str, query: str, corpora: list[str] | None, k: int,
                  path_glob: str | None, mode: str | None = None,
                  max_tokens: int | None = None) -> list[dict] | dict:
    """The hits, or with ``max_tokens`` the result's ``spans`` and ``packing``."""
    with remote_client(server) as c:
        names = corpora or [i["name"] for i in c.list_corpora()["corpora"]]
        if not names:
            print("error: no corpus on the server yet", file=sys.stderr)
            raise typer.Exit(2)
        result = c.search_many(names, query, k, path_glob, mode, max_tokens)["results"][0]
        return result["hits"] if max_tokens is None else {
            "spans": result["spans"], "packing": result["packing"]}
