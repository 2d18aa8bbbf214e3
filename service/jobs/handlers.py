"""Job handlers: the work behind each background job kind.

Each handler reports progress through ``ctx.progress``, which raises ``JobCancelled``
once a cancel was asked for: that is how a cancel stops every kind of job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

from indexer.corpus import Corpora
from indexer.errors import Busy
from indexer.progress import Progress
from service.jobs.runner import JobContext, JobRunner

if TYPE_CHECKING:
    from service.jobs.remote import RemoteTraining


def register_all(runner: JobRunner, corpora: Corpora, remote: RemoteTraining | None = None) -> None:
    """Register every corpus job kind; with ``remote``, post-training runs as a Ray task."""
    def sync(ctx: JobContext, params: dict) -> dict:
        # A sync is idempotent: after a restart it re-walks and re-encodes what is still stale.
        report = corpora.sync(params["corpus"],
                              progress=ctx.progress)
        return asdict(report)

    runner.register("sync", sync)

    def merge(ctx: JobContext, params: dict) -> dict:
        # Idempotent: the policy looks at the index as it is when the job runs.
        ctx.progress("merge", 0, 1)
        return {"merges": corpora.merge(params["corpus"])}

    def optimize(ctx: JobContext, params: dict) -> dict:
        ctx.progress("optimize", 0, 1)
        merges = corpora.optimize(params["corpus"])
        index = corpora.index(params["corpus"])
        return {"merges": merges, "bytes": index.nbytes()}

    runner.register("merge", merge)
    runner.register("optimize", optimize)

    def schedule_merge(corpus: str) -> None:
        """After a change: one queued merge job per corpus is enough. A corpus whose queue is
        full gets its merge with a later change; the change itself has succeeded."""
        if any(j.kind == "merge" and j.status == "queued" for j in runner.list(corpus=corpus, limit=20)):
            return
        try:
            runner.submit("merge", {"corpus": corpus}, corpus=corpus)
        except Busy:
            pass

    corpora.merge_scheduler = schedule_merge

    def retro_build(ctx: JobContext, params: dict) -> dict:
        # Idempotent: a reconcile embeds only documents the chunk DB does not have yet.
        from indexer.retro.sync import reconcile

        ctx.progress("chunk db", 0, 1)
        db = reconcile(corpora, params["corpus"],
                       progress=lambda done, total: ctx.progress("chunk db", done, total))
        return {"chunks": db.num_chunks, "bytes": db.nbytes()}

    runner.register("retro_build", retro_build)

    def retriever(ctx: JobContext, params: dict) -> dict:
        if remote is not None:
            return remote.run(ctx, "retriever", params)
        return post_train_retriever(corpora, params, ctx.progress, ctx.should_stop)

    runner.register("retriever", retriever)


def post_train_retriever(corpora: Corpora, params: dict, progress: Progress,
                         should_stop: Callable[[], bool]) -> dict:
    """The ``retriever`` job's body, here or in a Ray task (``service/jobs/remote.py``).
    Not resumable mid-way: a restart begins again; the switch happens only at the end."""
    from indexer.posttrain import PostTrainConfig, post_train

    cfg = PostTrainConfig(passages=params.get("passages", 64),
                          mined=params.get("mined", 2000),
                          teacher=params.get("teacher", True))
    cfg.train.steps = params.get("steps", cfg.train.steps)
    return post_train(corpora, params["corpus"], cfg, progress=progress, should_stop=should_stop)
