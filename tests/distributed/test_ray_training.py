"""Training jobs as Ray tasks on a real local cluster (a head and a worker, separate processes).

A tiny cartridge trained by a ``cartridge_train`` job whose body runs as a Ray task equals
the same training run here; its progress reaches the job row; a cancel ends the job
``cancelled`` with its checkpoint kept, and a re-run resumes from it; a task whose worker
is killed is re-run by Ray and ends with the same cartridge. A retriever job post-trains in
a task and switches the corpus. Without an address, nothing imports Ray.

Every process trains with one thread: on one thread a CPU run is deterministic, so the
cartridges are compared tensor for tensor.
"""

from __future__ import annotations

import inspect
import json
import os
import shlex
import shutil
import signal
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cartridges.fileformat import read_cartridge
from cartridges.store import CartridgeStore
from indexer.corpus import Corpora, DocumentInput
from indexer.database import Job
from indexer.distributed.cluster import NAMESPACE, disconnect
from service.jobs.cartridge_handlers import register_cartridges, run_training
from service.jobs.handlers import register_all
from service.jobs.remote import RemoteTraining, channel_name
from service.jobs.runner import JobRunner
from service.settings import Settings
from tests.cartridges.cart_setup import TEXT, TINY

pytest.importorskip("ray", reason="Ray is not installed (pip install 'memex[ray]')")

from tests.helpers.ray_cluster import LocalRayCluster, imports_ray

# TINY with enough steps that a cancel sent after the first one lands before the last
CONFIG = replace(TINY, steps=8)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the Ray task (OMP_NUM_THREADS=1): bit-identical results
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    with LocalRayCluster(workers=1, cpus_per_node=1) as c:
        try:
            yield c
        finally:
            disconnect()


@pytest.fixture(scope="module")
def home(tmp_path_factory, encoder) -> Path:
    """A data directory with the corpus ``faq`` (the shared filesystem of the test)."""
    home = tmp_path_factory.mktemp("home")
    corpora = Corpora(home, encoder=encoder)
    corpora.create("faq")
    corpora.upsert_documents("faq", [DocumentInput("faq", TEXT)])
    return home


@pytest.fixture(scope="module")
def local_cartridge(home: Path, encoder) -> Path:
    """The reference: the same cartridge trained in this process."""
    corpora = Corpora(home, encoder=encoder)
    store = CartridgeStore(home / "local-cartridges")
    info = store.create("faq", corpora.info("faq").version, CONFIG)
    assert run_training(store, corpora, info["id"])["status"] == "ready"
    return store.file(info["id"])


class Setup:
    """A job runner whose training jobs run on the cluster, its worker thread started."""

    def __init__(self, home: Path, encoder, address: str, cancel_grace_s: float = 30.0,
                 task_retries: int = 2, **settings_given) -> None:
        settings = Settings(home=home, ray_address=address, **settings_given)
        self.corpora = Corpora(home, encoder=encoder)
        self.store = CartridgeStore(home / "cartridges")
        self.runner = JobRunner(self.corpora.sessions, home)
        remote = RemoteTraining(settings, cancel_grace_s, task_retries)
        register_all(self.runner, self.corpora, remote)
        register_cartridges(self.runner, self.corpora, self.store, remote)
        self.runner.start()

    def new_cartridge(self) -> str:
        return self.store.create("faq", self.corpora.info("faq").version, CONFIG)["id"]

    def submit(self, cid: str) -> str:
        return self.runner.submit("cartridge_train", {"cartridge_id": cid}, corpus="faq").id

    def watch(self, job_id: str, until=lambda job, seen: job.status not in ("queued", "running"),
              timeout: float = 300) -> tuple[Job, list[tuple[str, int, int]]]:
        """Poll the job row until ``until``; returns it and the progress it showed."""
        seen: list[tuple[str, int, int]] = []
        deadline = time.monotonic() + timeout
        while True:
            job = self.runner.get(job_id)
            if job.stage and (not seen or seen[-1] != (job.stage, job.done, job.total)):
                seen.append((job.stage, job.done, job.total))
            if until(job, seen):
                return job, seen
            assert time.monotonic() < deadline, f"job stuck at {job.status} {seen[-3:]}"
            time.sleep(0.1)

    def stop(self) -> None:
        self.runner.stop(timeout=60)


@pytest.fixture
def setup(home: Path, encoder, cluster: LocalRayCluster) -> Iterator[Setup]:
    s = Setup(home, encoder, cluster.address)
    yield s
    s.stop()


