"""``memex serve``: logging, the loopback rule, and one or several uvicorn workers.

Without an active API key the server binds 127.0.0.1 whatever MEMEX_HOST says,
and logs why. Several workers share one data directory safely: SQL is the
source of truth, index writers hold a per-corpus flock, one worker leads the
job queue (``JobRunner._lead``) and migrations run once, before the workers.
"""

from __future__ import annotations

import logging
import os
import shutil

from fastapi import FastAPI

from service.api.auth import is_loopback
from service.api.logs import configure_logging
from service.settings import Settings, get_settings

log = logging.getLogger("memex")


def app_factory() -> FastAPI:
    """What each uvicorn worker process imports (``service.api.serve:app_factory``)."""
    from service.api.app import create_app

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)


def effective_host(settings: Settings, host: str, active_keys: int) -> str:
    """>>> effective_host(Settings(), "0.0.0.0", 0), effective_host(Settings(), "0.0.0.0", 2)
    ('127.0.0.1', '0.0.0.0')
    """
    if active_keys == 0 and not is_loopback(host):
        log.warning("no API keys configured: listening on 127.0.0.1 instead of %s; create a key "
                    "with `memex keys create` to serve other hosts", host)
        return "127.0.0.1"
    return host


def run(host: str | None = None, port: int | None = None, workers: int | None = None) -> None:
    import uvicorn

    from indexer.database import make_engine, make_sessionmaker
    from service.api.keys import KeyStore

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    engine = make_engine(settings.db_url)  # migrates now, once, before any worker starts
    keys = KeyStore(make_sessionmaker(engine)).active_count()
    engine.dispose()
    host = effective_host(settings, host or settings.host, keys)
    port = port or settings.port
    workers = workers or settings.workers
    os.environ["MEMEX_HOST"] = host  # workers decide "auth always on" from the bound host
    log.info("memex on http://%s:%d with %d worker(s); auth %s", host, port, workers,
             f"on ({keys} keys)" if keys else "off (loopback only)")
    if workers == 1:
        uvicorn.run(app_factory(), host=host, port=port, log_config=None)
        return
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        metrics_dir = settings.home / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    uvicorn.run("service.api.serve:app_factory", factory=True, host=host, port=port,
                workers=workers, log_config=None)
