"""The ``cartridge_train`` job: read a corpus, synthesize, distill, publish to the store.

Resumable: its state lives in the store's work dir for the cartridge, so a job
re-queued after a restart continues where it stopped.
"""

from __future__ import annotations

from cartridges.config import CartridgeConfig
from cartridges.store import CartridgeStore
from cartridges.train import train_cartridge
from indexer.corpus import Corpora
from indexer.errors import InvalidInput, NotFound
from service.jobs.runner import JobCancelled, JobContext, JobRunner


def corpus_text(corpora: Corpora, name: str) -> str:
    """The corpus as one text: documents in id order, each headed by its path or id."""
    parts = [f"# {d.path or d.doc_id}\n\n{d.text}" for d in corpora.iter_documents(name)]
    if not parts:
        raise InvalidInput(f"corpus {name!r} has no documents to train a cartridge on")
    return "\n\n".join(parts)


def settle(store: CartridgeStore, runner: JobRunner, info: dict) -> dict:
    """A cartridge whose job ended without running it (cancelled while queued, or failed
    before training began) takes the job's outcome instead of staying ``queued``."""
    if info["status"] != "queued" or not info.get("job_id"):
        return info
    try:
        job = runner.get(info["job_id"])
    except NotFound:
        return store.update(info["id"], status="failed", error="its training job is gone")
    if job.status == "cancelled":
        return store.update(info["id"], status="cancelled")
    if job.status == "failed":
        return store.update(info["id"], status="failed", error=job.error)
    return info


def register_cartridges(runner: JobRunner, corpora: Corpora, store: CartridgeStore) -> None:
    def train(ctx: JobContext, params: dict) -> dict:
        cid = params["cartridge_id"]
        info = store.info(cid)
        if info["status"] == "ready":  # re-queued after a restart that followed its finish
            return {"cartridge_id": cid, "bytes": info["bytes"], **(info["training"] or {})}
        store.update(cid, status="training", error=None)
        try:
            path = train_cartridge(corpus_text(corpora, info["corpus_id"]), info["corpus_id"],
                                   info["corpus_version"], CartridgeConfig.from_dict(info["config"]),
                                   store.work_dir(cid), ctx.progress, ctx.should_stop)
            if path is None:
                store.update(cid, status="cancelled")
                ctx.check_cancelled()
                return {"cartridge_id": cid, "status": "cancelled"}
            info = store.finish(cid, path)
        except JobCancelled:  # raised by ctx.progress or check_cancelled
            store.update(cid, status="cancelled")
            raise
        except BaseException as exc:
            store.update(cid, status="failed", error=str(getattr(exc, "message", exc)))
            raise
        return {"cartridge_id": cid, "bytes": info["bytes"], **(info["training"] or {})}

    runner.register("cartridge_train", train)
