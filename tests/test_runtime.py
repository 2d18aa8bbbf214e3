"""The one start-up wiring (service/runtime.py), seen from each process that uses it."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from tests.helpers.api import wait_for_job
from tests.helpers.server import LiveServer


def test_worker_keeps_the_chunk_db_fresh_after_a_sync(tmp_path, sample_dir):
    """docker-compose's split: a server that only queues jobs (MEMEX_RUN_JOBS=false) and
    ``memex worker`` that runs them. A sync run by the worker must update the corpus's
    chunk DB as a sync run by the server does; it used to leave it stale."""
    from service.api.app import create_app
    from service.settings import Settings

    home = tmp_path / "home"
    settings = Settings(home=home, allowed_roots=[sample_dir.parent], run_jobs=False)
    env = {**os.environ, "MEMEX_HOME": str(home), "MEMEX_ALLOWED_ROOTS": str(sample_dir.parent)}
    worker = subprocess.Popen([sys.executable, "-m", "service.cli", "worker", "--poll", "0.2"],
                              env=env, stderr=subprocess.PIPE, text=True)
    log = []
    try:
        # One model load at a time: the server's start-up would time out beside the worker's.
        while not any("waiting for jobs" in line for line in log):
            line = worker.stderr.readline()
            assert line, "".join(log)
            log.append(line)
        with LiveServer(create_app(settings)) as server, \
                httpx.Client(base_url=server.url, timeout=60) as client:

            def run(response: httpx.Response) -> dict:
                body = response.json()
                job = wait_for_job(client, body.get("job_id") or body["id"], timeout=300)
                assert job["status"] == "succeeded", job
                return job

            run(client.post("/v1/corpora", json={"name": "src", "directory": str(sample_dir)}))
            assert run(client.post("/v1/corpora/src/chunkdb"))["result"]["chunks"] >= 3

            (sample_dir / "plants.md").write_text(
                "Photosynthesis turns sunlight, water and carbon dioxide into sugar.\n")
            (sample_dir / "docs/cooking.md").unlink()
            assert run(client.post("/v1/corpora/src/sync"))["result"]["added"] == ["plants.md"]

            r = client.post("/v1/corpora/src/neighbors",
                            json={"text": "sunlight becomes sugar in a leaf", "k": 3})
            assert r.status_code == 200, r.text
            found = [n["document_id"] for n in r.json()["chunks"][0]["neighbors"]]
            assert found[0] == "plants.md" and "docs/cooking.md" not in found, found
    finally:
        worker.terminate()
        log.append(worker.communicate(timeout=60)[1])
    assert "Traceback" not in "".join(log), "".join(log)
