"""What every ``memex`` sub-command shares: the local corpora, ``--server``, error exit,
progress bars."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from tqdm import tqdm

SERVER = typer.Option(None, "--server", envvar="MEMEX_SERVER",
                      help="use this memex server (key in MEMEX_API_KEY) instead of MEMEX_HOME")


def local_corpora(ray_address: str | None = None):
    """The data directory's corpora, with chunk DBs following every change (as the server);
    ``ray_address``: encode on that Ray cluster (``memex index --ray``)."""
    from service.runtime import open_corpora
    from service.settings import get_settings

    settings = get_settings()
    if ray_address:
        settings = settings.model_copy(update={"ray_address": ray_address})
    return open_corpora(settings)


def fail(message: str) -> None:
    """Print ``error: message`` in red on stderr and exit with status 2."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


# what a stage counts, where it is not the bar's default unit (sync: indexer/corpus/changes.py)
STAGE_UNITS = {"walk": "file", "chunk": "file", "codec": "iteration", "compress": "token",
               "commit": "step", "bm25": "step"}


class StageBar:
    """One tqdm bar per stage, fed by ``(stage, done, total)`` progress callbacks."""

    def __init__(self, unit: str = "passage") -> None:
        self.bar: tqdm | None = None
        self.stage = ""
        self.unit = unit

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage or self.bar is None:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=stage, unit=STAGE_UNITS.get(stage, self.unit),
                            file=sys.stderr, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextmanager
def stop_on_signal(what: str) -> Iterator[threading.Event]:
    """An event the first Ctrl-C (or SIGTERM) sets, for long work that polls it and stops
    where it is safe to; a second signal raises ``KeyboardInterrupt`` at once. A flag,
    not an exception: a KeyboardInterrupt can land where it is swallowed (a ``__del__``, a
    library's cleanup) and the work goes on, which CI saw as a Ctrl-C ignored for minutes."""
    stop = threading.Event()
    message = f"stopping {what} (again to stop now)\n".encode()

    def request_stop(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        os.write(2, message)  # not print: the handler may run inside a print to stderr

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
