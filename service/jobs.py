"""Persistent background jobs: syncs, trainings, anything that outlives a request.

A job is a row in the ``jobs`` table; a handler registered for its kind does the
work in a worker thread and reports progress through ``JobContext``. Jobs that
were queued or running when the process died are queued again at start-up, so
handlers must be resumable: they keep their state in ``ctx.work_dir``.
"""

from __future__ import annotations

import logging
import shutil
import threading
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sqlalchemy import select

from indexer.errors import MemexError, NotFound
from indexer.store import Job, utcnow

log = logging.getLogger("memex.jobs")
ACTIVE = ("queued", "running")


class JobCancelled(Exception):
    """Raised by ``JobContext.check_cancelled`` to unwind a cancelled handler."""


@dataclass
class JobContext:
    job_id: str
    work_dir: Path
    _runner: "JobRunner"

    def progress(self, done: int, total: int, stage: str = "") -> None:
        self._runner._update(self.job_id, done=done, total=total, stage=stage)

    def should_stop(self) -> bool:
        return self._runner._cancel_requested(self.job_id)

    def check_cancelled(self) -> None:
        if self.should_stop():
            raise JobCancelled()


Handler = Callable[[JobContext, dict], dict]


class JobRunner:
    """Runs jobs one at a time in a daemon thread (the 2-core default; see docs)."""

    def __init__(self, sessions, home: Path) -> None:
        self.sessions = sessions
        self.home = home
        self.handlers: dict[str, Handler] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    def submit(self, kind: str, params: dict, corpus: str | None = None) -> Job:
        if kind not in self.handlers:
            raise ValueError(f"no handler for job kind {kind!r}")
        job = Job(id=uuid.uuid4().hex, kind=kind, corpus=corpus, status="queued", params=params)
        with self.sessions.begin() as s:
            s.add(job)
        self._wake.set()
        return job

    def get(self, job_id: str) -> Job:
        with self.sessions() as s:
            job = s.get(Job, job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} does not exist")
        return job

    def list(self, corpus: str | None = None, limit: int = 100) -> list[Job]:
        with self.sessions() as s:
            q = select(Job).order_by(Job.created_at.desc()).limit(limit)
            if corpus:
                q = q.where(Job.corpus == corpus)
            return list(s.scalars(q))

    def cancel(self, job_id: str) -> Job:
        with self.sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise NotFound(f"job {job_id!r} does not exist")
            if job.status == "queued":
                job.status, job.updated_at = "cancelled", utcnow()
            elif job.status == "running":
                job.cancel_requested = True
        return self.get(job_id)

    # -- worker -------------------------------------------------------------
    def start(self) -> None:
        """Requeue jobs a crash interrupted, then start the worker thread."""
        with self.sessions.begin() as s:
            for job in s.scalars(select(Job).where(Job.status == "running")):
                job.status, job.stage = "queued", "resuming after restart"
        self._thread = threading.Thread(target=self._loop, name="memex-jobs", daemon=True)
        self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)

    def run_pending(self) -> int:
        """Run queued jobs in this thread until none is left (the CLI's worker mode)."""
        count = 0
        while (job := self._claim()) is not None:
            self._run(job)
            count += 1
        return count

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = self._claim()
            if job is None:
                self._wake.wait(timeout=2.0)
                self._wake.clear()
                continue
            self._run(job)

    def _claim(self) -> Job | None:
        with self.sessions.begin() as s:
            job = s.scalar(select(Job).where(Job.status == "queued", Job.kind.in_(self.handlers))
                           .order_by(Job.created_at).limit(1))
            if job is None:
                return None
            job.status, job.updated_at = "running", utcnow()
            return job

    def _run(self, job: Job) -> None:
        work_dir = self.home / "jobs" / job.id
        work_dir.mkdir(parents=True, exist_ok=True)
        ctx = JobContext(job.id, work_dir, self)
        try:
            result = self.handlers[job.kind](ctx, dict(job.params or {}))
            self._update(job.id, status="succeeded", result=result, stage="done")
            shutil.rmtree(work_dir, ignore_errors=True)
        except JobCancelled:
            self._update(job.id, status="cancelled", stage="cancelled")
        except MemexError as exc:
            self._update(job.id, status="failed", error=f"{exc.code}: {exc.message}")
        except Exception as exc:  # noqa: BLE001 - a job must never take the worker down
            log.error("job %s failed: %s", job.id, traceback.format_exc())
            self._update(job.id, status="failed", error=f"INTERNAL: {type(exc).__name__}: {exc}")

    def _update(self, job_id: str, **fields) -> None:
        with self.sessions.begin() as s:
            job = s.get(Job, job_id)
            for key, value in fields.items():
                setattr(job, key, value)
            job.updated_at = utcnow()

    def _cancel_requested(self, job_id: str) -> bool:
        with self.sessions() as s:
            return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
