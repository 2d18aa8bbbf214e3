"""Training jobs as Ray tasks: the job row stays here, the body runs on the cluster.

With ``MEMEX_RAY_ADDRESS`` set, the job kinds ``cartridge_train`` and ``retriever`` run
their body — the very function a local job runs — as one Ray task that requests
``MEMEX_RAY_TRAIN_GPUS`` GPUs. The task opens the data directory the job's process opened
(the database, and ``MEMEX_HOME`` on the shared filesystem), so it reads the corpus and
writes its checkpoints where a local run would, and a re-run resumes from them.

The task and the job talk through a small actor, ``ProgressChannel``: the task reports
``(stage, done, total)``, the job's worker thread polls it, copies it into the job row and,
when the job is cancelled, tells the task to stop (it does at its next report, as a local
run does) — or, past a grace period, ends it with ``ray.cancel(force=True)``. The worker
thread waits on the task for its whole run, so the job runner's one-at-a-time loop still
bounds the cluster load a process creates. docs/scale-out.md, "Training on the cluster".
"""

from __future__ import annotations

import os
import time
from typing import Any

from indexer.distributed.cluster import NAMESPACE, connect
from indexer.errors import Unavailable
from indexer.progress import Cancelled
from service.jobs.runner import JobCancelled, JobContext
from service.settings import Settings

KINDS = ("cartridge_train", "retriever")
POLL_S = 1.0  # how often the job copies the task's progress into its row
CANCEL_GRACE_S = 30.0  # a cancelled task that has not stopped by then is killed
TASK_RETRIES = 2  # re-runs of a task whose worker or node died; each resumes from its checkpoint
RETRY_AFTER_S = 10


def channel_name(job_id: str) -> str:
    """The channel actor's name in the ``memex`` namespace, while its job runs."""
    return f"job-{job_id}"


class ProgressChannel:
    """The actor between a training task and its job: latest progress one way, stop the other."""

    def __init__(self) -> None:
        self._latest: tuple[str, int, int] | None = None
        self._stop = False
        self._pid: int | None = None

    def report(self, stage: str, done: int, total: int, pid: int) -> bool:
        """The task's progress; returns whether it should stop."""
        self._latest, self._pid = (stage, done, total), pid
        return self._stop

    def stopping(self) -> bool:
        return self._stop

    def stop(self) -> None:
        self._stop = True

    def latest(self) -> tuple[str, int, int] | None:
        return self._latest

    def pid(self) -> int | None:
        """The task's process (tests kill it to show what a dead task does)."""
        return self._pid


def run_body(kind: str, params: dict, settings: Settings, channel: Any) -> dict:
    """The Ray task: open the data directory as the job's process did and run the job
    kind's body (the one a local job runs), reporting through ``channel``."""
    import ray

    from service.jobs.cartridge_handlers import train_cartridge_job
    from service.jobs.handlers import post_train_retriever
    from service.runtime import cartridge_store, open_corpora

    pid = os.getpid()

    def progress(stage: str, done: int, total: int) -> None:
        if ray.get(channel.report.remote(stage, done, total, pid)):
            raise Cancelled()

    def should_stop() -> bool:
        return bool(ray.get(channel.stopping.remote()))

    progress("starting", 0, 0)
    corpora = open_corpora(settings, api=True)
    if kind == "cartridge_train":
        return train_cartridge_job(cartridge_store(settings), corpora, params, progress,
                                   should_stop)
    return post_train_retriever(corpora, params, progress, should_stop)


class RemoteTraining:
    """Runs a training job's body on the cluster at ``settings.ray_address``."""

    def __init__(self, settings: Settings, cancel_grace_s: float = CANCEL_GRACE_S,
                 task_retries: int = TASK_RETRIES) -> None:
        if not settings.ray_address:
            raise ValueError("RemoteTraining needs a Ray address")
        self.settings, self.address = settings, settings.ray_address
        self.cancel_grace_s, self.task_retries = cancel_grace_s, task_retries

    def gpus(self, ray: Any) -> float:
        """``MEMEX_RAY_TRAIN_GPUS``, else one when the cluster has any GPU, else none."""
        if self.settings.ray_train_gpus is not None:
            return self.settings.ray_train_gpus
        return 1.0 if ray.cluster_resources().get("GPU", 0) else 0.0

    def run(self, ctx: JobContext, kind: str, params: dict) -> dict:
        """The body's result; raises what the body raised (``JobCancelled`` when cancelled),
        or ``Unavailable`` when the task died more often than Ray re-runs it."""
        if kind not in KINDS:
            raise ValueError(f"job kind {kind!r} does not run on Ray")
        ray = connect(self.address, self.settings)
        cpus = self.settings.ray_actor_cpus
        channel = ray.remote(ProgressChannel).options(num_cpus=0, name=channel_name(ctx.job_id),
                                                       namespace=NAMESPACE).remote()
        threads = str(max(1, int(cpus)))
        task = ray.remote(run_body).options(
            num_cpus=cpus, num_gpus=self.gpus(ray), max_retries=self.task_retries,
            retry_exceptions=False,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                                      "MEMEX_ENCODER_THREADS": threads}})
        # The task opens exactly this process's data directory; it never connects to Ray itself.
        ref = task.remote(kind, params, self.settings.model_copy(update={"ray_address": None}),
                          channel)
        try:
            self._follow(ray, ctx, ref, channel)
            return self._result(ray, ref)
        finally:
            ray.kill(channel)

    def _follow(self, ray: Any, ctx: JobContext, ref: Any, channel: Any) -> None:
        """Until the task ends: copy its progress into the job row; pass a cancel on."""
        shown, stop_by, killed = None, None, False
        while not ray.wait([ref], timeout=POLL_S)[0]:
            latest = ray.get(channel.latest.remote())
            cancelled = False
            if latest is not None and latest != shown:
                shown = latest
                try:
                    ctx.progress(*latest)
                except JobCancelled:
                    cancelled = True
            else:
                cancelled = ctx.should_stop()
            if cancelled and stop_by is None:
                channel.stop.remote()  # the task stops at its next report, as a local job does
                stop_by = time.monotonic() + self.cancel_grace_s
            if stop_by is not None and not killed and time.monotonic() > stop_by:
                ray.cancel(ref, force=True)  # stuck between reports: kill its worker
                killed = True
        latest = ray.get(channel.latest.remote())
        if latest is not None and latest != shown:
            try:
                ctx.progress(*latest)
            except JobCancelled:
                pass  # it finished anyway; what it returned is the job's result

    @staticmethod
    def _result(ray: Any, ref: Any) -> dict:
        from ray.exceptions import RayError, RayTaskError, TaskCancelledError

        try:
            return ray.get(ref)
        except TaskCancelledError:
            raise JobCancelled() from None
        except RayTaskError as exc:  # the body raised: raise the same here
            if isinstance(exc.cause, Exception):
                raise exc.cause from None
            raise
        except RayError as exc:  # its worker or node died more often than Ray re-runs it
            raise Unavailable(f"the training task died: {type(exc).__name__}: {exc}",
                              retry_after_s=RETRY_AFTER_S) from None


def remote_training(settings: Settings) -> RemoteTraining | None:
    """Training on the cluster when ``MEMEX_RAY_ADDRESS`` is set; None (and no Ray) otherwise."""
    return RemoteTraining(settings) if settings.ray_address else None
