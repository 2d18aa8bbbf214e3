"""Start-up wiring, written once: what the server, ``memex worker`` and the CLI open.

Every process that touches a data directory must see the same corpora with the
same listeners, or a change made by one of them leaves derived data stale (the
RETRO chunk DB missed every sync run by ``memex worker`` when each entry point
wired itself). So the entry points call ``open_corpora`` (the CLI, which runs no
jobs) or ``start`` (the server and the worker), and nothing else builds these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cartridges.store import CartridgeStore
from indexer.corpus import Corpora
from indexer.distributed.encode_pool import encode_pool
from indexer.retro import sync as retro_sync
from service.jobs.cartridge_handlers import register_cartridges
from service.jobs.handlers import register_all
from service.jobs.remote import remote_training
from service.jobs.runner import JobRunner
from service.settings import Settings


def open_corpora(settings: Settings, api: bool = False) -> Corpora:
    """The corpora of the data directory, with every listener installed: the chunk DBs
    follow each committed change, whichever process made it.

    ``api``: for the server and the worker, which index directories that API callers
    name: without ``MEMEX_ALLOWED_ROOTS`` they may index the user's home but no hidden
    directory in it (``~/.ssh``, ``~/.aws``). The CLI indexes what its user types.
    """
    roots, hidden_ok = settings.allowed_roots, True
    if roots is None and api:
        roots, hidden_ok = [Path.home()], False
    corpora = Corpora(settings.home, settings.db_url, settings.encoder, roots,
                      settings.max_file_bytes, index_engine=settings.index_engine,
                      index_nbits=settings.index_nbits, hidden_roots=hidden_ok,
                      index_shards=settings.index_shards, encode_pool=encode_pool(settings))
    retro_sync.install(corpora)
    return corpora


def cartridge_store(settings: Settings) -> CartridgeStore:
    return CartridgeStore(settings.home / "cartridges")


@dataclass
class Runtime:
    """What a long-running process holds: the corpora, the cartridge store and the job runner."""

    settings: Settings
    corpora: Corpora
    cartridges: CartridgeStore
    jobs: JobRunner

    def stop(self) -> None:
        self.jobs.stop()


def start(settings: Settings, run_jobs: bool) -> Runtime:
    """Open the data directory for a server or a worker: load the encoder now (not on the
    first request or job), finish changes a crash interrupted, register every job kind,
    and run the job thread when ``run_jobs``."""
    corpora = open_corpora(settings, api=True)
    corpora.encoder  # noqa: B018 - loads the model at start-up
    corpora.recover_all()
    jobs = JobRunner(corpora.sessions, settings.home, settings.max_active_jobs_per_corpus,
                     settings.job_max_failures)
    cartridges = cartridge_store(settings)
    remote = remote_training(settings)  # training jobs run as Ray tasks when an address is set
    register_all(jobs, corpora, remote)
    register_cartridges(jobs, corpora, cartridges, remote)
    if run_jobs:
        jobs.start()
    return Runtime(settings, corpora, cartridges, jobs)