def same_cartridge(a: Path, b: Path, skip_first_loss: bool = False) -> None:
    fa, fb = read_cartridge(a), read_cartridge(b)
    assert len(fa.keys) == len(fb.keys) > 0
    for x, y in zip(fa.keys + fa.values, fb.keys + fb.values):
        assert torch.equal(x, y)
    ta, tb = fa.header["training"], fb.header["training"]
    assert ta["heldout_loss_final"] == tb["heldout_loss_final"]
    assert ta["loss_last"] == tb["loss_last"]
    if not skip_first_loss:
        assert ta["loss_curve"] == tb["loss_curve"]


def checkpoint_step(work: Path) -> int:
    with safe_open(str(work / "ckpt.safetensors"), "pt") as f:
        return int(f.metadata()["step"])


MARK = 99.0


def mark_checkpoint(work: Path) -> None:
    """Write ``MARK`` as the first training loss in the checkpoint's history: a run that
    resumes from it carries it into the cartridge's header; a run that started over would not."""
    path = work / "ckpt.safetensors"
    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    history = json.loads(meta["history"])
    history["train_loss"][0] = MARK
    save_file(tensors, str(path), metadata={**meta, "history": json.dumps(history)})


def test_a_cartridge_job_on_ray_trains_what_a_local_run_trains(setup: Setup,
                                                                local_cartridge: Path) -> None:
    cid = setup.new_cartridge()
    job, seen = setup.watch(setup.submit(cid))
    assert job.status == "succeeded", job.error
    assert job.result["cartridge_id"] == cid and job.result["steps"] == CONFIG.steps
    stages = [s for s, _, _ in seen]
    assert "synthesis" in stages and "training" in stages, seen  # the row followed the task
    assert stages.index("synthesis") < stages.index("training")
    assert [d for s, d, _ in seen if s == "training"] == \
        sorted(d for s, d, _ in seen if s == "training")
    assert setup.store.info(cid)["status"] == "ready"
    same_cartridge(setup.store.file(cid), local_cartridge)


def task_pid(job_id: str) -> int:
    """The process running the job's task, as it reported to its channel actor."""
    import ray

    channel = ray.get_actor(channel_name(job_id), namespace=NAMESPACE)
    return ray.get(channel.pid.remote())


