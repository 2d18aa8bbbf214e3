"""Cartridge training as a job: read a corpus, synthesize, distill, publish to the store.

``run_training`` is the one implementation; the server's ``cartridge_train`` job and
the CLI's foreground ``memex cartridge train`` both call it.

Resumable: its state lives in the store's work dir for the cartridge, so a job
re-queued after a restart continues where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cartridges.budget import Plan
from cartridges.config import CartridgeConfig
from cartridges.store import CartridgeStore
from cartridges.train import train_cartridge
from indexer.corpus import Corpora
from indexer.errors import InvalidInput, NotFound
from indexer.progress import Progress
from service.jobs.runner import JobCancelled, JobContext, JobRunner

if TYPE_CHECKING:
    from service.jobs.remote import RemoteTraining


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


def run_training(store: CartridgeStore, corpora: Corpora, cartridge_id: str,
                 progress: Progress = lambda *_: None,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_plan: Callable[[Plan], None] = lambda _: None) -> dict:
    """Train and publish one cartridge: the one implementation behind the server's job and
    ``memex cartridge train``. Whatever ends it, its status says how: ``ready``;
    ``cancelled`` when ``should_stop`` or a cancellation (``JobCancelled``, Ctrl-C) stopped
    it (resumable); ``failed`` with the error otherwise. Returns the cartridge's info.
    A budgeted run's plan is saved to the info (its config then holds the planned
    conversations and steps) and passed to ``on_plan`` before synthesis goes on.
    """
    info = store.info(cartridge_id)
    if info["status"] == "ready":  # e.g. a job re-queued after a restart that followed its finish
        return info
    store.update(cartridge_id, status="training", error=None)

    def planned(plan: Plan, config: CartridgeConfig) -> None:
        store.update(cartridge_id, plan=plan.to_dict(), config=config.to_dict(), p=config.p)
        on_plan(plan)

    try:
        path = train_cartridge(corpus_text(corpora, info["corpus_id"]), info["corpus_id"],
                               info["corpus_version"], CartridgeConfig.from_dict(info["config"]),
                               store.work_dir(cartridge_id), progress, should_stop, planned)
        if path is None:
            return store.update(cartridge_id, status="cancelled", error=None)
        return store.finish(cartridge_id, path)
    except (JobCancelled, KeyboardInterrupt):
        store.update(cartridge_id, status="cancelled", error="interrupted")
        raise
    except BaseException as exc:
        store.update(cartridge_id, status="failed", error=str(getattr(exc, "message", exc)))
        raise


def train_cartridge_job(store: CartridgeStore, corpora: Corpora, params: dict,
                        progress: Progress, should_stop: Callable[[], bool]) -> dict:
    """The ``cartridge_train`` job's body, here or in a Ray task (``service/jobs/remote.py``):
    the job's result, or ``JobCancelled`` when it was stopped (its checkpoint kept)."""
    cid = params["cartridge_id"]
    info = run_training(store, corpora, cid, progress, should_stop)
    if info["status"] == "cancelled":
        raise JobCancelled()
    return {"cartridge_id": cid, "bytes": info["bytes"], **(info["training"] or {})}


def register_cartridges(runner: JobRunner, corpora: Corpora, store: CartridgeStore,
                        remote: RemoteTraining | None = None) -> None:
    """Register ``cartridge_train``; with ``remote``, its body runs as a Ray task."""

    def train(ctx: JobContext, params: dict) -> dict:
        if remote is None:
            return train_cartridge_job(store, corpora, params, ctx.progress, ctx.should_stop)
        try:
            return remote.run(ctx, "cartridge_train", params)
        except BaseException as exc:
            _settle_killed(store, params["cartridge_id"], exc)
            raise

    runner.register("cartridge_train", train)


def _settle_killed(store: CartridgeStore, cartridge_id: str, exc: BaseException) -> None:
    """A task killed mid-training (force-cancelled, its node lost) left its cartridge
    ``training``: it takes the job's outcome; the work dir stays for a resumed run."""
    try:
        if store.info(cartridge_id)["status"] != "training":
            return
    except NotFound:  # deleted meanwhile: nothing to settle
        return
    if isinstance(exc, JobCancelled):
        store.update(cartridge_id, status="cancelled", error="interrupted")
    else:
        store.update(cartridge_id, status="failed", error=str(getattr(exc, "message", exc)))
