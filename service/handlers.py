"""Job handlers: the work behind each background job kind."""

from __future__ import annotations

from dataclasses import asdict

from indexer.corpus import Corpora
from service.jobs import JobContext, JobRunner


def register_all(runner: JobRunner, corpora: Corpora) -> None:
    def sync(ctx: JobContext, params: dict) -> dict:
        # A sync is idempotent: after a restart it re-walks and re-encodes what is still stale.
        report = corpora.sync(params["corpus"],
                              progress=lambda stage, done, total: ctx.progress(done, total, stage))
        return asdict(report)

    runner.register("sync", sync)
