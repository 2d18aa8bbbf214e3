"""``memex retriever ...``: train a corpus's retriever, bring or take checkpoints."""

from __future__ import annotations

from pathlib import Path

import typer

from indexer.errors import MemexError
from service.cli.common import SERVER, StageBar, fail, local_corpora

app = typer.Typer(help="Train and exchange ColBERT retrievers.", no_args_is_help=True)



@app.command("train")
def train_cmd(corpus: str = typer.Argument(..., help="corpus to post-train"),
              passages: int = typer.Option(64, help="sampled passages the LM writes a query for"),
              mined: int = typer.Option(2000, help="docstring queries mined from the corpus"),
              steps: int = typer.Option(300, help="training steps"),
              teacher: bool = typer.Option(True, help="distil LM query likelihood"),
              server: str | None = SERVER) -> None:
    """Post-train CORPUS's retriever on LM-written and docstring queries, re-index, switch."""
    from indexer.posttrain import PostTrainConfig, post_train

    cfg = PostTrainConfig(passages=passages, mined=mined, teacher=teacher)
    cfg.train.steps = steps
    bar = StageBar()
    try:
        if server:
            from service.cli.remote import retriever_train

            done = retriever_train(server, corpus, passages=passages, mined=mined, steps=steps,
                                   teacher=teacher)
        else:
            done = post_train(local_corpora(), corpus, cfg, progress=bar)
    except MemexError as exc:
        bar.close()
        fail(exc.message)
    bar.close()
    t = done["training"]
    typer.echo(f"{corpus}: new encoder {done['encoder']} ({done['reindex']['fingerprint']}); "
               f"{done['examples']} examples, {t['steps']} steps, loss {t['first_loss']:.3f} -> "
               f"{t['last_loss']:.3f}; re-indexed {done['reindex']['passages']} passages")


@app.command("fit")
def fit_cmd(data: Path = typer.Argument(..., help="training JSONL (docs/retriever.md)"),
            out: Path = typer.Argument(..., help="checkpoint directory to write"),
            base: str = typer.Option("bundled:minilm", help="encoder to start from"),
            steps: int = typer.Option(200), dim: int = typer.Option(128),
            train_layers: int = typer.Option(2, help="-1 all, 0 head only")) -> None:
    """Train a checkpoint from your own labelled JSONL."""
    from indexer.training import TrainConfig, read_jsonl, train

    try:
        stats = train(TrainConfig(base=base, steps=steps, dim=dim, train_layers=train_layers),
                      read_jsonl(data), out)
    except MemexError as exc:
        fail(exc.message)
    typer.echo(f"{out}: {stats}")


@app.command("export")
def export_cmd(checkpoint: Path, out: Path,
               to: str = typer.Option(..., "--to", help="colbert-ai or pylate")) -> None:
    """Write a memex checkpoint in colbert-ai or PyLate layout."""
    from indexer.training.checkpoint import export_colbert_ai, export_pylate

    fn = {"colbert-ai": export_colbert_ai, "pylate": export_pylate}.get(to)
    if fn is None:
        fail("--to must be colbert-ai or pylate")
    try:
        typer.echo(str(fn(checkpoint, out)))
    except MemexError as exc:
        fail(exc.message)


@app.command("import")
def import_cmd(src: Path, out: Path,
               source: str = typer.Option(..., "--from", help="colbert-ai or pylate")) -> None:
    """Convert a colbert-ai or PyLate checkpoint into a memex checkpoint."""
    from indexer.training.checkpoint import import_colbert_ai, import_pylate

    fn = {"colbert-ai": import_colbert_ai, "pylate": import_pylate}.get(source)
    if fn is None:
        fail("--from must be colbert-ai or pylate")
    try:
        typer.echo(str(fn(src, out)))
    except MemexError as exc:
        fail(exc.message)
