"""Directory corpora created with ``watch: true``: the server re-syncs them as files change.

One thread per watched corpus runs ``indexer.watch.watch_changes``; each burst of
changes queues an ordinary ``sync`` job, unless one is already queued for that corpus
(a queued sync has not walked the tree yet, so it will see the change), so the jobs
list shows every watch-triggered sync and a separate ``memex worker`` runs them when
the server does not.

The set of watched corpora survives restarts in ``<home>/watched.json`` (a JSON list
of names, replaced atomically). A corpus deleted while watched drops out at its next
change. Every server process watches (with ``MEMEX_WORKERS`` > 1 the queued-sync check
keeps the duplicates to a rare race, and a duplicate sync finds nothing to do).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from indexer import durable
from indexer.corpus import Corpora
from indexer.errors import NotFound
from indexer.watch import watch_changes
from service.jobs.runner import JobRunner

log = logging.getLogger("memex.watch")


class Watchers:
    def __init__(self, corpora: Corpora, jobs: JobRunner, home: Path) -> None:
        self.corpora, self.jobs = corpora, jobs
        self.file = Path(home) / "watched.json"
        self._threads: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        try:
            return list(json.loads(self.file.read_text()))
        except FileNotFoundError:
            return []

    def start(self) -> None:
        """Resume watching every corpus of ``watched.json`` that still exists."""
        existing = set(self.corpora.names())
        for name in self.names():
            if name in existing:
                self._spawn(name)

    def add(self, name: str) -> None:
        with self._lock:
            self._save(sorted({*self.names(), name}))
        self._spawn(name)

    def stop(self) -> None:
        for _, stop in self._threads.values():
            stop.set()
        for thread, _ in self._threads.values():
            thread.join(5)

    def _save(self, names: list[str]) -> None:
        durable.write_json(self.file, names)

    def _spawn(self, name: str) -> None:
        if name in self._threads and self._threads[name][0].is_alive():
            return
        root, stop = Path(self.corpora.info(name).root), threading.Event()
        thread = threading.Thread(target=self._run, args=(name, root, stop), daemon=True,
                                  name=f"memex-watch-{name}")
        self._threads[name] = (thread, stop)
        thread.start()

    def _run(self, name: str, root: Path, stop: threading.Event) -> None:

        def on_change(paths: list[str]) -> None:
            try:
                self.corpora.info(name)
            except NotFound:
                with self._lock:
                    self._save([n for n in self.names() if n != name])
                stop.set()
                return
            queued = [j for j in self.jobs.list(corpus=name, limit=20)
                      if j.kind == "sync" and j.status == "queued"]
            if not queued:
                self.jobs.submit("sync", {"corpus": name, "changed": len(paths)}, corpus=name)

        try:
            watch_changes(root, on_change, stop=stop, exclude=(self.corpora.home,))
        except Exception as exc:
            log.warning("stopped watching corpus %r: %s", name, exc)
