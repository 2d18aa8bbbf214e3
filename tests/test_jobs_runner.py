"""The job runner under database errors, cancellation of every job kind, and fairness."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import create_engine, select

from indexer.corpus import DocumentInput
from indexer.database import Base, Job
from indexer.durable import is_locked
from indexer.errors import Busy
from service.jobs.handlers import register_all
from service.jobs.runner import JobRunner
from tests.conftest import LiveServer


def _wait(predicate, timeout=120.0, every=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def _drop_jobs_table(home) -> None:
    """A real database error for the runner: its table vanishes under it."""
    with sqlite3.connect(home / "memex.db") as conn:
        conn.execute("DROP TABLE jobs")


# -- surviving database errors -------------------------------------------------


def test_runner_survives_a_database_error_and_readyz_reports_it(tmp_path, sample_dir):
    from service.api.app import create_app
    from service.settings import Settings

    home = tmp_path / "home"
    settings = Settings(home=home, allowed_roots=[sample_dir.parent])
    with LiveServer(create_app(settings)) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.get("/readyz").status_code == 200
        _drop_jobs_table(home)
        down = _wait(lambda: (r := client.get("/readyz")).status_code == 503 and r)
        assert "jobs retrying" in down.json()["detail"] and "no such table" in down.json()["detail"]
        Base.metadata.create_all(create_engine(f"sqlite:///{home / 'memex.db'}"))
        _wait(lambda: client.get("/readyz").status_code == 200, timeout=60)
        job_id = client.post("/v1/corpora", json={"name": "src", "directory": str(sample_dir)}
                             ).json()["job_id"]
        job = _wait(lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["status"]
                    not in ("queued", "running") and j)
        assert job["status"] == "succeeded", job


def test_worker_exits_non_zero_and_frees_the_queue_when_its_runner_gives_up(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "MEMEX_HOME": str(home), "MEMEX_JOB_MAX_FAILURES": "2"}
    worker = subprocess.Popen([sys.executable, "-m", "service.cli", "worker", "--poll", "0.2"],
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: (home / "jobs.lock").exists(), timeout=120)
        _wait(lambda: is_locked(home / "jobs.lock"), timeout=60)  # the worker leads
        _drop_jobs_table(home)
        rc = worker.wait(timeout=120)
    finally:
        worker.kill()
        worker.wait()
    err = worker.stderr.read()
    assert rc != 0, err
    assert "the job runner stopped (dead)" in err and "no such table" in err
    assert not is_locked(home / "jobs.lock")  # another worker may lead now


# -- cancel works for every job kind --------------------------------------------


@pytest.fixture
def runner(corpora, tmp_path):
    runner = JobRunner(corpora.sessions, tmp_path / "home")
    register_all(runner, corpora)
    yield runner
    runner.stop(timeout=60)


def _cancel_when(runner, job_id, stage) -> dict:
    _wait(lambda: runner.get(job_id).stage == stage, every=0.02)
    runner.cancel(job_id)
    return _wait(lambda: (j := runner.get(job_id)).status not in ("queued", "running") and j)


def test_cancel_stops_a_sync_which_commits_nothing(corpora, runner, tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(300):
        (root / f"f{i:03d}.md").write_text(f"Note {i} about topic {i % 7}: " + "words " * 40)
    corpora.create("many", str(root))
    runner.start()
    job = _cancel_when(runner, runner.submit("sync", {"corpus": "many"}, corpus="many").id,
                       "encode")
    assert job.status == "cancelled", (job.status, job.error, job.result)
    assert job.done < job.total  # it stopped mid-way
    info = corpora.info("many")
    assert info.documents == 0 and info.version == 0


def test_cancel_stops_a_retro_build(corpora, runner):
    from indexer.retro.chunkdb import ChunkDB
    from indexer.retro.sync import chunkdb_dir

    corpora.create("docs")
    corpora.upsert_documents("docs", [DocumentInput(f"d{i}", f"Document {i}. " + " ".join(
        f"sentence {j} of document {i} talks about rivers and mountains." for j in range(60)))
        for i in range(12)])
    runner.start()
    job = _cancel_when(runner, runner.submit("retro_build", {"corpus": "docs"}, corpus="docs").id,
                       "chunk db")
    assert job.status == "cancelled", (job.status, job.error, job.result)
    assert ChunkDB.open(chunkdb_dir(corpora, "docs")).num_chunks == 0  # no version committed


def test_a_job_cancelled_before_a_crash_is_not_run_again(corpora, tmp_path):
    """A process died while running a job whose cancel was asked for: the next leader
    marks it cancelled instead of queueing it again."""
    corpora.create("docs")
    first = JobRunner(corpora.sessions, tmp_path / "home")
    register_all(first, corpora)
    job = first.submit("retro_build", {"corpus": "docs"}, corpus="docs")
    with corpora.sessions.begin() as s:  # as the dead process left it
        row = s.get(Job, job.id)
        row.status, row.cancel_requested = "running", True
    second = JobRunner(corpora.sessions, tmp_path / "home")
    register_all(second, corpora)
    assert second.run_pending() == 0
    second.stop()
    assert second.get(job.id).status == "cancelled"


# -- admission and fairness -----------------------------------------------------


def test_jobs_are_taken_round_robin_by_corpus(corpora, tmp_path):
    runner = JobRunner(corpora.sessions, tmp_path / "home")
    order = []
    runner.register("note", lambda ctx, params: order.append(params["corpus"]) or {})
    for corpus in ["a"] * 5 + ["b", "c"]:
        runner.submit("note", {"corpus": corpus}, corpus=corpus)
    assert runner.run_pending() == 7
    runner.stop()
    assert order == ["a", "b", "c", "a", "a", "a", "a"]  # b's and c's are not behind all of a's


def test_a_corpus_cannot_queue_unbounded_jobs(corpora, tmp_path):
    runner = JobRunner(corpora.sessions, tmp_path / "home", max_active_per_corpus=3)
    runner.register("note", lambda ctx, params: {})
    for _ in range(3):
        runner.submit("note", {}, corpus="a")
    with pytest.raises(Busy, match="already has 3 queued or running jobs"):
        runner.submit("note", {}, corpus="a")
    runner.submit("note", {}, corpus="b")  # other corpora are not affected
    with corpora.sessions() as s:
        assert len(list(s.scalars(select(Job.id).where(Job.corpus == "a")))) == 3