def running_training(pid: int) -> bool:
    """Whether process ``pid`` is alive and running a training task (Ray titles a worker
    with the task it runs, ``ray::IDLE`` between tasks)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::run_body")
    except OSError:
        return False


def test_cancel_keeps_the_checkpoint_and_a_rerun_resumes(setup: Setup,
                                                         local_cartridge: Path) -> None:
    cid = setup.new_cartridge()
    job_id = setup.submit(cid)
    setup.watch(job_id, lambda job, _: job.stage == "training" and job.done >= 1)
    pid = task_pid(job_id)
    assert pid != os.getpid() and running_training(pid)
    setup.runner.cancel(job_id)
    job, _ = setup.watch(job_id)
    assert job.status == "cancelled"
    assert not running_training(pid)  # the task ended with its job
    assert setup.store.info(cid)["status"] == "cancelled"
    work = setup.store.work_dir(cid)
    stopped_at = checkpoint_step(work)
    assert 1 <= stopped_at < CONFIG.steps  # stopped mid-training, its steps kept
    assert not (work / "cartridge.safetensors").exists()
    mark_checkpoint(work)

    rerun, _ = setup.watch(setup.submit(cid))
    assert rerun.status == "succeeded", rerun.error
    assert setup.store.info(cid)["training"]["loss_first"] == MARK  # it went on from the checkpoint
    same_cartridge(setup.store.file(cid), local_cartridge, skip_first_loss=True)


def test_a_killed_task_is_rerun_and_finishes(setup: Setup, local_cartridge: Path) -> None:
    cid = setup.new_cartridge()
    job_id = setup.submit(cid)
    setup.watch(job_id, lambda job, _: job.stage == "training" and job.done >= 2)
    pid = task_pid(job_id)
    assert running_training(pid)
    os.kill(pid, signal.SIGKILL)  # the worker dies mid-training
    job, _ = setup.watch(job_id)
    assert job.status == "succeeded", job.error  # Ray ran the task again
    same_cartridge(setup.store.file(cid), local_cartridge)


def test_a_task_that_dies_past_its_retries_fails_the_job(home: Path, encoder,
                                                        cluster: LocalRayCluster) -> None:
    """No re-runs left: the job fails ``UNAVAILABLE``, the cartridge ``failed``, and its
    checkpoint stays for a new job."""
    s = Setup(home, encoder, cluster.address, task_retries=0)
    try:
        cid = s.new_cartridge()
        job_id = s.submit(cid)
        s.watch(job_id, lambda job, _: job.stage == "training" and job.done >= 1)
        os.kill(task_pid(job_id), signal.SIGKILL)
        job, _ = s.watch(job_id)
        assert job.status == "failed" and job.error.startswith("UNAVAILABLE:"), job.error
        info = s.store.info(cid)
        assert info["status"] == "failed" and "died" in info["error"]
        assert checkpoint_step(s.store.work_dir(cid)) >= 1
    finally:
        s.stop()


def test_a_stuck_task_is_killed_on_cancel(home: Path, encoder, cluster: LocalRayCluster) -> None:
    """No grace: the cancel kills the task's worker (``ray.cancel(force=True)``); the job and
    the cartridge end ``cancelled`` and what was written stays for a re-run."""
    s = Setup(home, encoder, cluster.address, cancel_grace_s=0.0)
    try:
        cid = s.new_cartridge()
        job_id = s.submit(cid)
        s.watch(job_id, lambda job, _: job.stage == "training" and job.done >= 1)
        pid = task_pid(job_id)
        s.runner.cancel(job_id)
        job, _ = s.watch(job_id)
        assert job.status == "cancelled"
        assert not Path(f"/proc/{pid}").exists()  # killed, not stopped at a report
        assert s.store.info(cid)["status"] == "cancelled"
        assert checkpoint_step(s.store.work_dir(cid)) >= 1
    finally:
        s.stop()


def test_an_error_in_the_task_fails_the_job_with_its_code(setup: Setup) -> None:
    job_id = setup.runner.submit("retriever", {"corpus": "absent"}, corpus="absent").id
    job, _ = setup.watch(job_id)
    assert job.status == "failed"
    assert job.error.startswith("NOT_FOUND:") and "absent" in job.error


def test_a_retriever_job_on_ray_post_trains_and_switches(home: Path, encoder, tmp_path: Path,
                                                         cluster: LocalRayCluster) -> None:
    """The smallest post-training a job can ask for (mined queries, no LM, no teacher, 2
    steps) runs in the task, which re-indexes the corpus; this process then sees the switch."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for module in (textwrap, shlex):
        shutil.copy(inspect.getsourcefile(module), tree / Path(module.__file__).name)
    s = Setup(home, encoder, cluster.address, encoder_runtime="torch")  # no ONNX export
    try:
        s.corpora.create("lib", str(tree))
        s.corpora.sync("lib")
        before = s.corpora.info("lib").encoder
        job_id = s.runner.submit("retriever", {"corpus": "lib", "passages": 0, "mined": 24,
                                               "teacher": False, "steps": 2}, corpus="lib").id
        job, seen = s.watch(job_id, timeout=600)
        assert job.status == "succeeded", job.error
        assert job.result["training"]["steps"] == 2
        # the task's progress reached the row (re-encoding two files can pass between polls)
        assert "train" in [stage for stage, _, _ in seen]
        after = Corpora(home, encoder=encoder).info("lib")
        assert after.encoder == job.result["encoder"] != before
    finally:
        s.stop()


def test_without_an_address_nothing_imports_ray(tmp_path: Path) -> None:
    """The wiring of the server and the worker registers local training jobs."""
    script = (
        "import sys\n"
        "from service.jobs.cartridge_handlers import register_cartridges\n"
        "from service.jobs.handlers import register_all\n"
        "from service.jobs.runner import JobRunner\n"
        "from service.jobs.remote import remote_training\n"
        "from service.runtime import cartridge_store, open_corpora\n"
        "from service.settings import Settings\n"
        f"s = Settings(home={str(tmp_path / 'home')!r})\n"
        "c = open_corpora(s, api=True)\n"
        "assert remote_training(s) is None\n"
        "r = JobRunner(c.sessions, s.home)\n"
        "register_all(r, c, remote_training(s))\n"
        "register_cartridges(r, c, cartridge_store(s), remote_training(s))\n"
    )
    assert not imports_ray(script)


def test_the_task_asks_for_the_configured_gpus(cluster: LocalRayCluster) -> None:
    from indexer.distributed.cluster import connect

    ray = connect(cluster.address, Settings())
    assert RemoteTraining(Settings(ray_address=cluster.address)).gpus(ray) == 0  # none here
    assert RemoteTraining(Settings(ray_address=cluster.address, ray_train_gpus=2)).gpus(ray) == 2
