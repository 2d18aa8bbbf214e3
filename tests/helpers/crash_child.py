"""Run one sync and SIGKILL this process at a named point of the change protocol.

    python tests/helpers/crash_child.py HOME CORPUS POINT

Points, in protocol order: ``encoded`` (vectors made, nothing written), ``rows``
(SQL rows and redo record committed), ``segment`` (segment files written, old
manifest still in place), ``manifest-tmp`` (new manifest fsynced under its temp
name, not renamed), ``manifest`` (manifest swapped, redo record not cleared),
``none`` (no kill). ``merge-segment`` / ``merge-manifest-tmp`` run a merge of all
segments instead and die when its segment is written / its manifest is fsynced under
the temp name. The hooks wrap library functions; the code under test is unchanged.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from indexer.corpus import Corpora
from indexer.corpus.changes import ChangePipeline
from indexer.index.plaid import MergeAll, PlaidIndex

STAGES = {"segment": "segment_written", "manifest-tmp": "manifest_temp_written"}


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str) -> None:
    commit_rows = ChangePipeline.commit_rows
    index_commit = PlaidIndex.commit

    def rows_hook(self, *args):
        if point == "encoded":
            die()
        out = commit_rows(self, *args)
        if point == "rows":
            die()
        return out

    def commit_hook(self, *args, **kwargs):
        # The engine's own fault hook names each stage of its commit.
        self.fault_hook = lambda stage: die() if STAGES.get(point) == stage else None
        out = index_commit(self, *args, **kwargs)
        if point == "manifest":
            die()
        return out

    ChangePipeline.commit_rows = rows_hook
    PlaidIndex.commit = commit_hook


def merge(home: str, corpus: str, point: str) -> None:
    """Merge every segment of the corpus's index, dying at the engine's commit stage."""
    index = Corpora(Path(home)).index(corpus)
    stage = {"merge-segment": "merged_segment_written", "merge-manifest-tmp": "manifest_temp_written"}
    index.fault_hook = lambda s: die() if stage.get(point) == s else None
    index.merge(policy=MergeAll())  # codes copied: the ranking must not move


if __name__ == "__main__":
    home, corpus, point = sys.argv[1:4]
    if point.startswith("merge"):
        merge(home, corpus, point)
    else:
        install(point)
        report = Corpora(Path(home)).sync(corpus)
        print(f"synced version {report.version}")
