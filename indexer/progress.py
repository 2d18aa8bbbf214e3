"""The one progress callback every long operation takes, ``progress(stage, done, total)``,
and the one way to stop such work early: raise ``Cancelled``.

Syncs, re-indexing, post-training, PLAID commits, cartridge training and the job runner
all report through it; the CLI draws it as one bar per stage (``service/cli/common.StageBar``)
and a job stores it (``service/jobs/runner.JobContext.progress``). ``total`` may be 0
while unknown. Work asked to stop (a job's cancel, a ``should_stop`` that turned true) raises
``Cancelled``, from the progress callback or from the work itself; what it finished stays.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int, /) -> None: ...


class Cancelled(Exception):
    """The work was asked to stop and did (a job runner marks its job ``cancelled``)."""
