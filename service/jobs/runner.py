"""Persistent background jobs: syncs, trainings, anything that outlives a request.

A job is a row in the ``jobs`` table; a handler registered for its kind does the
work in a worker thread and reports progress through ``JobContext``. Jobs that
were queued or running when the process died are queued again at start-up, so
handlers must be resumable: they keep their state in ``ctx.work_dir``.

Cancelling: ``ctx.progress`` raises ``JobCancelled`` once a cancel was asked
for, so every handler that reports progress stops at its next report; a job
whose cancel was asked for is never queued again at a restart.

The runner survives database errors (a locked SQLite, a restarting Postgres):
it logs, backs off and retries, and puts back the job it was running. After
``max_failures`` failures in a row it gives up and releases the queue lock so
another process can lead; ``health()`` tells ``/readyz`` and ``memex worker``.
Jobs are taken fairly: the oldest job of the corpus served longest ago, so one
corpus's many jobs cannot starve another corpus's sync.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update

from indexer.database import Job, utcnow
from indexer.errors import Busy, MemexError, NotFound
from indexer.progress import Cancelled

log = logging.getLogger("memex.jobs")
ACTIVE = ("queued", "running")


JobCancelled = Cancelled  # what a cancelled handler raises (``indexer.progress``)


@dataclass
class JobContext:
    job_id: str
    work_dir: Path
    _runner: JobRunner

    def progress(self, stage: str, done: int, total: int) -> None:
        """Record progress (``indexer.progress.Progress``); raises ``JobCancelled`` when a
        cancel was asked for."""
        if self._runner._update(self.job_id, done=done, total=total, stage=stage):
            raise JobCancelled()

    def should_stop(self) -> bool:
        return self._runner._cancel_requested(self.job_id)

    def check_cancelled(self) -> None:
        if self.should_stop():
            raise JobCancelled()


Handler = Callable[[JobContext, dict], dict]


class JobRunner:
    """Runs jobs one at a time in a daemon thread (the 2-core default; see docs)."""

    def __init__(self, sessions, home: Path, max_active_per_corpus: int = 16,
                 max_failures: int = 20, backoff: tuple[float, float] = (0.5, 30.0)) -> None:
        self.sessions = sessions
        self.home = home
        self.handlers: dict[str, Handler] = {}
        self.max_active_per_corpus = max_active_per_corpus
        self.max_failures = max_failures
        self.backoff = backoff  # (first, longest) seconds between retries, doubling
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._leader_file = None
        self._requeued = False  # running rows of a previous life (or failure) put back
        self._failures = 0  # consecutive failed iterations of the loop
        self._last_error: str | None = None
        self._gave_up = False
        self._served: dict[str | None, int] = {}  # corpus -> claim number it was last served
        self._claims = 0

    def register(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    def submit(self, kind: str, params: dict, corpus: str | None = None) -> Job:
        if kind not in self.handlers:
            raise ValueError(f"no handler for job kind {kind!r}")
        job = Job(id=uuid.uuid4().hex, kind=kind, corpus=corpus, status="queued", params=params)
        with self.sessions.begin() as s:
            if corpus is not None:
                active = s.scalar(select(func.count()).where(Job.corpus == corpus,
                                                             Job.status.in_(ACTIVE)))
                if active >= self.max_active_per_corpus:
                    raise Busy(f"corpus {corpus!r} already has {active} queued or running jobs "
                               f"(at most {self.max_active_per_corpus}); retry when some finished")
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
    @property
    def running(self) -> bool:
        """Whether the worker thread is alive (``memex worker`` exits when it is not)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the worker thread; it runs jobs once it leads (see ``_lead``)."""
        self._thread = threading.Thread(target=self._loop, name="memex-jobs", daemon=True)
        self._thread.start()
        self._wake.set()

    def health(self) -> dict:
        """``state``: ok | standby (another process leads) | retrying (a database error;
        backing off) | dead (gave up or crashed) | stopped; ``error``: the last error."""
        alive = self._thread is not None and self._thread.is_alive()
        if self._gave_up or (self._thread is not None and not alive and not self._stop.is_set()):
            state = "dead"
        elif not alive:
            state = "stopped"
        elif self._leader_file is None:
            state = "standby"
        else:
            state = "retrying" if self._failures else "ok"
        return {"state": state, "failures": self._failures, "error": self._last_error}

    @property
    def gave_up(self) -> bool:
        return self._gave_up

    def _lead(self, block: bool = True) -> bool:
        """Become the one process of this data dir that runs jobs (several server workers
        share it). The flock dies with its process, so after a crash the next leader
        requeues what was running: nobody else can be running it."""
        if self._leader_file is None:
            self.home.mkdir(parents=True, exist_ok=True)
            leader_file = open(self.home / "jobs.lock", "w")
            while True:
                try:
                    fcntl.flock(leader_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not block or self._stop.wait(1.0):
                        leader_file.close()
                        return False
            self._leader_file = leader_file
        if not self._requeued:
            self._requeue()
        return True

    def _requeue(self) -> None:
        """Rows left "running" are not running (this process leads): queue them again,
        unless a cancel was asked for."""
        with self.sessions.begin() as s:
            for job in s.scalars(select(Job).where(Job.status == "running")):
                if job.cancel_requested:
                    job.status, job.stage = "cancelled", "cancelled"
                else:
                    job.status, job.stage = "queued", "resuming after restart"
                job.updated_at = utcnow()
        self._requeued = True

    def _release(self) -> None:
        if self._leader_file is not None:
            self._leader_file.close()  # releases the flock: another process may lead
            self._leader_file = None

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        if not (self._thread and self._thread.is_alive()):
            self._release()

    def run_pending(self) -> int:
        """Run queued jobs in this thread until none is left (the CLI's worker mode)."""
        count = 0
        if not self._lead(block=False):
            return 0  # a server leads: it runs the queue
        while (job := self._claim()) is not None:
            self._run(job)
            count += 1
        return count

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._lead():
                    return
                job = self._claim()
                if job is not None:
                    self._run(job)
                self._failures, self._last_error = 0, None
                if job is None:
                    self._wake.wait(timeout=2.0)
                    self._wake.clear()
            except Exception as exc:
                self._failures += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                self._requeued = False  # the job we were running is put back on recovery
                log.error("job runner failed (%d in a row): %s", self._failures,
                          traceback.format_exc())
                if self._failures >= self.max_failures:
                    log.critical("job runner gave up after %d failures; releasing the queue",
                                 self._failures)
                    self._gave_up = True
                    self._release()
                    return
                first, longest = self.backoff
                self._stop.wait(min(longest, first * 2 ** (self._failures - 1)))

    def _claim(self) -> Job | None:
        """Take the oldest queued job of the corpus served longest ago (round-robin)."""
        with self.sessions.begin() as s:
            queued = s.execute(select(Job.id, Job.corpus).where(
                Job.status == "queued", Job.kind.in_(self.handlers))
                .order_by(Job.created_at)).all()
            oldest: dict[str | None, str] = {}
            for job_id, corpus in queued:
                oldest.setdefault(corpus, job_id)
            if not oldest:
                return None
            corpus = min(oldest, key=lambda c: self._served.get(c, -1))  # ties: oldest job
            job_id = oldest[corpus]
            # Conditional update: a job cancelled (or claimed) meanwhile is not taken.
            taken = s.execute(update(Job).where(Job.id == job_id, Job.status == "queued")
                              .values(status="running", updated_at=utcnow())).rowcount
        if not taken:
            return self._claim()
        self._claims += 1
        self._served[corpus] = self._claims
        return self.get(job_id)

    def _run(self, job: Job) -> None:
        """Run one job; database errors recording its end propagate to ``_loop``."""
        work_dir = self.home / "jobs" / job.id
        work_dir.mkdir(parents=True, exist_ok=True)
        ctx = JobContext(job.id, work_dir, self)
        try:
            result = self.handlers[job.kind](ctx, dict(job.params or {}))
        except JobCancelled:
            self._update(job.id, status="cancelled", stage="cancelled")
        except MemexError as exc:
            self._update(job.id, status="failed", error=f"{exc.code}: {exc.message}")
        except Exception as exc:
            log.error("job %s failed: %s", job.id, traceback.format_exc())
            self._update(job.id, status="failed", error=f"INTERNAL: {type(exc).__name__}: {exc}")
        else:
            self._update(job.id, status="succeeded", result=result, stage="done")
            shutil.rmtree(work_dir, ignore_errors=True)

    def _update(self, job_id: str, **fields) -> bool:
        """Write ``fields``; returns whether a cancel was asked for."""
        with self.sessions.begin() as s:
            job = s.get(Job, job_id)
            for key, value in fields.items():
                setattr(job, key, value)
            job.updated_at = utcnow()
            return bool(job.cancel_requested)

    def _cancel_requested(self, job_id: str) -> bool:
        with self.sessions() as s:
            return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
