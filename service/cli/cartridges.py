"""``memex cartridge train|ls|pull|rm`` and ``memex chat``: cartridges on the local data directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer

from indexer.errors import MemexError
from service.cli.common import SERVER, StageBar, fail, local_corpora, stop_on_signal

app = typer.Typer(help="Train, list and download cartridges (trained KV caches of a corpus).",
                  no_args_is_help=True)


def _store():
    from service.runtime import cartridge_store
    from service.settings import get_settings

    return cartridge_store(get_settings())


@app.command()
def train(corpus: str = typer.Argument(..., help="corpus name"),
          budget: str | None = typer.Option(
              None, "--budget", help="wall-clock budget, e.g. 20m, 90s, 1h: a measured probe plans "
                                     "conversations and steps (the default without --steps/--samples)"),
          tokens: int | None = typer.Option(None, "--tokens", "-p",
                                            help="cartridge length p (default 256, less for a short corpus)"),
          steps: int | None = typer.Option(None, "--steps", help="training steps (expert; no budget)"),
          samples: int | None = typer.Option(None, "--samples",
                                             help="self-study conversations (expert; no budget)"),
          resume: str | None = typer.Option(None, "--resume", help="continue this cartridge id"),
          server: str | None = SERVER) -> None:
    """Train in the foreground (Ctrl-C stops; --resume ID continues from the last checkpoint)."""
    from cartridges.budget import parse_duration

    try:
        seconds = parse_duration(budget) if budget is not None else None
    except ValueError as exc:
        return fail(str(exc))
    given = {"p": tokens, "steps": steps, "num_samples": samples, "budget_seconds": seconds}
    if server:
        return _train_remote(server, corpus, given, resume)
    try:
        store, corpora = _store(), local_corpora()
        if resume:
            info = store.info(resume)
            if info["status"] == "ready":
                typer.echo(f"cartridge {resume} is already trained (ready); nothing to resume")
                return
        else:
            config = _config(given)
            found = corpora.info(corpus)
            info = store.create(corpus, found.version, config, found.created_at)
            typer.echo(f"cartridge {info['id']}")
        done = _run(store, corpora, info)
        _report(done)
    except MemexError as exc:
        fail(exc.message)


def _config(given: dict):
    """Explicit knobs as given; with neither a budget nor steps/samples, the default budget."""
    from cartridges.budget import DEFAULT_BUDGET_S
    from cartridges.config import CartridgeConfig

    chosen = {k: v for k, v in given.items() if v is not None}
    if not {"budget_seconds", "steps", "num_samples"} & chosen.keys():
        chosen["budget_seconds"] = DEFAULT_BUDGET_S
    return CartridgeConfig(**chosen)


def _report(info: dict) -> None:
    from cartridges.gain import verdict

    t = info["training"] or {}
    typer.echo(f"ready: {info['id']}, {info['bytes']} bytes, {t.get('steps')} steps in "
               f"{t.get('wall_seconds')} s, held-out loss {t.get('heldout_loss_init')} -> "
               f"{t.get('heldout_loss_final')}")
    line = verdict(t)
    if line:
        typer.echo(line, err="WARNING" in line)


def _run(store, corpora, info: dict) -> dict:
    """Train and publish ``info``'s cartridge in the foreground with progress bars."""
    from service.jobs.cartridge_handlers import run_training

    cid = info["id"]
    bar = StageBar(unit="it")  # synthesis counts conversations, training steps

    def planned(plan) -> None:
        bar.close()
        typer.echo(plan.describe(), err=True)

    done = None
    try:
        with stop_on_signal("at the next conversation batch or step") as stop:
            done = run_training(store, corpora, cid, bar, should_stop=stop.is_set,
                                on_plan=planned)
    except KeyboardInterrupt:  # a second Ctrl-C: run_training has marked it cancelled
        pass
    finally:
        bar.close()
    if done is not None and done["status"] != "cancelled":
        return done
    typer.echo(f"stopped; continue with: memex cartridge train {info['corpus_id']} --resume {cid}",
               err=True)
    raise typer.Exit(130)


