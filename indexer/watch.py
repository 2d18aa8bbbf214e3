"""Keep a directory corpus fresh: file changes, debounced, trigger the incremental sync.

``watch_changes`` blocks on the OS's file events (``watchfiles``: inotify, FSEvents,
ReadDirectoryChangesW) and calls ``on_change`` once per burst: events are grouped until
``step_ms`` pass without a new one, or ``debounce_ms`` after the first, so an editor's
save is one call and a ``git checkout`` of 1,000 files a handful. Events that arrive
while ``on_change`` runs (a sync) are kept and become the next call. Paths the walk of
``indexer/sources.py`` ignores (``.gitignore``, ``.memexignore``, ``.git/``, ...) and
paths under ``exclude`` (a data directory inside the tree, whose writes would
otherwise trigger syncs forever) never trigger one.

The sync itself is the ordinary one: it re-walks the tree and encodes only what
changed, so a missed or merged event cannot leave the corpus stale after the next one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import watchfiles

from indexer.sources import ignore_spec

log = logging.getLogger("memex.watch")
IGNORE_FILES = (".gitignore", ".memexignore")


def watch_changes(root: Path, on_change: Callable[[list[str]], None],
                  stop: threading.Event | None = None, exclude: tuple[Path, ...] = (),
                  debounce_ms: int = 1600, step_ms: int = 100) -> None:
    """Call ``on_change(relative paths)`` per burst of relevant changes until ``stop`` is set."""
    root = root.resolve()
    excluded = [p.resolve() for p in exclude]
    spec = ignore_spec(root)
    for changes in watchfiles.watch(root, watch_filter=None, debounce=debounce_ms,
                                    step=step_ms, stop_event=stop,
                                    ignore_permission_denied=True, raise_interrupt=False):
        paths = [Path(p) for _, p in changes]
        rels = sorted({p.relative_to(root).as_posix() for p in paths
                       if p.is_relative_to(root) and not any(p.is_relative_to(e)
                                                             for e in excluded)})
        if any(r in IGNORE_FILES for r in rels):
            spec = ignore_spec(root)  # the rules changed: files may enter or leave the corpus
            relevant = rels
        else:
            relevant = [r for r in rels if not spec.match_file(r)]
        if relevant:
            on_change(relevant)


def sync_on_change(sync: Callable[[], object], report: Callable[[object, list[str]], None],
                   ) -> Callable[[list[str]], None]:
    """An ``on_change`` that runs ``sync`` and hands its result to ``report``; a failing
    sync is logged and the watch goes on (the next change retries)."""
    def on_change(paths: list[str]) -> None:
        try:
            result = sync()
        except Exception as exc:
            log.warning("sync after %d changed paths failed: %s", len(paths), exc)
            return
        report(result, paths)
    return on_change
