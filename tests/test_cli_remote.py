"""``--server`` for the RETRO and chat commands, against a real uvicorn."""

from __future__ import annotations

import json

from tests.cartridges.test_cart_remote import memex
from tests.test_api import wait_for_job


def test_retro_build_neighbors_and_chat_through_a_server(live_server, sample_dir, tmp_path):
    url = str(live_server.base_url).rstrip("/")
    job = live_server.post("/v1/corpora", json={"name": "src", "directory": str(sample_dir)})
    assert wait_for_job(live_server, job.json()["job_id"])["status"] == "succeeded"

    built = memex(tmp_path, "retro", "build", "--corpus", "src", "--server", url)
    assert built.returncode == 0, built.stderr
    assert built.stdout.startswith("src: chunk DB of 4 chunks")  # 3 files of 64-token chunks
    found = memex(tmp_path, "neighbors", "area of a circle radius", "--corpus", "src", "-k", "1",
                  "--server", url, "--json")
    assert json.loads(found.stdout)[0]["neighbors"][0]["document_id"] == "math/geometry.py"
    missing = memex(tmp_path, "neighbors", "x", "--corpus", "nope", "--server", url)
    assert missing.returncode == 2 and "nope" in missing.stderr
    assert "Traceback" not in missing.stderr

    said = memex(tmp_path, "chat", "Say hello.", "--max-tokens", "3", "--server", url)
    assert said.returncode == 0 and said.stdout.strip(), said.stderr
    unknown = memex(tmp_path, "chat", "hi", "--cartridge", "0" * 32, "--server", url)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