def _train_remote(server: str, corpus: str, given: dict, resume: str | None) -> None:
    from service.cli.remote import cartridge_train

    if resume:
        fail("--resume continues a local run; a server resumes its own jobs")
    try:
        done = cartridge_train(server, corpus, {k: v for k, v in given.items() if v is not None})
    except MemexError as exc:
        fail(exc.message)
    _report(done)


@app.command("ls")
def list_cartridges(corpus: str | None = typer.Option(None, "--corpus", "-c"),
                    as_json: bool = typer.Option(False, "--json"),
                    server: str | None = SERVER) -> None:
    """Cartridges with status, model, p, size and whether their corpus changed since (stale)."""
    if server:
        from service.cli.remote import cartridge_list

        try:
            return _print_cartridges(cartridge_list(server, corpus), as_json)
        except MemexError as exc:
            fail(exc.message)
    from cartridges.store import is_stale

    corpora = local_corpora()
    infos = _store().list(corpus)
    for info in infos:
        try:
            found = corpora.info(info["corpus_id"])
            info["stale"] = is_stale(info, found.version, found.created_at)
        except MemexError:
            info["stale"] = True
    _print_cartridges(infos, as_json)


def _print_cartridges(infos: list[dict], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(infos, indent=2))
        return
    for i in infos:
        t = i.get("training") or {}
        gain = t.get("gain_over_init")
        noise = " (noise)" if gain is not None and t.get("gain_within_noise") else ""
        typer.echo(f"{i['id']}  {i['status']:<9} {i['corpus_id']:<20} v{i['corpus_version']:<3} "
                   f"p={i['p'] or '?':<5} {i['bytes'] or 0:>10} B  loss={t.get('heldout_loss_final')}  "
                   f"gain={gain}{noise}  {'STALE' if i['stale'] else ''}")


@app.command()
def pull(cartridge_id: str = typer.Argument(...),
         output: Path = typer.Option(..., "-o", "--output", help="where to write the .safetensors file"),
         server: str | None = SERVER) -> None:
    """Copy a ready cartridge's file (load it with cartridges.inference.load_cartridge); from a
    server it streams with a progress bar and the file's checksum is verified."""
    try:
        if server:
            from service.cli.remote import cartridge_pull

            cartridge_pull(server, cartridge_id, output)
        else:
            shutil.copyfile(_store().file(cartridge_id), output)
    except MemexError as exc:
        fail(exc.message)
    typer.echo(f"wrote {output}")


@app.command("rm")
def remove(cartridge_id: str = typer.Argument(...), server: str | None = SERVER) -> None:
    try:
        if server:
            from service.cli.remote import cartridge_remove

            cartridge_remove(server, cartridge_id)
        else:
            _store().delete(cartridge_id)
    except MemexError as exc:
        fail(exc.message)


def chat(message: str | None = typer.Argument(None, help="one message; omit for an interactive chat"),
         cartridge: list[str] | None = typer.Option(None, "--cartridge", help="cartridge id (repeatable)"),
         max_tokens: int = typer.Option(256, "--max-tokens"),
         temperature: float = typer.Option(0.0, "--temperature"),
         server: str | None = SERVER) -> None:
    """Chat with the local LM, a cartridge's corpus as its context; replies stream."""
    try:
        if server:
            from service.cli import remote as cli_remote

            def reply_to(history: list[dict]):
                return cli_remote.chat(server, history, cartridge or [], max_tokens, temperature)
        else:
            from cartridges.generate import generate_chat

            store = _store()
            paths = [store.file(c) for c in cartridge or []]
            models = {store.info(c)["model"] for c in cartridge or []}
            model = models.pop() if len(models) == 1 else "bundled:smollm2"

            def reply_to(history: list[dict]):
                return generate_chat(history, paths, max_tokens, temperature, stream=True, model=model)
        history: list[dict] = []
        while True:
            text = message if message is not None else typer.prompt("you", prompt_suffix="> ")
            history.append({"role": "user", "content": text})
            reply = ""
            for piece in reply_to(history):
                reply += piece
                typer.echo(piece, nl=False)
            typer.echo()
            history.append({"role": "assistant", "content": reply})
            if message is not None:
                return
    except MemexError as exc:
        fail(exc.message)
