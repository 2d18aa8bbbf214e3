"""The one progress callback every long operation takes: ``progress(stage, done, total)``.

Syncs, re-indexing, post-training, PLAID commits, cartridge training and the job runner
all report through it; the CLI draws it as one bar per stage (``service/cli/common.StageBar``)
and a job stores it (``service/jobs/runner.JobContext.progress``). ``total`` may be 0
while unknown. A callback may raise to cancel the work (a job's ``JobCancelled``).
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int, /) -> None: ...
